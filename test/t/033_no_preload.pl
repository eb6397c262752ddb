# Without medallion in shared_preload_libraries (no background processes): the extension still
# installs, manual runs work, bronze tables take rows (their wake-up trigger is harmless),
# schedule() stores the schedule but warns that the scheduler is not running, with a hint,
# and trigger() runs the pipeline directly, in the caller's backend.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('no_preload', preload => '', conf => "log_min_messages = warning\n");
my $db = 'postgres';

is(sq(q{SHOW shared_preload_libraries}), '', 'medallion is not preloaded');
my ($rc, $out, $err) = $node->psql($db, 'CREATE EXTENSION medallion');
is($rc, 0, 'CREATE EXTENSION works without the library preloaded') or diag $err;
is(sq(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'medallion%'}), '0',
	'no background process');

sq(q{
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.create_silver('ev', 'bronze.ev', '{"id": {"type": "int", "required": true}, "v": "text"}', '{id}');
SELECT medallion.ingest('bronze.ev', '[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]');
INSERT INTO bronze.ev (_raw) VALUES ('{"id": 3, "v": "c"}');
});
is(sq(q{SELECT medallion.run('silver.ev') > 0}), 't', 'a manual run works');
is(sq(q{SELECT count(*) FROM silver.ev}), '3', 'and loads the rows (ingest() and a plain INSERT)');
is( sq(q{SELECT status || '/' || rows_read || '/' || (worker_pid IS NULL) FROM medallion.runs ORDER BY run_id DESC LIMIT 1}),
	'succeeded/3/true', 'recorded as a succeeded run of this backend');

($rc, $out, $err) = $node->psql($db, q{SELECT medallion.schedule('silver.ev', '30 seconds')});
is($rc, 0, 'schedule() succeeds');
like($err, qr/WARNING:  medallion's scheduler is not running in this database/, 'but warns that the scheduler is not running');
like($err, qr/HINT:  Add medallion to shared_preload_libraries and restart the server\./, 'with a hint');
is(sq(q{SELECT schedule || '/' || schedule_kind FROM medallion.pipelines WHERE name = 'silver.ev'}),
	'00:00:30/interval', 'the schedule is stored (it applies once the scheduler runs)');
($rc, $out, $err) = $node->psql($db, q{SELECT medallion.schedule('silver.ev', 'on_change')});
like($err, qr/WARNING:  medallion's scheduler is not running/, 'on_change warns too');

sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 4, "v": "d"}')});
($rc, $out, $err) = $node->psql($db, q{SELECT medallion.trigger('silver.ev')});
is($rc, 0, 'trigger() succeeds') or diag $err;
is(sq(q{SELECT count(*) FROM silver.ev}), '4', 'trigger() ran the pipeline directly');
is( sq(q{SELECT status || '/' || rows_read || '/' || (worker_pid IS NULL) FROM medallion.runs ORDER BY run_id DESC LIMIT 1}),
	'succeeded/1/true', 'in the caller\'s backend');

sq(q{SELECT medallion.pause('silver.ev')});
($rc, $out, $err) = $node->psql($db, q{SELECT medallion.trigger('silver.ev')});
like($err, qr/pipeline "silver.ev" is paused.*resume/s, 'trigger() of a paused pipeline is refused, with a hint');
sq(q{SELECT medallion.resume('silver.ev')});

($rc, $out, $err) = $node->psql($db, q{SELECT medallion.schedule('silver.ev', '*/5 * * * *')});
like($err, qr/ERROR:  cron schedules need the pg_cron extension/, 'a cron schedule needs pg_cron');
is(sq(q{SELECT schedule_kind FROM medallion.pipelines WHERE name = 'silver.ev'}), 'on_change',
	'and the failed call changed nothing');

($rc, $out, $err) = $node->psql($db, q{SELECT medallion.schedule('silver.ev', '500 milliseconds')});
like($err, qr/ERROR:  schedule interval must be at least 1 second/, 'an interval under 1 second is refused');
($rc, $out, $err) = $node->psql($db, q{SELECT medallion.schedule('silver.ev', 'whenever')});
like($err, qr/ERROR:  invalid schedule "whenever".*HINT:/s, 'a schedule that means nothing is refused, with a hint');

is(sq(q{SELECT status FROM medallion.freshness WHERE pipeline = 'silver.ev'}), 'no_sla', 'medallion.freshness works');
sq(q{SELECT medallion.unschedule('silver.ev')});
is(sq(q{SELECT schedule IS NULL FROM medallion.pipelines WHERE name = 'silver.ev'}), 't', 'unschedule() works');

$node->stop;
done_testing();
