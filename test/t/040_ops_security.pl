# Operations as an unprivileged pipeline owner (trust §1, §5): NOTIFY medallion_alerts carries
# {id, pipeline, kind} only (anyone may LISTEN; the message may quote data values); a cron
# schedule's pg_cron job runs as the pipeline's owner, never as the catalog owner; and the
# failure policy of a scheduled run (its retry backoff) runs in a worker without calling the
# look-alike operators of a database-level search_path.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('ops_security', cron => 'postgres', workers => 16, quiet => 1);
my $db = 'postgres';

sq(q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION medallion;
CREATE ROLE ops_owner LOGIN;
CREATE ROLE ops_nologin NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO ops_owner, ops_nologin;
CREATE FUNCTION public.leak(v text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'bad value %', v; END $$;
SET ROLE ops_owner;
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.create_silver('loud', 'bronze.ev', '{"id": "int", "v": {"type": "text", "expr": "public.leak(v)"}}', '{id}');
SELECT medallion.create_silver('cr', 'bronze.ev', '{"id": "int", "v": "text"}', '{id}');
SELECT medallion.alter_pipeline('silver.loud', '{"breaker_threshold": 1}');
SELECT medallion.ingest('bronze.ev', '[{"id": 1, "v": "ssn 123-45-6789"}]');
RESET ROLE;
SET ROLE ops_nologin;
SELECT medallion.create_bronze('nl', 'app');
SELECT medallion.create_silver('nl', 'bronze.nl', '{"id": "int"}', '{id}');
});

# ---- NOTIFY medallion_alerts: no message ---------------------------------------------------
my $listener = $node->background_psql($db);
$listener->query_safe('LISTEN medallion_alerts');
sq(q{SET ROLE ops_owner; SELECT medallion.run('silver.loud')});
is(sq(q{SELECT state FROM medallion.pipelines WHERE name = 'silver.loud'}), 'circuit_open',
	'a failing run opens the breaker (threshold 1)');
my $notes = $listener->query_safe('SELECT 1');
like($notes, qr/Asynchronous notification "medallion_alerts" with payload "\{"id":\d+,"pipeline":"silver\.loud","kind":"circuit_open"\}"/,
	'the alert is announced with its id, pipeline and kind');
unlike($notes, qr/123-45-6789/, 'and not with its message, which quotes the value');
is( sq(q{SELECT count(*) FROM medallion.alerts WHERE pipeline = 'silver.loud' AND message LIKE '%123-45-6789%'}),
	'1', '(the stored message does quote it: it is shown to the owner only)');
$listener->quit;

# ---- pg_cron jobs run as the pipeline's owner ------------------------------------------------
sq(q{SET ROLE ops_owner; SELECT medallion.schedule('silver.cr', '* * * * *')});
is(sq(q{SELECT username || ' | ' || command FROM cron.job WHERE jobname = 'medallion:silver.cr'}),
	q{ops_owner | SELECT medallion.trigger('silver.cr')},
	'a cron schedule makes a pg_cron job whose user is the pipeline\'s owner');
my ($rc, $out, $err) = $node->psql($db, q{SET ROLE ops_nologin; SELECT medallion.schedule('silver.nl', '*/5 * * * *')});
like($err, qr/ERROR:  role "ops_nologin" cannot log in, so pg_cron cannot run the job of pipeline "silver.nl"/,
	'an owner without LOGIN: a clear error, as pg_cron cannot run its job');
is(sq(q{SELECT count(*) FROM cron.job WHERE jobname = 'medallion:silver.nl'}), '0', '(no job made)');
ok( $node->poll_query_until($db,
		q{SELECT count(*) > 0 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
		  WHERE j.jobname = 'medallion:silver.cr' AND d.status = 'succeeded'}),
	'the job runs, as the owner');
ok($node->poll_query_until($db, q{SELECT count(*) = 1 FROM silver.cr}), 'and the pipeline ran');
sq(q{SELECT medallion.unschedule('silver.cr')});

# ---- run(wait => false) in a loop while a run holds the pipeline: bounded 'skipped' rows ----
my $holder = $node->background_psql($db);
$holder->query_safe(q{BEGIN; SELECT medallion.run('silver.cr')});
is( sq(q{SET ROLE ops_owner; SELECT count(medallion.run('silver.cr', wait => false)) FROM generate_series(1, 130)}),
	'130', 'a loop of run(wait => false) while a run is in progress: each one skipped');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.cr' AND status = 'skipped'}), '100',
	'only the latest 100 skipped runs are kept');
$holder->query_safe('COMMIT');
$holder->quit;

