# Schedules after pg_dump / pg_restore into another cluster: interval and on_change
# schedules run by themselves there (its scheduler picks them up from the restored catalog);
# a cron schedule whose pg_cron job is missing is re-created by medallion.restore_schedules()
# (pg_cron in the same database) and the checklist's 'scheduled' item tells when it is missing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $setup = q{
	CREATE EXTENSION pg_cron;
	CREATE EXTENSION medallion;
	SELECT medallion.create_bronze('ev', 'app');
	SELECT medallion.create_silver('ev_change', 'bronze.ev', '{"id": "int"}', '{id}');
	SELECT medallion.create_silver('ev_every', 'bronze.ev', '{"id": "int"}', '{id}');
	SELECT medallion.create_silver('ev_cron', 'bronze.ev', '{"id": "int"}', '{id}');
	SELECT medallion.schedule('silver.ev_change', 'on_change');
	SELECT medallion.schedule('silver.ev_every', '1 second');
	SELECT medallion.schedule('silver.ev_cron', '0 3 * * *');
	SELECT medallion.ingest('bronze.ev', '[{"id": 1}, {"id": 2}]', 'b1');
};
my $old = medallion_node('old_sched', cron => 'app', workers => 16, quiet => 1, db => 'app');
$old->safe_psql('postgres', 'CREATE DATABASE app');
$old->safe_psql('app', $setup);
wait_for(q{SELECT (SELECT count(*) FROM silver.ev_change) = 2 AND (SELECT count(*) FROM silver.ev_every) = 2},
	'the old cluster runs its schedules');

my $tempdir = PostgreSQL::Test::Utils::tempdir;
my $dump = "$tempdir/app.dump";
$old->command_ok([ 'pg_dump', '-Fc', '-d', $old->connstr('app'), '-f', $dump ], 'pg_dump');
$old->stop;

my $new = medallion_node('new_sched', cron => 'app', workers => 16, quiet => 1, db => 'app');
$new->safe_psql('postgres', 'CREATE DATABASE app');
$new->command_ok([ 'pg_restore', '-d', $new->connstr('app'), $dump ], 'pg_restore into another cluster');

# Whatever the dump held of cron.job, a job lost on the way is re-created.
$new->safe_psql('app', q{SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'medallion:silver.ev_cron'});
is($new->safe_psql('app', q{SELECT ok FROM medallion.checklist('silver.ev_cron') WHERE item = 'scheduled'}), 'f',
	'the checklist sees the missing pg_cron job');
is($new->safe_psql('app',
		q{SELECT string_agg(pipeline || ' ' || status, ',' ORDER BY pipeline) FROM medallion.restore_schedules()}),
	'silver.ev_change ok,silver.ev_cron recreated,silver.ev_every ok',
	'restore_schedules() re-creates the cron job and finds the others ok');
is($new->safe_psql('app', q{SELECT schedule || ' | ' || command FROM cron.job WHERE jobname = 'medallion:silver.ev_cron'}),
	q{0 3 * * * | SELECT medallion.trigger('silver.ev_cron')}, 'the pg_cron job is back');
is($new->safe_psql('app', q{SELECT ok FROM medallion.checklist('silver.ev_cron') WHERE item = 'scheduled'}), 't',
	'and the checklist is satisfied');
is($new->safe_psql('app',
		q{SELECT string_agg(pipeline || ' ' || status, ',' ORDER BY pipeline) FROM medallion.restore_schedules()}),
	'silver.ev_change ok,silver.ev_cron ok,silver.ev_every ok', 'a second call finds everything in place');

# New data: the interval and on_change schedules run in the new cluster by themselves.
$new->safe_psql('app', q{SELECT medallion.ingest('bronze.ev', '[{"id": 3}]', 'b2')});
wait_for(q{SELECT (SELECT count(*) FROM silver.ev_change) = 3 AND (SELECT count(*) FROM silver.ev_every) = 3},
	'interval and on_change schedules run by themselves after the restore');

$new->stop;
done_testing();
