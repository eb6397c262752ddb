-- The operator role: granted by the owner, it may run, trigger, pause, resume and replay a
-- pipeline (which still runs as the owner), and nothing that redefines it; revoked, nothing.
BEGIN;
SELECT plan(18);

CREATE ROLE medallion_tap_opr_owner NOLOGIN;
CREATE ROLE medallion_tap_opr_oncall NOLOGIN;
CREATE ROLE medallion_tap_opr_member NOLOGIN IN ROLE medallion_tap_opr_oncall;
CREATE ROLE medallion_tap_opr_stranger NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_opr_owner;

SET ROLE medallion_tap_opr_owner;
SELECT FROM medallion.create_bronze('opr_src', 'app');
SELECT FROM medallion.create_silver('opr', 'bronze.opr_src', '{"id": "int", "n": "int"}', ARRAY['id']);
SELECT FROM medallion.ingest('bronze.opr_src', '[{"id": 1, "n": 1}, {"id": 2, "n": "x"}]');
RESET ROLE;

SET ROLE medallion_tap_opr_oncall;
SELECT throws_ok($$SELECT medallion.run('silver.opr')$$, '42501', NULL, 'before a grant, the on-call role cannot run it');
SELECT throws_ok($$SELECT medallion.grant_operator('silver.opr', 'medallion_tap_opr_oncall')$$, '42501', NULL,
                 'nor grant itself');
RESET ROLE;

SET ROLE medallion_tap_opr_owner;
SELECT lives_ok($$SELECT medallion.grant_operator('silver.opr', 'medallion_tap_opr_oncall')$$, 'the owner grants it');
RESET ROLE;

SET ROLE medallion_tap_opr_member;
SELECT isnt(medallion.run('silver.opr'), NULL, 'a member of the operator role runs it');
RESET ROLE;
SELECT is((SELECT count(*) FROM silver.opr), 1::bigint, 'the run loaded the good row, as the owner');
SET ROLE medallion_tap_opr_oncall;
SELECT throws_ok($$SELECT count(*) FROM silver.opr$$, '42501', NULL, 'the operator still cannot read the table');
SELECT lives_ok($$SELECT medallion.pause('silver.opr')$$, 'an operator pauses');
SELECT lives_ok($$SELECT medallion.resume('silver.opr')$$, 'and resumes');
SELECT lives_ok($$SELECT medallion.trigger('silver.opr')$$, 'and triggers');
SELECT is(medallion.replay_dlq('silver.opr'), 0::bigint, 'and replays');
-- (the runs' rows are read by a later statement: a query does not see what it wrote)
SELECT set_config('opr.round', (SELECT array_agg(r)::text FROM medallion.run_all() r), true);
SELECT is((SELECT count(*) FROM medallion.runs x
           WHERE x.run_id = ANY (current_setting('opr.round')::bigint[]) AND x.pipeline = 'silver.opr'),
          1::bigint, 'run_all runs the pipelines the caller operates');
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.opr', '{"max_retries": 1}')$$, '42501', NULL,
                 'an operator cannot alter the pipeline');
SELECT throws_ok($$SELECT medallion.schedule('silver.opr', '1 minute')$$, '42501', NULL, 'nor schedule it');
SELECT throws_ok($$SELECT medallion.drop_pipeline('silver.opr')$$, '42501', NULL, 'nor drop it');
SELECT throws_ok($$SELECT medallion.dlq_discard('silver.opr', NULL, 'x')$$, '42501', NULL, 'nor discard its dead letters');
RESET ROLE;

SET ROLE medallion_tap_opr_stranger;
SELECT throws_ok($$SELECT medallion.pause('silver.opr')$$, '42501', NULL, 'another role still cannot pause it');
RESET ROLE;

SET ROLE medallion_tap_opr_owner;
SELECT lives_ok($$SELECT medallion.revoke_operator('silver.opr', 'medallion_tap_opr_oncall')$$, 'the owner revokes it');
RESET ROLE;
SET ROLE medallion_tap_opr_oncall;
SELECT throws_ok($$SELECT medallion.run('silver.opr')$$, '42501', NULL, 'after which the role cannot run it');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