# ---- a scheduled pipeline whose owner role is gone: refused (42704) and halted ---------------
sq(q{
CREATE ROLE ops_gone NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO ops_gone;
SET ROLE ops_gone;
SELECT medallion.create_bronze('gone', 'app');
SELECT medallion.create_silver('gone', 'bronze.gone', '{"id": "int"}', '{id}');
SELECT medallion.schedule('silver.gone', '1 second');
SELECT medallion.ingest('bronze.gone', '{"id": 1}');
});
ok($node->poll_query_until($db, q{SELECT count(*) = 1 FROM silver.gone}), 'a scheduled pipeline runs');
sq(q{ALTER ROLE ops_gone RENAME TO ops_renamed; SELECT medallion.ingest('bronze.gone', '{"id": 2}')});
ok($node->poll_query_until($db, q{SELECT state = 'halted' FROM medallion.pipelines WHERE name = 'silver.gone'}),
	'once its owner role is renamed away, the pipeline halts');
is( sq(q{SELECT status || '/' || sqlstate || '/' || (worker_pid IS NOT NULL) FROM medallion.runs
	     WHERE pipeline = 'silver.gone' ORDER BY run_id DESC LIMIT 1}),
	'failed/42704/true', 'its scheduled run is refused with 42704, recorded by the worker');
is(sq(q{SELECT count(*) FROM silver.gone}), '1', 'and ran nothing (not as the table\'s owner either)');
is( sq(q{SELECT count(*) FROM medallion.alerts WHERE pipeline = 'silver.gone' AND kind = 'halted' AND resolved_at IS NULL}),
	'1', 'with a halted alert');

# ---- a scheduled run's failure policy, with look-alikes on the database's path ----------------
$node->safe_psql('postgres', 'CREATE DATABASE hostile');
$node->safe_psql('hostile', q{
CREATE EXTENSION medallion;
CREATE ROLE ops_evil NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO ops_evil;
CREATE SCHEMA evil AUTHORIZATION ops_evil;
SET ROLE ops_evil;
CREATE TABLE evil.calls (who text, what text);
GRANT INSERT ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.log_call(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN INSERT INTO evil.calls VALUES (current_user, what); RETURN true; END $$;
CREATE FUNCTION evil.times(a float8, b float8) RETURNS float8 LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.log_call('*'); RETURN pg_catalog.float8mul(a, b); END $$;
CREATE FUNCTION evil.eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.log_call('='); RETURN pg_catalog.texteq(a, b); END $$;
CREATE FUNCTION evil.plus(a int, b int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.log_call('+'); RETURN pg_catalog.int4pl(a, b); END $$;
CREATE OPERATOR evil.* (FUNCTION = evil.times, LEFTARG = float8, RIGHTARG = float8);
CREATE OPERATOR evil.= (FUNCTION = evil.eq, LEFTARG = text, RIGHTARG = text);
CREATE OPERATOR evil.+ (FUNCTION = evil.plus, LEFTARG = int, RIGHTARG = int);
-- a transient failure (40001): the scheduled run is retried after a backoff
CREATE FUNCTION evil.flaky(v text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not serialize access (injected)' USING ERRCODE = '40001'; END $$;
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.create_silver('tr', 'bronze.ev', '{"id": "int", "v": {"type": "text", "expr": "evil.flaky(v)"}}', '{id}');
SELECT medallion.alter_pipeline('silver.tr', '{"retry_base": "1 hour", "max_retries": 3}');
SELECT medallion.ingest('bronze.ev', '{"id": 1, "v": "a"}');
RESET ROLE;
ALTER DATABASE hostile SET search_path = evil, pg_catalog, public;
});
sub hq { return $node->safe_psql('hostile', "SET search_path = pg_catalog, public; $_[0]"); }
ok( $node->poll_query_until('hostile',
		q{SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) 1 FROM pg_catalog.pg_stat_activity
		  WHERE backend_type OPERATOR(pg_catalog.=) 'medallion scheduler'
		    AND datname OPERATOR(pg_catalog.=) 'hostile'}),
	'the database has its scheduler');
hq(q{SET ROLE ops_evil; SELECT medallion.trigger('silver.tr')});
ok( $node->poll_query_until('hostile',
		q{SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) 1 FROM medallion.runs
		  WHERE worker_pid IS NOT NULL AND status OPERATOR(pg_catalog.=) 'failed'}),
	'a scheduled run fails in a worker (transient)');
is( hq(q{SELECT error_class || '/' || (retry_at IS NOT NULL) FROM medallion.runs, medallion.pipelines
	     WHERE name = 'silver.tr'}),
	'transient/true', 'its retry is scheduled (the backoff is computed)');
is(hq(q{SELECT count(*) FROM evil.calls WHERE who <> 'ops_evil'}), '0',
	'no look-alike operator on the database\'s search_path was called as another role');
is(hq(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'ops_evil'}), 'f', 'the role did not become a superuser');

$node->stop;
done_testing();
