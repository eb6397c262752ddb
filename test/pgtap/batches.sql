-- Batches: a batch id lands once per bronze table, whatever entry point sends
-- it; medallion.batches records each landed batch with its counts.
-- (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(15);

SELECT FROM medallion.create_bronze('ticks', 'feed');
SELECT FROM medallion.create_bronze('quotes', 'feed');

SELECT is(medallion.ingest_text('bronze.ticks', E'{"t": 1}\n{"t": 2}\nbroken', 'ndjson', 'day-1', 'ticks-1.ndjson'),
          2::bigint, 'a new batch lands');
SELECT is(medallion.ingest_text('bronze.ticks', E'{"t": 1}\n{"t": 2}\nbroken', 'ndjson', 'day-1', 'ticks-1.ndjson'),
          0::bigint, 'the same batch id twice lands 0 rows the second time');
SELECT is(medallion.ingest_text('bronze.ticks', '{"t": 3}', 'ndjson', 'day-1'), 0::bigint,
          'the batch id decides, not the content');
SELECT is(medallion.ingest('bronze.ticks', '{"t": 4}', 'day-1'), 0::bigint,
          'nor the entry point: ingest() honours batches landed by ingest_text()');
SELECT results_eq(
    $$SELECT _raw FROM bronze.ticks ORDER BY _seq$$,
    $$VALUES ('{"t": 1}'::jsonb), ('{"t": 2}')$$,
    'the table holds the first delivery only');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE batch_id = 'day-1'), 1,
          'the first delivery''s dead letter is not duplicated by the re-sends');
SELECT results_eq(
    $$SELECT pipeline, batch_id, file_name, rows_landed, rows_dlq FROM medallion.batches$$,
    $$VALUES ('bronze.ticks', 'day-1', 'ticks-1.ndjson', 2::bigint, 1::bigint)$$,
    'medallion.batches: one row per landed batch, with the file name and counts');

SELECT is(medallion.ingest_text('bronze.quotes', '{"q": 1}', 'ndjson', 'day-1'), 1::bigint,
          'batch ids are per table: day-1 lands in another bronze table');

-- A batch is claimed in the ingesting transaction: rolled back, it can be sent again.
SAVEPOINT before_day_2;
SELECT is(medallion.ingest_text('bronze.ticks', '{"t": 5}', 'ndjson', 'day-2'), 1::bigint,
          'day-2 lands');
ROLLBACK TO SAVEPOINT before_day_2;
SELECT ok(NOT EXISTS (SELECT FROM medallion.batches WHERE batch_id = 'day-2'),
          'rolled back, day-2 is no longer recorded');
SELECT is(medallion.ingest_text('bronze.ticks', '{"t": 5}', 'ndjson', 'day-2'), 1::bigint,
          'so sending day-2 again lands it');
SELECT is((SELECT count(*)::int FROM bronze.ticks WHERE _batch_id = 'day-2'), 1, 'exactly once');

-- Without a batch id: a fresh one per call.
SELECT is(medallion.ingest_text('bronze.ticks', '{"t": 6}') + medallion.ingest_text('bronze.ticks', '{"t": 6}'),
          2::bigint, 'without a batch id, every call lands');
SELECT ok((SELECT bool_and(_batch_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
           AND count(DISTINCT _batch_id) = 2
           FROM bronze.ticks WHERE _raw = '{"t": 6}'),
          'each call got its own generated UUID batch id');
SELECT is((SELECT count(*)::int FROM medallion.batches WHERE pipeline = 'bronze.ticks'), 4,
          'and each generated batch is recorded');

SELECT * FROM finish();
ROLLBACK;
