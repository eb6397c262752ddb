-- Budgets after creation: alter_pipeline() changes a silver pipeline's max_rows_per_run (the
-- contract's option, through a new contract version), the next run reads the new bound, null
-- removes it; only the owner may, only for silver, only a positive integer.
BEGIN;
SELECT plan(16);

-- runs a pipeline and returns its rows_read (a column PUBLIC may read)
CREATE FUNCTION tap.budget_run(p text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    id bigint := medallion.run(p);
BEGIN
    RETURN (SELECT rows_read FROM medallion.runs WHERE run_id = id);
END $$;
CREATE ROLE medallion_tap_budget_owner NOLOGIN;
CREATE ROLE medallion_tap_budget_stranger NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver, gold TO medallion_tap_budget_owner;
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

-- what each run cost, for every kind: buffers and WAL
SELECT ok((SELECT bool_and(shared_blks_hit + shared_blks_read > 0 AND wal_bytes > 0) FROM medallion.runs
           WHERE pipeline = 'silver.budget' AND rows_read > 0),
          'a silver run that loaded rows records its buffer and WAL usage');
SELECT FROM medallion.create_gold('budget_total', 'SELECT count(*) AS n FROM silver.budget');
SELECT medallion.run('gold.budget_total') AS gold_run \gset
SELECT ok((SELECT shared_blks_hit + shared_blks_read > 0 AND wal_bytes > 0 FROM medallion.runs
           WHERE run_id = :gold_run),
          'so does a gold run');
RESET ROLE;
SET ROLE medallion_tap_budget_stranger;
SELECT ok((SELECT count(*) > 0 FROM medallion.runs WHERE pipeline = 'silver.budget' AND wal_bytes IS NOT NULL),
          'another role reads the usage like the other counts');
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.budget', '{"max_rows_per_run": 100}')$$,
                 '42501', NULL, 'another role may not change the bound');
RESET ROLE;

-- a failed run: its work rolled back, its cost recorded; a skipped one: not measured
SELECT FROM medallion.expect('silver.budget', 'never', 'n < 0', 'fail');
SELECT FROM medallion.ingest('bronze.budget_src', '[{"id": 100, "n": 1}]');
SELECT medallion.run('silver.budget') AS failed_run \gset
SELECT is((SELECT status || ' ' || (wal_bytes IS NOT NULL) FROM medallion.runs WHERE run_id = :failed_run),
          'failed true', 'a failed run records what it cost');

SELECT * FROM finish();
ROLLBACK;
