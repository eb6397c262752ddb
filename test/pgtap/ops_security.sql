-- Operations as an unprivileged role: the statements medallion runs as the catalog owner for
-- a run (its record, the failure policy, the time budget, alerts) and for alter_pipeline are
-- immune to the caller's search_path and temporary types; run and alert messages are capped
-- and shown only to the pipeline's owner; a pipeline whose owner role is gone is refused and
-- halted; an over_budget alert is resolved by the next successful run.
BEGIN;
SELECT plan(26);

CREATE ROLE medallion_tap_ops_evil NOLOGIN;
CREATE ROLE medallion_tap_ops_stranger NOLOGIN;
CREATE ROLE medallion_tap_ops_gone NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_ops_evil, medallion_tap_ops_gone;

-- The hostile schema: look-alike operators that record who calls them --------------------------

CREATE SCHEMA evil AUTHORIZATION medallion_tap_ops_evil;
SET ROLE medallion_tap_ops_evil;
CREATE TABLE evil.calls (who text, what text);
GRANT INSERT ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.log_call(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evil.calls VALUES (current_user, what);
    RETURN true;
END $$;
CREATE FUNCTION evil.eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.log_call('='); RETURN pg_catalog.texteq(a, b); END $$;
CREATE FUNCTION evil.ne(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.log_call('<>'); RETURN pg_catalog.textne(a, b); END $$;
CREATE FUNCTION evil.plus(a integer, b integer) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.log_call('+'); RETURN pg_catalog.int4pl(a, b); END $$;
CREATE FUNCTION evil.times(a double precision, b double precision) RETURNS double precision LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.log_call('*'); RETURN pg_catalog.float8mul(a, b); END $$;
CREATE FUNCTION evil.has(a jsonb, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.log_call('?'); RETURN pg_catalog.jsonb_exists(a, b); END $$;
CREATE FUNCTION evil.field(a jsonb, b text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.log_call('->>'); RETURN pg_catalog.jsonb_object_field_text(a, b); END $$;
CREATE FUNCTION evil.ge(a integer, b integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.log_call('>='); RETURN pg_catalog.int4ge(a, b); END $$;
CREATE OPERATOR evil.= (FUNCTION = evil.eq, LEFTARG = text, RIGHTARG = text);
CREATE OPERATOR evil.<> (FUNCTION = evil.ne, LEFTARG = text, RIGHTARG = text);
CREATE OPERATOR evil.+ (FUNCTION = evil.plus, LEFTARG = integer, RIGHTARG = integer);
CREATE OPERATOR evil.* (FUNCTION = evil.times, LEFTARG = double precision, RIGHTARG = double precision);
CREATE OPERATOR evil.? (FUNCTION = evil.has, LEFTARG = jsonb, RIGHTARG = text);
CREATE OPERATOR evil.->> (FUNCTION = evil.field, LEFTARG = jsonb, RIGHTARG = text);
CREATE OPERATOR evil.>= (FUNCTION = evil.ge, LEFTARG = integer, RIGHTARG = integer);
-- a temporary type named jsonb, whose CHECK records its caller
CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (evil.log_call('pg_temp.jsonb'));

SELECT FROM medallion.create_bronze('ops_evil', 'app');
SELECT FROM medallion.create_silver('ops_evil', 'bronze.ops_evil', '{"id": "int", "n": "int"}', ARRAY['id']);
ALTER TABLE silver.ops_evil ADD CONSTRAINT n_small CHECK (n < 100);

-- Everything below, as that role, with the look-alikes first on its path -----------------------
SET search_path = evil, pg_catalog, public;
DELETE FROM evil.calls;

SELECT lives_ok($$SELECT medallion.alter_pipeline('silver.ops_evil', '{"time_budget": "1 minute", "breaker_threshold": 2}')$$,
                'alter_pipeline, with a temporary domain named jsonb on the path');
SELECT FROM medallion.ingest('bronze.ops_evil', '[{"id": 1, "n": 1}, {"id": 2, "n": 500}]');
SELECT FROM medallion.run('silver.ops_evil');
SELECT is((SELECT status FROM medallion.runs ORDER BY run_id DESC LIMIT 1), 'failed', 'a failing run of its own pipeline');
SELECT FROM medallion.run('silver.ops_evil');
SELECT is((SELECT status FROM medallion.runs ORDER BY run_id DESC LIMIT 1), 'failed', 'a second failure opens the breaker');
SELECT is((SELECT state FROM medallion.pipelines WHERE name OPERATOR(pg_catalog.=) 'silver.ops_evil'),
          'circuit_open', 'the breaker is open');
SELECT lives_ok($$SELECT medallion.resume('silver.ops_evil')$$, 'resume()');
ALTER TABLE silver.ops_evil DROP CONSTRAINT n_small;
SELECT FROM medallion.run('silver.ops_evil');
SELECT is((SELECT status FROM medallion.runs ORDER BY run_id DESC LIMIT 1), 'succeeded', 'a succeeding run');
SELECT lives_ok($$SELECT medallion.pause('silver.ops_evil')$$, 'pause()');
SELECT lives_ok($$SELECT medallion.unschedule('silver.ops_evil')$$, 'unschedule()');
RESET search_path;
RESET ROLE;

SELECT is((SELECT pg_catalog.count(*)::int FROM evil.calls
           WHERE who OPERATOR(pg_catalog.<>) 'medallion_tap_ops_evil'),
          0, 'no look-alike operator or type was ever called as another role');
SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = 'medallion_tap_ops_evil'), false,
          'and the role did not become a superuser');
SELECT is((SELECT options->>'time_budget' FROM medallion.pipelines WHERE name = 'silver.ops_evil'),
          '1 minute', 'alter_pipeline stored its options');

-- Messages: capped, and the owner's only ------------------------------------------------------

SELECT throws_ok($$SET ROLE medallion_tap_ops_stranger; SELECT error_message FROM medallion.runs$$,
                 '42501', NULL, 'another role cannot read runs.error_message');
RESET ROLE;
SELECT throws_ok($$SET ROLE medallion_tap_ops_stranger; SELECT message FROM medallion.alerts$$,
                 '42501', NULL, 'nor alerts.message');
RESET ROLE;
SET ROLE medallion_tap_ops_stranger;
SELECT results_eq($$SELECT status, error_class, error_message FROM medallion.run_details
                    WHERE pipeline = 'silver.ops_evil' ORDER BY run_id LIMIT 1$$,
                  $$VALUES ('failed', 'data_quality', NULL::text)$$,
                  'run_details shows it the run, not its message');
SELECT results_eq($$SELECT kind, message FROM medallion.alert_details WHERE pipeline = 'silver.ops_evil'$$,
                  $$VALUES ('circuit_open', NULL::text)$$,
                  'alert_details shows it the alert, not its message');
SELECT is((SELECT pg_catalog.count(*)::int FROM medallion.runs WHERE pipeline = 'silver.ops_evil'), 3,
          'the other columns of runs stay readable by everyone');
RESET ROLE;
SET ROLE medallion_tap_ops_evil;
SELECT is((SELECT error_message FROM medallion.run_details WHERE pipeline = 'silver.ops_evil' ORDER BY run_id LIMIT 1),
          'new row for relation "ops_evil" violates check constraint "n_small"',
          'the owner reads the message');
RESET ROLE;

-- an expression raising a 9,000-character message
CREATE FUNCTION public.ops_boom(v int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '%', repeat('x', 9000); END $$;
SELECT FROM medallion.create_bronze('ops_loud', 'app');
SELECT FROM medallion.create_silver('ops_loud', 'bronze.ops_loud',
    '{"id": "int", "v": {"path": "id", "type": "int", "expr": "public.ops_boom(v)"}}', ARRAY['id']);
SELECT FROM medallion.alter_pipeline('silver.ops_loud', '{"breaker_threshold": 1}');
SELECT FROM medallion.ingest('bronze.ops_loud', '{"id": 1}');
SELECT lives_ok($$SELECT medallion.run('silver.ops_loud')$$,
                'a run whose expression raises a 9,000-character message returns');
SELECT results_eq($$SELECT status, octet_length(error_message) <= 1024 FROM medallion.runs WHERE pipeline = 'silver.ops_loud'$$,
                  $$VALUES ('failed', true)$$, 'the run is recorded, its message capped at 1 kB');
SELECT results_eq($$SELECT kind, octet_length(message) <= 1024 FROM medallion.alerts WHERE pipeline = 'silver.ops_loud'$$,
                  $$VALUES ('circuit_open', true)$$, 'and so is the alert''s');

-- A pipeline whose owner role is gone -------------------------------------------------------------

SET ROLE medallion_tap_ops_gone;
SELECT FROM medallion.create_bronze('ops_gone', 'app');
SELECT FROM medallion.create_silver('ops_gone', 'bronze.ops_gone', '{"id": "int"}', ARRAY['id']);
SELECT FROM medallion.ingest('bronze.ops_gone', '{"id": 1}');
RESET ROLE;
ALTER ROLE medallion_tap_ops_gone RENAME TO medallion_tap_ops_renamed;
SELECT throws_ok($$SELECT medallion.run('silver.ops_gone', strict => true)$$, '42704', NULL,
                 'a strict run of a pipeline whose owner role is gone raises 42704, even for a superuser');
SELECT lives_ok($$SELECT medallion.run('silver.ops_gone')$$, 'a run records the refusal');
SELECT results_eq($$SELECT p.state, r.status, r.sqlstate, (SELECT count(*)::int FROM silver.ops_gone)
                    FROM medallion.pipelines p, medallion.runs r
                    WHERE p.name = 'silver.ops_gone' AND r.pipeline = p.name$$,
                  $$VALUES ('halted', 'failed', '42704', 0)$$,
                  'the pipeline is halted, nothing ran (not as the table''s owner either)');
SELECT is((SELECT owner::text FROM medallion.pipelines WHERE name = 'silver.ops_gone'), 'medallion_tap_ops_gone',
          'the owner is kept by name');

-- Alerts are bounded; over_budget is resolved by the next successful run -------------------------

CREATE FUNCTION public.ops_slow(v int) RETURNS int LANGUAGE sql AS $$ SELECT v FROM pg_sleep(0.3) $$;
SELECT FROM medallion.create_bronze('ops_bud', 'app');
SELECT FROM medallion.create_silver('ops_bud', 'bronze.ops_bud',
    '{"id": "int", "v": {"path": "id", "type": "int", "expr": "public.ops_slow(v)"}}', ARRAY['id']);
SELECT FROM medallion.ingest('bronze.ops_bud', '{"id": 1}');
SELECT FROM medallion.alter_pipeline('silver.ops_bud', '{"time_budget": "50 milliseconds", "breaker_threshold": 100}');
SELECT FROM generate_series(1, 3) WHERE medallion.run('silver.ops_bud') IS NOT NULL;
SELECT results_eq($$SELECT count(*)::int, sum(occurrences)::int FROM medallion.alerts
                    WHERE pipeline = 'silver.ops_bud' AND kind = 'over_budget' AND resolved_at IS NULL$$,
                  $$VALUES (1, 3)$$, 'three runs over budget: one open over_budget alert, raised three times');
SELECT FROM medallion.alter_pipeline('silver.ops_bud', '{"time_budget": null}');
SELECT FROM medallion.run('silver.ops_bud');
SELECT is((SELECT count(*)::int FROM medallion.alerts WHERE pipeline = 'silver.ops_bud' AND kind = 'over_budget' AND resolved_at IS NULL),
          0, 'the next successful run resolves it');

SELECT * FROM finish();
ROLLBACK;
