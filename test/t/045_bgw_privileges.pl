# What a role without privileges can do to medallion's background processes: nothing.
# Trying DROP DATABASE, ALTER DATABASE ... RENAME or SET TABLESPACE, CREATE DATABASE ...
# TEMPLATE or DROP EXTENSION against a database with a scheduler fails with the command's
# own permission error and leaves the scheduler running (same pid): it is stopped only for
# a caller who may run the command (an owner who is not a superuser can still DROP
# DATABASE ... WITH (FORCE) during a run).  extension_changed() is not for PUBLIC;
# bronze_landed() fires only on bronze tables; medallion.premake_days is a superuser's
# setting.  The pipelines of one owner take at most medallion.max_workers_per_owner run
# workers, so another owner's run starts while they wait.  The 0.2.0 library idles its
# scheduler on a 0.1.0 catalog (no run, no catalog write) until ALTER EXTENSION medallion
# UPDATE, and then the pipelines run.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode qw(medallion_node);
use Time::HiRes qw(usleep);

my $node = medallion_node('bgw_privileges', workers => 20, quiet => 1);

sub sq { my ($db, $sql) = @_; return $node->safe_psql($db, $sql); }
sub wait_for
{
	my ($db, $query, $what) = @_;
	ok($node->poll_query_until($db, $query), $what);
}
# (rc, stderr) of a statement run by eve
sub as_eve
{
	my ($db, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql, extra_params => [ '-U', 'eve' ]);
	return ($rc, $err);
}
sub scheduler_of
{
	my ($db) = @_;
	return sq('postgres', qq{SELECT pid || '/' || backend_start FROM pg_stat_activity
		WHERE backend_type = 'medallion scheduler' AND datname = '$db'});
}

sq('postgres', q{
CREATE ROLE eve LOGIN CREATEDB;
CREATE DATABASE victim;
CREATE EXTENSION medallion;
});
sq('victim', q{CREATE EXTENSION medallion;
	SELECT medallion.create_bronze('e', 'app');
	SELECT medallion.create_silver('e', 'bronze.e', '{"id": "int"}', '{id}');
	SELECT medallion.schedule('silver.e', '1 second')});
