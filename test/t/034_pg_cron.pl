# Cron schedules through pg_cron: schedule(p, '* * * * *') creates the
# pg_cron job 'medallion:<pipeline>' whose command is medallion.trigger('<pipeline>'); the
# job runs (at the next minute) and the scheduler runs the pipeline in a worker; another
# schedule or unschedule() removes the job.  In a database where pg_cron does not live
# (cron.database_name is another), a clear error whose hint is the exact
# cron.schedule_in_database(...) call to run there -- and that call works.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('cron', cron => 'crondb', workers => 16, quiet => 1);
$node->safe_psql('postgres', 'CREATE DATABASE crondb');
$node->safe_psql('postgres', 'CREATE DATABASE other');

my $setup = q{
CREATE EXTENSION medallion;
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.create_silver('ev', 'bronze.ev', '{"id": "int", "v": "text"}', '{id}');
SELECT medallion.ingest('bronze.ev', '[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]');
};
$node->safe_psql('crondb', "CREATE EXTENSION pg_cron; $setup");
$node->safe_psql('other', $setup);

sub cq { return $node->safe_psql('crondb', $_[0]); }

cq(q{SELECT medallion.schedule('silver.ev', '* * * * *')});
is( cq(q{SELECT jobname || ' | ' || schedule || ' | ' || command || ' | ' || database FROM cron.job}),
	q{medallion:silver.ev | * * * * * | SELECT medallion.trigger('silver.ev') | crondb},
	'a cron schedule creates the pg_cron job medallion:<pipeline> running medallion.trigger()');
is(cq(q{SELECT schedule || '/' || schedule_kind FROM medallion.pipelines WHERE name = 'silver.ev'}),
	'* * * * */cron', 'the pipeline\'s schedule is of kind cron');
cq(q{SELECT medallion.schedule('silver.ev', '*/2 * * * *')});
is(cq(q{SELECT count(*) || ' ' || min(schedule) FROM cron.job}), '1 */2 * * * *',
	'scheduling again replaces the job');
cq(q{SELECT medallion.schedule('silver.ev', '* * * * *')});

# pg_cron in another database: the error's hint is the exact call to make there (the job's
# name says which database: pg_cron's job names are unique across its databases).
my ($rc, $out, $err) = $node->psql('other', q{SELECT medallion.schedule('silver.ev', '* * * * *')});
like($err, qr/ERROR:  pg_cron runs in database "crondb", not in this one/, 'pg_cron elsewhere: a clear error');
# (the job runs as the pipeline's owner: here the superuser that made it)
my $owner = $node->safe_psql('other', q{SELECT owner FROM medallion.pipelines WHERE name = 'silver.ev'});
my $call = qq{SELECT cron.schedule_in_database('medallion:silver.ev\@other', '* * * * *', 'SELECT medallion.trigger(''silver.ev'')', 'other', '$owner');};
like($err, qr/HINT:  Connected to "crondb", run: \Q$call\E/, 'whose hint gives the exact cron.schedule_in_database() call');
is($node->safe_psql('other', q{SELECT schedule IS NULL FROM medallion.pipelines WHERE name = 'silver.ev'}),
	't', 'and nothing changed');
# The hint's call, run where it says, schedules the pipeline of the other database.
cq(q{DELETE FROM cron.job_run_details});
cq($call);

# The jobs run at the next minute: wait for the runs (up to ~70 s).
ok($node->poll_query_until('crondb',
		q{SELECT count(*) > 0 FROM medallion.runs WHERE pipeline = 'silver.ev' AND status = 'succeeded'}),
	'the pg_cron job runs the pipeline');
is( cq(q{SELECT rows_read || '/' || (worker_pid IS NOT NULL) FROM medallion.runs ORDER BY run_id LIMIT 1}),
	'2/true', 'through medallion.trigger(): a run worker of the scheduler did it');
is(cq(q{SELECT count(*) FROM silver.ev}), '2', 'the rows are loaded');
ok($node->poll_query_until('other',
		q{SELECT count(*) > 0 FROM medallion.runs WHERE pipeline = 'silver.ev' AND status = 'succeeded'}),
	'the job made from the hint runs the other database\'s pipeline');
ok($node->poll_query_until('crondb',
		q{SELECT count(*) >= 2 AND bool_and(status = 'succeeded') FROM cron.job_run_details WHERE status <> 'running'}),
	'pg_cron records both job runs as succeeded');

# Another kind of schedule, or unschedule(), removes the job.
cq(q{SELECT medallion.schedule('silver.ev', 'on_change')});
is(cq(q{SELECT count(*) FROM cron.job WHERE jobname = 'medallion:silver.ev' AND database = 'crondb'}),
	'0', 'an on_change schedule replaces the cron job');
cq(q{SELECT medallion.schedule('silver.ev', '*/5 * * * *')});
is(cq(q{SELECT count(*) FROM cron.job WHERE jobname = 'medallion:silver.ev' AND database = 'crondb'}), '1', 'cron again');
cq(q{SELECT medallion.unschedule('silver.ev')});
is(cq(q{SELECT count(*) FROM cron.job WHERE jobname = 'medallion:silver.ev' AND database = 'crondb'}),
	'0', 'unschedule() removes the job');
is(cq(q{SELECT count(*) FROM cron.job}), '1', 'and only that one (the other database\'s job is left alone)');

$node->stop;
done_testing();
