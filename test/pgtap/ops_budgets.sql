-- Budgets after creation: alter_pipeline() changes a silver pipeline's max_rows_per_run (the
-- contract's option, through a new contract version), the next run reads the new bound, null
-- removes it; only the owner may, only for silver, only a positive integer.
BEGIN;
SELECT plan(12);

-- runs a pipeline and returns its rows_read (a column PUBLIC may read)
CREATE FUNCTION tap.budget_run(p text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    id bigint := medallion.run(p);
BEGIN
    RETURN (SELECT rows_read FROM medallion.runs WHERE run_id = id);
END $$;
CREATE ROLE medallion_tap_budget_owner NOLOGIN;
CREATE ROLE medallion_tap_budget_stranger NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_budget_owner;
SET ROLE medallion_tap_budget_owner;
SELECT FROM medallion.create_bronze('budget_src', 'web');
SELECT FROM medallion.create_silver('budget', 'bronze.budget_src', '{"id": "bigint", "n": "int"}',
                                    ARRAY['id'], NULL, '{"max_rows_per_run": 4}');
SELECT FROM medallion.ingest('bronze.budget_src',
    (SELECT jsonb_agg(jsonb_build_object('id', i, 'n', i)) FROM generate_series(1, 20) i));

SELECT results_eq($$SELECT tap.budget_run('silver.budget')$$, $$VALUES (4::bigint)$$,
                  'the bound given at creation holds');

SELECT lives_ok($$SELECT medallion.alter_pipeline('silver.budget', '{"max_rows_per_run": 3, "time_budget": "1 minute"}')$$,
                'the owner changes max_rows_per_run with alter_pipeline');
SELECT results_eq($$SELECT tap.budget_run('silver.budget')$$, $$VALUES (3::bigint)$$,
                  'the next run reads the new bound');
SELECT is((SELECT definition -> 'options' -> 'max_rows_per_run' FROM medallion.pipelines WHERE name = 'silver.budget'),
          '3'::jsonb, 'the contract holds the new bound');
SELECT is((SELECT max(version) FROM medallion.contract_versions WHERE pipeline = 'silver.budget'), 2,
          'as a new contract version');
SELECT is((SELECT options ->> 'time_budget' FROM medallion.pipelines WHERE name = 'silver.budget'), '1 minute',
          'the other options of the call are set too');
SELECT is((SELECT options -> 'max_rows_per_run' FROM medallion.pipelines WHERE name = 'silver.budget'),
          '3'::jsonb, 'the copy in the pipeline''s options follows');

SELECT FROM medallion.alter_pipeline('silver.budget', '{"max_rows_per_run": null}');
SELECT results_eq($$SELECT tap.budget_run('silver.budget')$$, $$VALUES (13::bigint)$$,
                  'null removes the bound: the run drains the rest');

SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.budget', '{"max_rows_per_run": 0}')$$,
                 '22023', NULL, 'zero is refused');
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.budget', '{"max_rows_per_run": "ten"}')$$,
                 '22023', NULL, 'a string is refused');
SELECT throws_ok($$SELECT medallion.alter_pipeline('bronze.budget_src', '{"max_rows_per_run": 10}')$$,
                 '22023', 'option max_rows_per_run applies to silver pipelines only', 'only silver runs are bounded by rows');

RESET ROLE;
SET ROLE medallion_tap_budget_stranger;
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.budget', '{"max_rows_per_run": 100}')$$,
                 '42501', NULL, 'another role may not change the bound');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
