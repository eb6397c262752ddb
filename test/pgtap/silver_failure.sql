-- A failing silver run: an error while *writing* (here a user's CHECK on the
-- silver table that new data violates) fails the run; the failure is recorded with its class
-- and message and only the run's own work is rolled back: silver unchanged, no DLQ rows, the
-- watermark not advanced, so the next run after the fix retries the same rows.
-- run(p, strict => true) raises instead and records nothing. A paused pipeline refuses to run.
BEGIN;
SELECT plan(28);

-- the SQLSTATE and hint of the error a statement raises
CREATE FUNCTION pg_temp.error_of(sql text, OUT state text, OUT hint text) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, hint = PG_EXCEPTION_HINT;
END $$;

SELECT FROM medallion.create_bronze('stock', 'wms');
SELECT FROM medallion.create_silver('stock', 'bronze.stock', '{"sku": "text", "qty": "integer"}', ARRAY['sku']);
SELECT FROM medallion.ingest('bronze.stock', '[{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]');
SELECT FROM medallion.run('silver.stock');
CREATE TEMP TABLE stock_before AS SELECT sku, qty, _source_seq, _run_id FROM silver.stock;

-- A write error fails the run ---------------------------------------------------------------

ALTER TABLE silver.stock ADD CONSTRAINT qty_small CHECK (qty < 100);
SELECT FROM medallion.ingest('bronze.stock', '[{"sku": "a", "qty": 5}, {"sku": "c", "qty": 500}, {"sku": "d", "qty": "x"}]');

SELECT results_eq(
    $$SELECT status, error_class, sqlstate, error_message, finished_at IS NOT NULL FROM tap.run_row('silver.stock')$$,
    $$VALUES ('failed', 'data_quality', '23514', 'new row for relation "stock" violates check constraint "qty_small"', true)$$,
    'the run is recorded as failed with its error class, SQLSTATE and message');
SELECT results_eq(
    $$SELECT rows_read, rows_inserted, rows_updated, rows_unchanged, rows_dlq, rows_quarantined, rows_dropped
      FROM medallion.runs WHERE pipeline = 'silver.stock' AND status = 'failed'$$,
    $$VALUES (0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint)$$,
    'a failed run counts nothing: none of its work stays');
SELECT set_eq($$SELECT sku, qty, _source_seq, _run_id FROM silver.stock$$, $$SELECT * FROM stock_before$$,
              'silver is unchanged (the good row of the window was not written either)');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.stock'), 0,
          'the bad row found during the failed run is not in the DLQ');
SELECT lives_ok($$SELECT medallion.run('silver.stock')$$, 'a failing run does not raise (it warns)');
SELECT is((SELECT count(*)::int FROM medallion.runs WHERE pipeline = 'silver.stock' AND status = 'failed'), 2,
          'each failing run is recorded');

-- strict => true raises and records nothing --------------------------------------------------

SELECT throws_ok($$SELECT medallion.run('silver.stock', strict => true)$$, '23514', NULL,
                 'run(p, strict => true) raises the error');
SELECT is((SELECT count(*)::int FROM medallion.runs WHERE pipeline = 'silver.stock'), 3,
          'and leaves no run row');

-- After the fix, the next run retries the same rows --------------------------------------------

ALTER TABLE silver.stock DROP CONSTRAINT qty_small;
SELECT results_eq(
    $$SELECT status, rows_read, rows_inserted, rows_updated, rows_dlq FROM tap.run_row('silver.stock')$$,
    $$VALUES ('succeeded', 3::bigint, 1::bigint, 1::bigint, 1::bigint)$$,
    'the watermark had not moved: the next run reads the same three rows');
SELECT results_eq($$SELECT sku, qty FROM silver.stock ORDER BY sku$$,
                  $$VALUES ('a', 5), ('b', 2), ('c', 500)$$, 'and loads them');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.stock'), 1, 'the bad row is in the DLQ once');
SELECT is((SELECT rows_read FROM tap.run_row('silver.stock')), 0::bigint, 'then nothing is left');

-- A failure that is not a data error: a dropped column (schema) ------------------------------

ALTER TABLE silver.stock DROP COLUMN qty;
-- the DDL watch halted the pipeline (a breaking change): let it run into the error
SELECT FROM medallion.resume('silver.stock');
SELECT FROM medallion.ingest('bronze.stock', '[{"sku": "e", "qty": 1}]');
SELECT results_eq($$SELECT status, error_class, sqlstate FROM tap.run_row('silver.stock')$$,
                  $$VALUES ('failed', 'schema', '42703')$$, 'a schema error fails the run, classified as schema');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.stock'), 1,
          'a schema error sends nothing to the DLQ');
ALTER TABLE silver.stock ADD COLUMN qty integer;
SELECT results_eq($$SELECT status, rows_read, rows_inserted FROM tap.run_row('silver.stock')$$,
                  $$VALUES ('succeeded', 1::bigint, 1::bigint)$$, 'once repaired, the row is read again and loads');

-- Pause and resume ----------------------------------------------------------------------------

SELECT lives_ok($$SELECT medallion.pause('silver.stock')$$, 'pause() pauses a pipeline');
SELECT is((SELECT state FROM medallion.pipelines WHERE name = 'silver.stock'), 'paused', 'its state is paused');
SELECT FROM medallion.ingest('bronze.stock', '[{"sku": "f", "qty": 1}]');
SELECT throws_ok($$SELECT medallion.run('silver.stock')$$, '55000', 'pipeline "silver.stock" is paused',
                 'a paused pipeline refuses to run (55000)');
SELECT is((pg_temp.error_of($$SELECT medallion.run('silver.stock')$$)).hint,
          'Run medallion.resume(''silver.stock'') to let it run again.', 'the refusal hints at resume()');
SELECT throws_ok($$SELECT medallion.run('silver.stock', strict => true)$$, '55000', NULL, 'strict or not');
SELECT is((SELECT count(*)::int FROM medallion.runs WHERE pipeline = 'silver.stock'), 7,
          'a refused run leaves no run row');
SELECT is((SELECT count(*)::int FROM medallion.run_all()), 0, 'run_all skips a paused pipeline');
SELECT lives_ok($$SELECT medallion.resume('silver.stock')$$, 'resume() lets it run again');
SELECT is((SELECT state FROM medallion.pipelines WHERE name = 'silver.stock'), 'active', 'its state is active');
SELECT results_eq($$SELECT status, rows_read FROM tap.run_row('silver.stock')$$,
                  $$VALUES ('succeeded', 1::bigint)$$, 'and it runs, reading what landed while paused');
SELECT throws_ok($$SELECT medallion.pause('silver.nosuch')$$, '42704', NULL, 'pause() of an unknown pipeline (42704)');
SELECT throws_ok($$SELECT medallion.resume(NULL)$$, '22004', NULL, 'resume(NULL) (22004)');

SELECT is_empty(
    $$SELECT run_id FROM medallion.runs WHERE pipeline = 'silver.stock'
        AND rows_read <> rows_inserted + rows_updated + rows_unchanged + rows_dlq + rows_quarantined + rows_dropped$$,
    'rows_read = inserted + updated + unchanged + dlq + quarantined + dropped on every run');

SELECT * FROM finish();
ROLLBACK;