wait_for('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'medallion scheduler' AND datname = 'victim'}, 'victim has a scheduler');
my $before = scheduler_of('victim');

# ---- database commands by a role that may not run them ----------------------------------
my ($rc, $err) = as_eve('postgres', 'DROP DATABASE victim');
like($err, qr/must be owner of database victim/, 'DROP DATABASE by a non-owner fails with its own error');
($rc, $err) = as_eve('postgres', 'DROP DATABASE victim WITH (FORCE)');
like($err, qr/must be owner of database victim/, 'so does DROP DATABASE ... WITH (FORCE)');
($rc, $err) = as_eve('postgres', 'ALTER DATABASE victim RENAME TO stolen');
like($err, qr/must be owner of database victim/, 'ALTER DATABASE ... RENAME by a non-owner fails');
($rc, $err) = as_eve('postgres', 'ALTER DATABASE victim SET TABLESPACE pg_default');
like($err, qr/must be owner of database victim/, 'ALTER DATABASE ... SET TABLESPACE by a non-owner fails');
($rc, $err) = as_eve('postgres', 'CREATE DATABASE evecopy TEMPLATE victim');
like($err, qr/permission denied to copy database "victim"/,
	'CREATE DATABASE ... TEMPLATE of a database she does not own fails');
($rc, $err) = as_eve('victim', 'DROP EXTENSION medallion');
like($err, qr/must be owner of extension medallion/, 'DROP EXTENSION by a non-owner fails');
# a stopped scheduler would be back within a second or two, with another pid
sleep(3);
is(scheduler_of('victim'), $before, 'the scheduler of victim was never stopped (same pid, same start)');
$node->safe_psql('victim', q{SELECT medallion.ingest('bronze.e', '{"id": 1}')});
ok($node->poll_query_until('victim', 'SELECT count(*) = 1 FROM silver.e'), 'and it runs its pipelines');

# ... while the owner's commands still get it out of the way (more in 030)
($rc, my $out, $err) = $node->psql('postgres', 'ALTER DATABASE victim RENAME TO victim2');
is($rc, 0, 'ALTER DATABASE ... RENAME by the owner succeeds') or diag $err;
wait_for('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'medallion scheduler' AND datname = 'victim2'}, 'and the scheduler is back');
($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE victim2');
is($rc, 0, 'DROP DATABASE by the owner succeeds') or diag $err;

# An owner who is not a superuser: DROP DATABASE ... WITH (FORCE) during a run succeeds (the
# scheduler and its run worker, which connect with no role, do not stand in the way).
sq('postgres', q{CREATE ROLE olga LOGIN CREATEDB; CREATE DATABASE od OWNER olga});
sq('od', q{CREATE EXTENSION medallion;
	CREATE FUNCTION public.nap(v text) RETURNS text LANGUAGE sql AS $$ SELECT v FROM pg_sleep(60) $$;
	SELECT medallion.create_bronze('n', 'app');
	SELECT medallion.create_silver('n', 'bronze.n', '{"id": "int", "v": {"type": "text", "expr": "public.nap(v)"}}', '{id}');
	SELECT medallion.ingest('bronze.n', '{"id": 1, "v": "z"}')});
wait_for('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'medallion scheduler' AND datname = 'od'}, 'od has a scheduler');
sq('od', q{SELECT medallion.trigger('silver.n')});
wait_for('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'medallion run worker' AND datname = 'od'}, 'a run is in progress in od');
($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE od WITH (FORCE)', extra_params => [ '-U', 'olga' ]);
is($rc, 0, 'DROP DATABASE ... WITH (FORCE) by its owner, not a superuser, during a run succeeds') or diag $err;

# ---- what PUBLIC may execute and set -----------------------------------------------------
($rc, $err) = as_eve('postgres', 'SELECT medallion.extension_changed()');
like($err, qr/permission denied for function extension_changed/, 'extension_changed() is not for PUBLIC');
is(sq('postgres', q{SELECT has_function_privilege('eve', 'medallion.run(text, boolean, boolean)', 'EXECUTE')}),
	't', 'the API is (it checks for itself)');

sq('postgres', q{CREATE SCHEMA eve AUTHORIZATION eve});
($rc, $err) = as_eve('postgres', q{
	CREATE TABLE eve.t (x int);
	CREATE TRIGGER wake AFTER INSERT ON eve.t FOR EACH STATEMENT EXECUTE FUNCTION medallion.bronze_landed();
	INSERT INTO eve.t VALUES (1)});
like($err, qr/bronze_landed\(\) fires only on bronze tables/, 'bronze_landed() refuses a table that is not bronze');

($rc, $err) = as_eve('postgres', 'SET medallion.premake_days = 300');
like($err, qr/permission denied to set parameter "medallion.premake_days"/,
	'medallion.premake_days cannot be set by a session of an ordinary role');
is(sq('postgres', q{SELECT context FROM pg_settings WHERE name = 'medallion.premake_days'}), 'superuser',
	'it is a superuser setting');

# ---- per-owner fairness ------------------------------------------------------------------
sq('postgres', q{
ALTER SYSTEM SET medallion.max_workers = 3;
ALTER SYSTEM SET medallion.max_workers_per_owner = 1;
SELECT pg_reload_conf();
});
wait_for('postgres', q{SELECT current_setting('medallion.max_workers_per_owner') = '1'}, 'max_workers_per_owner = 1');
sleep(1);    # the scheduler reads the reload too
sq('postgres', q{
CREATE FUNCTION public.slow(v text) RETURNS text LANGUAGE sql AS $$ SELECT v FROM pg_sleep(1.5) $$;
CREATE ROLE ann NOLOGIN;
CREATE ROLE bob NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO ann, bob;
SET ROLE ann;
SELECT medallion.create_bronze('fa', 'app');
SELECT medallion.create_silver('fa' || i, 'bronze.fa', '{"id": "int", "v": {"type": "text", "expr": "public.slow(v)"}}', '{id}')
FROM generate_series(1, 3) i;
SELECT medallion.ingest('bronze.fa', '{"id": 1, "v": "x"}');
SET ROLE bob;
SELECT medallion.create_bronze('fb', 'app');
SELECT medallion.create_silver('fb', 'bronze.fb', '{"id": "int", "v": {"type": "text", "expr": "public.slow(v)"}}', '{id}');
SELECT medallion.ingest('bronze.fb', '{"id": 1, "v": "y"}');
});
sq('postgres', q{SET ROLE ann; SELECT medallion.trigger('silver.fa' || i) FROM generate_series(1, 3) i});
sq('postgres', q{SET ROLE bob; SELECT medallion.trigger('silver.fb')});
wait_for('postgres', q{SELECT count(*) = 4 FROM medallion.runs
	WHERE pipeline ~ '^silver\.f[ab]' AND status = 'succeeded'}, 'the four runs happen');
is(sq('postgres', q{SELECT bool_and(started_at >= prev_finished)
	FROM (SELECT started_at, lag(finished_at) OVER (ORDER BY started_at) AS prev_finished
	      FROM medallion.runs WHERE pipeline LIKE 'silver.fa_') r
	WHERE prev_finished IS NOT NULL}), 't', 'one owner\'s runs took one worker at a time');
is(sq('postgres', q{SELECT (SELECT started_at FROM medallion.runs WHERE pipeline = 'silver.fb')
	< (SELECT max(started_at) FROM medallion.runs WHERE pipeline LIKE 'silver.fa_')}), 't',
	'the other owner\'s run did not wait for them');
sq('postgres', q{ALTER SYSTEM RESET medallion.max_workers; ALTER SYSTEM RESET medallion.max_workers_per_owner;
	SELECT pg_reload_conf()});

# ---- a 0.1.0 catalog: the scheduler idles until ALTER EXTENSION UPDATE --------------------
sq('postgres', 'CREATE DATABASE old');
sq('old', q{CREATE EXTENSION medallion VERSION '0.1.0'});
wait_for('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'medallion scheduler' AND datname = 'old'}, 'a 0.1.0 catalog gets a scheduler');
my $said = 0;
for (1 .. 600)
{
	last if ($said = $node->log_contains('scheduler of database "old" idles: the extension is version 0\.1\.0'));
	usleep(100_000);
}
ok($said, 'which says it idles, and why');
sq('old', q{
SELECT medallion.create_bronze('o', 'app');
SELECT medallion.create_silver('o', 'bronze.o', '{"id": "int"}', '{id}');
SELECT medallion.ingest('bronze.o', '{"id": 1}');
SELECT medallion.schedule('silver.o', '1 second');
});
sleep(3);
is(sq('old', q{SELECT count(*) FROM medallion.runs}), '0', 'on the 0.1.0 catalog nothing runs');
is(sq('old', q{SELECT count(*) FROM medallion.pipelines WHERE last_checked_at IS NOT NULL}), '0',
	'and nothing is written');
sq('old', q{ALTER EXTENSION medallion UPDATE});
is(sq('old', q{SELECT extversion FROM pg_extension WHERE extname = 'medallion'}), '0.2.0', 'updated to 0.2.0');
wait_for('old', q{SELECT count(*) = 1 FROM silver.o}, 'after the update the schedule runs the pipeline');
is(sq('old', q{SELECT count(*) FROM medallion.runs WHERE worker_pid IS NOT NULL AND status = 'succeeded'}), '1',
	'in a run worker');

ok(!$node->log_contains('TRAP:|terminated by signal|server process .* was terminated'),
	'no crash in the server log');
$node->stop;
done_testing();
