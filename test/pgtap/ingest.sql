-- medallion.ingest(target, payload jsonb, batch_id, file_name): objects land,
-- anything else goes to the DLQ; the target must be a medallion bronze table.
-- (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(27);

SELECT FROM medallion.create_bronze('orders', 'shop');

-- One object --------------------------------------------------------------------

SELECT is(medallion.ingest('bronze.orders', '{"id": 1, "total": 9.5}', 'b1', 'orders-1.json'), 1::bigint,
          'one object lands one row');
SELECT results_eq(
    $$SELECT _raw, _source_system, _batch_id, _file_name FROM bronze.orders$$,
    $$VALUES ('{"id": 1, "total": 9.5}'::jsonb, 'shop', 'b1', 'orders-1.json')$$,
    'the row holds the payload, the source system, the batch id and the file name');
SELECT ok((SELECT _xid = pg_current_xact_id() AND _ingested_at = now() AND _seq IS NOT NULL
           FROM bronze.orders),
          'the row is stamped with the transaction id, the landing time and a sequence number');

-- An array: objects land in order, other elements go to the DLQ ---------------------

SELECT is(medallion.ingest('bronze.orders',
                           '[{"id": 2}, 3, {"id": 4}, "five", null, [{"id": 6}], {"id": 7}]', 'b2'),
          3::bigint, 'only the objects of an array land');
SELECT results_eq(
    $$SELECT _raw FROM bronze.orders WHERE _batch_id = 'b2' ORDER BY _seq$$,
    $$VALUES ('{"id": 2}'::jsonb), ('{"id": 4}'), ('{"id": 7}')$$,
    'they land in array order');
SELECT results_eq(
    $$SELECT pipeline, error_type, sqlstate, original_payload, line_number, batch_id, file_name
      FROM medallion.dlq WHERE batch_id = 'b2' ORDER BY line_number$$,
    $$VALUES ('bronze.orders', 'parse', '22032', '3', 2::bigint, 'b2', NULL::text),
             ('bronze.orders', 'parse', '22032', '"five"', 4, 'b2', NULL),
             ('bronze.orders', 'parse', '22032', 'null', 5, 'b2', NULL),
             ('bronze.orders', 'parse', '22032', '[{"id": 6}]', 6, 'b2', NULL)$$,
    'each non-object element is a DLQ row with its position in the array');
SELECT is((SELECT error_message FROM medallion.dlq WHERE batch_id = 'b2' AND line_number = 2),
          'array element is not a JSON object', 'the DLQ row says why');
SELECT results_eq(
    $$SELECT rows_landed, rows_dlq FROM medallion.batches WHERE pipeline = 'bronze.orders' AND batch_id = 'b2'$$,
    $$VALUES (3::bigint, 4::bigint)$$,
    'the batch records what landed and what went to the DLQ');

SELECT is(medallion.ingest('bronze.orders', '[]', 'b3'), 0::bigint, 'an empty array lands nothing');
SELECT ok(EXISTS (SELECT FROM medallion.batches WHERE pipeline = 'bronze.orders' AND batch_id = 'b3'),
          'an empty batch is still recorded as landed');

SELECT is(medallion.ingest('bronze.orders', '"just a string"', 'b4'), 0::bigint,
          'a scalar payload lands nothing');
SELECT results_eq(
    $$SELECT original_payload, line_number, error_type FROM medallion.dlq WHERE batch_id = 'b4'$$,
    $$VALUES ('"just a string"', 1::bigint, 'parse')$$,
    'a scalar payload goes to the DLQ');

-- Batches ---------------------------------------------------------------------------

SELECT is(medallion.ingest('bronze.orders', '[{"id": 2}, 3]', 'b2'), 0::bigint,
          'a batch id already landed lands nothing');
SELECT is((SELECT count(*)::int FROM bronze.orders WHERE _batch_id = 'b2'), 3,
          'the batch''s rows are not duplicated');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE batch_id = 'b2'), 4,
          'nor are its dead letters');

SELECT is(medallion.ingest('bronze.orders', '{"id": 8}') + medallion.ingest('bronze.orders', '{"id": 8}'),
          2::bigint, 'without a batch id every call lands');
SELECT is((SELECT count(DISTINCT _batch_id)::int FROM bronze.orders WHERE _raw = '{"id": 8}'), 2,
          'each call got a generated batch id of its own');

SELECT FROM medallion.create_bronze('returns', 'shop');
SELECT is(medallion.ingest('bronze.returns', '{"id": 1}', 'b1'), 1::bigint,
          'batch ids are per bronze table: b1 lands in another table');

SELECT throws_ok($$SELECT medallion.ingest('bronze.orders', '{}', '')$$, '22023', NULL,
                 'an empty batch id is refused');

-- Arguments and targets ----------------------------------------------------------

SELECT throws_ok($$SELECT medallion.ingest(NULL, '{}')$$, '22004', NULL, 'a NULL target is refused');
SELECT throws_ok($$SELECT medallion.ingest('bronze.orders', NULL)$$, '22004', NULL,
                 'a NULL payload is refused');
SELECT throws_ok($$SELECT medallion.ingest('bronze.no_such_table', '{}')$$, '42P01', NULL,
                 'a table that does not exist is refused');

CREATE TABLE public.plain (_raw jsonb, _batch_id text, _file_name text);
SELECT throws_ok($$SELECT medallion.ingest('public.plain', '{}')$$, '42809', NULL,
                 'a table outside schema bronze is refused');
SELECT throws_ok($$SELECT medallion.ingest('medallion.dlq', '{}')$$, '42809', NULL,
                 'a catalog table is refused');
CREATE TABLE bronze.handmade (_raw jsonb, _batch_id text, _file_name text,
                              _ingested_at timestamptz DEFAULT now()) PARTITION BY RANGE (_ingested_at);
SELECT throws_ok($$SELECT medallion.ingest('bronze.handmade', '{}')$$, '42809', NULL,
                 'a partitioned table in bronze that medallion did not create is refused');
SELECT throws_ok(format('SELECT medallion.ingest(%L, ''{}'')',
                        'bronze.orders_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')),
                 '42809', NULL, 'a partition of a bronze table is refused');
SELECT is((SELECT count(*)::int FROM bronze.orders), 6,
          'in all, the objects landed once each');

SELECT * FROM finish();
ROLLBACK;
