-- Option delete_when: a SQL condition over the bronze row (_raw) that marks a delete. A delete
-- marker removes its key when it is the newest version (order_by, then arrival); an older
-- marker changes nothing. A marker needs only the key and the version.
BEGIN;
SELECT plan(18);

SELECT FROM medallion.create_bronze('cdc', 'erp');
SELECT is(medallion.create_silver('items', 'bronze.cdc',
    '{"id": "bigint", "v": "int", "name": {"type": "text", "required": true}}',
    ARRAY['id'], 'v', $${"delete_when": "_raw->>'op' = 'D'"}$$)::text,
    'silver.items', 'a pipeline with a delete marker');
SELECT FROM medallion.create_silver('items_arrival', 'bronze.cdc',
    '{"id": "bigint", "v": "int", "name": {"type": "text", "required": true}}',
    ARRAY['id'], NULL, $${"delete_when": "_raw->>'op' = 'D'"}$$);

SELECT FROM medallion.ingest('bronze.cdc', $$[
    {"id": 1, "v": 1, "name": "one"}, {"id": 2, "v": 5, "name": "two"}, {"id": 3, "v": 1, "name": "three"}]$$);
SELECT results_eq($$SELECT rows_read, rows_inserted FROM tap.run_row('silver.items')$$,
                  $$VALUES (3::bigint, 3::bigint)$$, 'rows without the marker load (a NULL condition is no delete)');

-- Deletes newer and older than silver --------------------------------------------------------

SELECT FROM medallion.ingest('bronze.cdc', $$[{"id": 1, "v": 2, "op": "D"}, {"id": 2, "v": 4, "op": "D"}]$$);
SELECT results_eq($$SELECT status, rows_read, rows_dlq, rows_inserted + rows_updated + rows_unchanged FROM tap.run_row('silver.items')$$,
                  $$VALUES ('succeeded', 2::bigint, 0::bigint, 2::bigint)$$,
                  'delete markers without the other (even required) columns are valid');
SELECT results_eq($$SELECT id, v, name FROM silver.items ORDER BY id$$,
                  $$VALUES (2::bigint, 5, 'two'), (3, 1, 'three')$$,
                  'a newer delete marker removes its key; an older one does not');

-- Insert and delete of one key in the same window --------------------------------------------

SELECT FROM medallion.ingest('bronze.cdc', $$[
    {"id": 4, "v": 1, "name": "four"}, {"id": 4, "v": 2, "op": "D"},
    {"id": 5, "v": 1, "op": "D"}, {"id": 5, "v": 2, "name": "five"},
    {"id": 3, "v": 2, "op": "D"}, {"id": 3, "v": 1, "name": "three-again"},
    {"id": 9, "v": 1, "op": "D"}]$$);
SELECT results_eq($$SELECT rows_read, rows_inserted, rows_dlq FROM tap.run_row('silver.items')$$,
                  $$VALUES (7::bigint, 1::bigint, 0::bigint)$$, 'seven rows read, one key inserted');
SELECT results_eq($$SELECT id, v, name FROM silver.items ORDER BY id$$,
                  $$VALUES (2::bigint, 5, 'two'), (5, 2, 'five')$$,
                  'within a window the newest of inserts and deletes wins');
SELECT is((SELECT count(*)::int FROM medallion.runs WHERE pipeline = 'silver.items'
           AND rows_read <> rows_inserted + rows_updated + rows_unchanged + rows_dlq + rows_quarantined + rows_dropped), 0,
          'a delete marker for a key that is not there is counted (unchanged)');

-- A marker with a bad key or version is a bad row -----------------------------------------

SELECT FROM medallion.ingest('bronze.cdc', $$[{"id": "x", "v": 3, "op": "D"}, {"id": 5, "v": "later", "op": "D"}]$$);
SELECT results_eq($$SELECT rows_read, rows_dlq FROM tap.run_row('silver.items')$$,
                  $$VALUES (2::bigint, 2::bigint)$$, 'a marker whose key or version does not type goes to the DLQ');
SELECT results_eq($$SELECT field, error_type FROM medallion.dlq WHERE pipeline = 'silver.items' ORDER BY source_seq$$,
                  $$VALUES ('id', 'cast'), ('v', 'cast')$$, 'naming the field');
SELECT FROM medallion.ingest('bronze.cdc', $$[{"id": 2, "op": "D"}]$$);
SELECT results_eq($$SELECT rows_read, rows_dlq FROM tap.run_row('silver.items')$$,
                  $$VALUES (1::bigint, 1::bigint)$$, 'a marker without its version goes to the DLQ');
SELECT is((SELECT error_type || ' ' || field FROM medallion.dlq WHERE pipeline = 'silver.items' ORDER BY id DESC LIMIT 1),
          'required v', 'the version is required');
SELECT is((SELECT count(*)::int FROM silver.items WHERE id = 2), 1, 'and the key stays');

-- Without order_by, the later arrival wins ---------------------------------------------------

SELECT results_eq($$SELECT rows_read, rows_inserted, rows_dlq FROM tap.run_row('silver.items_arrival')$$,
                  $$VALUES (15::bigint, 1::bigint, 1::bigint)$$,
                  'the other pipeline reads the same fifteen rows: there v is no version, so only a bad key is bad');
SELECT results_eq($$SELECT id, v, name FROM silver.items_arrival ORDER BY id$$,
                  $$VALUES (3::bigint, 1, 'three-again')$$,
                  'without order_by the later arrival wins, for deletes too');

-- A delete is newest-wins against later-arriving older versions too --------------------------

SELECT FROM medallion.ingest('bronze.cdc', $$[{"id": 5, "v": 9, "op": "D"}]$$);
SELECT FROM medallion.run('silver.items');
SELECT is((SELECT count(*)::int FROM silver.items WHERE id = 5), 0, 'key 5 is deleted at version 9');
SELECT FROM medallion.ingest('bronze.cdc', $$[{"id": 5, "v": 3, "name": "five-v3"}]$$);
SELECT FROM medallion.run('silver.items');
SELECT is((SELECT count(*)::int FROM silver.items WHERE id = 5), 0,
          'an older version arriving after a newer delete does not bring the key back');

SELECT is_empty(
    $$SELECT run_id FROM medallion.runs WHERE pipeline IN ('silver.items', 'silver.items_arrival')
        AND (status <> 'succeeded'
             OR rows_read <> rows_inserted + rows_updated + rows_unchanged + rows_dlq + rows_quarantined + rows_dropped)$$,
    'every run succeeded and rows_read = inserted + updated + unchanged + dlq + quarantined + dropped');
SELECT is((SELECT sum(rows_read)::int FROM medallion.runs WHERE pipeline = 'silver.items'),
          (SELECT count(*)::int FROM bronze.cdc), 'each bronze row was read once');

SELECT * FROM finish();
ROLLBACK;
