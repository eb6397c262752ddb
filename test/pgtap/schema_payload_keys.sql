-- The payload keys registry (medallion.payload_keys): the keys and JSON types that rows of a
-- bronze table carry, two levels of objects deep, written once per batch by ingest(),
-- ingest_text() and ingest_file(), and by silver runs for rows that came without a batch
-- (capture, plain INSERT). See docs/architecture.md, "Payload drift".
BEGIN;
SELECT plan(14);

SELECT FROM medallion.create_bronze('pk_orders', 'shop');

-- ingest(): objects, nested objects (depth 2), arrays, every JSON type -------------------------

SELECT FROM medallion.ingest('bronze.pk_orders',
    '[{"id": 1, "amount": 2.5, "paid": true, "note": null, "tags": ["a"],
       "meta": {"src": "web", "n": 1, "deep": {"x": 1}}},
      "not an object"]');
SELECT results_eq(
    $$SELECT path, json_type FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_orders' ORDER BY 1, 2$$,
    $$VALUES ('amount', 'number'), ('id', 'number'), ('meta', 'object'), ('meta.deep', 'object'),
             ('meta.n', 'number'), ('meta.src', 'string'), ('note', 'null'), ('paid', 'boolean'),
             ('tags', 'array')$$,
    'ingest() registers every key of its objects with its JSON type, two levels deep (not meta.deep.x)');
SELECT is((SELECT count(*)::int FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_orders'
           AND first_seen = now() AND last_seen = now()), 9, 'first_seen and last_seen are set');

-- ingest_text(): the fast scan, an escaped key (the exact parser), a type change ------------------

SELECT FROM medallion.ingest_text('bronze.pk_orders',
    E'{"id": 2, "amount": "3.10", "\\u0063ity": "Paris"}\n{"id": 3, "items": [{"sku": "a"}], "meta": {"src": "app"}}\n{broken\n');
SELECT results_eq(
    $$SELECT path, json_type FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_orders'
      AND path IN ('amount', 'city', 'items', 'items.sku') ORDER BY 1, 2$$,
    $$VALUES ('amount', 'number'), ('amount', 'string'), ('city', 'string'), ('items', 'array')$$,
    'ingest_text() registers new keys, de-escaped keys, and a key seen with a second type (keys inside arrays are not followed)');
SELECT is((SELECT count(*)::int FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_orders' AND path LIKE 'broken%'),
          0, 'a record that goes to the DLQ registers nothing');

-- CSV: the header's keys are strings ------------------------------------------------------------

SELECT FROM medallion.create_bronze('pk_csv', 'files');
SELECT FROM medallion.ingest_text('bronze.pk_csv', E'code,label\nA,Alpha\nB,\n', 'csv');
SELECT results_eq(
    $$SELECT path, json_type FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_csv' ORDER BY 1$$,
    $$VALUES ('code', 'string'), ('label', 'string')$$, 'ingest_text(csv) registers the header''s keys');

-- last_seen moves at most once a minute ---------------------------------------------------------

UPDATE medallion.payload_keys SET last_seen = '2000-01-01' WHERE pipeline = 'bronze.pk_csv';
SELECT FROM medallion.ingest_text('bronze.pk_csv', E'code,label\nC,Gamma\n', 'csv', batch_id => 'b1');
SELECT is((SELECT count(*)::int FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_csv' AND last_seen = now()),
          2, 'a batch moves last_seen of keys seen more than a minute ago');
UPDATE medallion.payload_keys SET last_seen = now() - interval '30 seconds' WHERE pipeline = 'bronze.pk_csv';
SELECT FROM medallion.ingest_text('bronze.pk_csv', E'code,label\nD,Delta\n', 'csv', batch_id => 'b2');
SELECT is((SELECT count(*)::int FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_csv' AND last_seen = now()),
          0, 'but not of keys seen within the minute (a stream of small batches rewrites nothing)');

-- ingest_file() -------------------------------------------------------------------------------

SELECT FROM medallion.create_bronze('pk_file', 'files');
SELECT FROM medallion.ingest_file('bronze.pk_file', current_setting('medallion_test.fixtures') || '/crm_contacts.ndjson');
SELECT ok((SELECT count(*) FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_file') > 0,
          'ingest_file() registers the keys of the file');
SELECT set_eq(
    $$SELECT path FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_file' AND json_type <> 'null'$$,
    $$SELECT DISTINCT k.key FROM bronze.pk_file b, jsonb_each(b._raw) k WHERE jsonb_typeof(k.value) <> 'null'
      UNION SELECT DISTINCT k.key || '.' || k2.key FROM bronze.pk_file b, jsonb_each(b._raw) k,
            jsonb_each(CASE jsonb_typeof(k.value) WHEN 'object' THEN k.value ELSE '{}' END) k2
      WHERE jsonb_typeof(k2.value) <> 'null'$$,
    'the registry of a file holds exactly the paths its rows have (checked with jsonb_each)');

-- Rows without a batch (plain INSERT, capture): a silver run registers them ----------------------

SELECT FROM medallion.create_silver('pk_orders', 'bronze.pk_orders', '{"id": "bigint"}', ARRAY['id']);
INSERT INTO bronze.pk_orders (_raw) VALUES ('{"id": 10, "coupon": "X1", "meta": {"campaign": "spring"}}');
SELECT is((SELECT count(*)::int FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_orders' AND path = 'coupon'),
          0, 'a plain INSERT registers nothing by itself');
SELECT FROM medallion.run('silver.pk_orders');
SELECT results_eq(
    $$SELECT path, json_type FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_orders'
      AND path IN ('coupon', 'meta.campaign') ORDER BY 1$$,
    $$VALUES ('coupon', 'string'), ('meta.campaign', 'string')$$,
    'the run registers the keys of its window''s rows that came without a batch');

CREATE TABLE public.pk_src (id int PRIMARY KEY, label text, extra jsonb);
SELECT FROM medallion.capture('public.pk_src');
INSERT INTO public.pk_src VALUES (1, 'one', '{"k": 1}');
SELECT FROM medallion.create_silver('pk_src', 'bronze.pk_src', '{"id": {"path": "data.id", "type": "integer"}}', ARRAY['id']);
SELECT FROM medallion.run('silver.pk_src');
SELECT results_eq(
    $$SELECT path, json_type FROM medallion.payload_keys WHERE pipeline = 'bronze.pk_src' ORDER BY 1, 2$$,
    $$VALUES ('data', 'object'), ('data.extra', 'object'), ('data.id', 'number'), ('data.label', 'string'),
             ('old', 'null'), ('op', 'string'), ('table', 'string'), ('xid', 'string')$$,
    'captured rows register their columns under data.');

-- Privileges ----------------------------------------------------------------------------------

SELECT throws_ok($$SELECT medallion.payload_keys_note('{}')$$, '55000', NULL,
                 'payload_keys_note() refuses to work outside a run');
SELECT ok(has_table_privilege('public', 'medallion.payload_keys', 'SELECT')
          AND NOT has_table_privilege('public', 'medallion.payload_keys', 'INSERT'),
          'PUBLIC reads the registry and cannot write it');

SELECT * FROM finish();
ROLLBACK;
