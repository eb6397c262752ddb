-- Every run executes the pipeline's SQL as the pipeline's owner, whoever starts it
-- (docs/architecture.md, "The trust boundary"): a superuser's run() of a pipeline owned by an unprivileged role cannot lend the
-- pipeline the superuser's rights, and a role that does not own a pipeline cannot run it.
BEGIN;
SELECT plan(16);

CREATE ROLE medallion_tap_owner NOLOGIN;
CREATE ROLE medallion_tap_stranger NOLOGIN;
CREATE ROLE medallion_tap_team NOLOGIN;
GRANT medallion_tap_owner TO medallion_tap_team;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_owner;

-- a function only the superuser may execute
CREATE FUNCTION public.tap_privileged(t text) RETURNS text LANGUAGE sql AS $$ SELECT 'secret:' || t $$;
REVOKE EXECUTE ON FUNCTION public.tap_privileged(text) FROM PUBLIC;

SET ROLE medallion_tap_owner;
SELECT FROM medallion.create_bronze('owned', 'app');
SELECT lives_ok($$SELECT medallion.create_silver('owned_who', 'bronze.owned',
    '{"id": "bigint", "who": {"path": "id", "type": "text", "expr": "current_user::text"}}', ARRAY['id'])$$,
    'an unprivileged role with CREATE on silver defines a pipeline');
SELECT lives_ok($$SELECT medallion.create_silver('owned_priv', 'bronze.owned',
    '{"id": "bigint", "tag": {"path": "id", "type": "text", "expr": "public.tap_privileged(tag)"}}', ARRAY['id'])$$,
    'a pipeline whose expression calls a function its owner may not execute');
SELECT FROM medallion.ingest('bronze.owned', '[{"id": 1}, {"id": 2}]');
RESET ROLE;

SELECT is((SELECT owner::text FROM medallion.pipelines WHERE name = 'silver.owned_priv'), 'medallion_tap_owner',
          'the pipeline is owned by the role that created it');

-- A superuser's run executes as the owner -------------------------------------------------------

SELECT ok(medallion.run('silver.owned_who') IS NOT NULL, 'a superuser runs the pipeline');
SELECT results_eq($$SELECT DISTINCT who FROM silver.owned_who$$, $$VALUES ('medallion_tap_owner')$$,
                  'its expressions ran as the owner, not as the superuser');
SELECT ok(medallion.run('silver.owned_priv') IS NOT NULL, 'a superuser runs the other pipeline');
SELECT results_eq($$SELECT status, sqlstate, error_message FROM medallion.runs WHERE pipeline = 'silver.owned_priv'$$,
                  $$VALUES ('failed', '42501', 'permission denied for function tap_privileged')$$,
                  'an expression calling a function the owner may not execute fails the run (42501)');
SELECT is((SELECT count(*)::int FROM silver.owned_priv), 0, 'and loads nothing');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.owned_priv'), 0,
          'a permission error is not a bad row');
SELECT is(current_user::text, 'postgres', 'the superuser is itself again after the run');

GRANT EXECUTE ON FUNCTION public.tap_privileged(text) TO medallion_tap_owner;
SELECT FROM medallion.run('silver.owned_priv');
SELECT results_eq($$SELECT status, rows_inserted FROM medallion.runs WHERE pipeline = 'silver.owned_priv' ORDER BY run_id DESC LIMIT 1$$,
                  $$VALUES ('succeeded', 2::bigint)$$, 'once the owner may execute it, the run loads the rows');

-- Other roles -------------------------------------------------------------------------------------

SET ROLE medallion_tap_stranger;
SELECT throws_ok($$SELECT medallion.run('silver.owned_who')$$, '42501', NULL,
                 'a role that does not own the pipeline cannot run it (42501)');
SELECT throws_ok($$SELECT medallion.replay_dlq('silver.owned_who')$$, '42501', NULL, 'nor replay its DLQ');
SELECT throws_ok($$SELECT medallion.pause('silver.owned_who')$$, '42501', NULL, 'nor pause it');
SELECT throws_ok($$SELECT medallion.expect('silver.owned_who', 'x', 'true')$$, '42501', NULL, 'nor add expectations');
RESET ROLE;
SET ROLE medallion_tap_team;
SELECT lives_ok($$SELECT medallion.run('silver.owned_who')$$, 'a member of the owner role can run it');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
