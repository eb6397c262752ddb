-- A silver partition backfill matches the keys of its range typed, as a run types them (casts,
-- expressions): a key spelled "01" in one payload and 1 in another, or computed by an expression
-- (upper(sku)) from "abc" and "ABC", is one key, so all its versions are read and a key whose
-- newest version now fails falls back to its newest valid one outside the range.
BEGIN;
SELECT plan(8);

CREATE ROLE medallion_tap_bk_owner NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_bk_owner;

SET ROLE medallion_tap_bk_owner;
SELECT FROM medallion.create_bronze('bk_raw', 'shop');
SELECT FROM medallion.create_bronze('bk_sku_raw', 'shop');
SELECT FROM medallion.create_silver('bk_orders', 'bronze.bk_raw',
    '{"id": "bigint", "v": "int", "status": {"type": "text", "accepted": ["new", "paid"]}}',
    ARRAY['id'], 'v', '{"compatibility": "none"}');
SELECT FROM medallion.create_silver('bk_skus', 'bronze.bk_sku_raw',
    '{"sku": {"type": "text", "expr": "upper(sku)"}, "v": "int", "status": {"type": "text", "accepted": ["new", "paid"]}}',
    ARRAY['sku'], 'v', '{"compatibility": "none"}');
-- the older versions, then moved to tomorrow's ingestion day: outside a backfill of today
SELECT FROM medallion.ingest('bronze.bk_raw', '{"id": 1, "v": 1, "status": "new"}');
SELECT FROM medallion.ingest('bronze.bk_sku_raw', '{"sku": "abc", "v": 1, "status": "new"}');
RESET ROLE;
SET LOCAL medallion.allow_bronze_changes = on;
UPDATE bronze.bk_raw SET _ingested_at = _ingested_at + interval '1 day';
UPDATE bronze.bk_sku_raw SET _ingested_at = _ingested_at + interval '1 day';
SET LOCAL medallion.allow_bronze_changes = off;
SET ROLE medallion_tap_bk_owner;
-- the newer versions, today, spelled differently
SELECT FROM medallion.ingest('bronze.bk_raw', '{"id": "01", "v": 2, "status": "paid"}');
SELECT FROM medallion.ingest('bronze.bk_sku_raw', '{"sku": "ABC", "v": 2, "status": "paid"}');
SELECT FROM medallion.run('silver.bk_orders');
SELECT FROM medallion.run('silver.bk_skus');
SELECT results_eq($$SELECT id, v, status FROM silver.bk_orders$$, $$VALUES (1::bigint, 2, 'paid')$$,
                  'a run types "01" and 1 as one key');
SELECT results_eq($$SELECT sku, v, status FROM silver.bk_skus$$, $$VALUES ('ABC', 2, 'paid')$$,
                  'and upper(sku) makes "abc" and "ABC" one key');

-- The newest versions now fail: a backfill of today falls back to the versions of tomorrow's day
SELECT FROM medallion.alter_contract('silver.bk_orders', '{"status": {"type": "text", "accepted": ["new"]}}');
SELECT FROM medallion.alter_contract('silver.bk_skus', '{"status": {"type": "text", "accepted": ["new"]}}');
SELECT isnt(medallion.backfill('silver.bk_orders', current_date, current_date), NULL, 'a backfill of today (bigint key)');
SELECT results_eq($$SELECT id, v, status FROM silver.bk_orders$$, $$VALUES (1::bigint, 1, 'new')$$,
                  'key 1 falls back to its version spelled 1, outside the range: the key was matched typed');
SELECT is((SELECT rows_read FROM medallion.runs WHERE pipeline = 'silver.bk_orders' ORDER BY run_id DESC LIMIT 1),
          2::bigint, 'both versions were read');
SELECT isnt(medallion.backfill('silver.bk_skus', current_date, current_date), NULL, 'a backfill of today (key by expression)');
SELECT results_eq($$SELECT sku, v, status FROM silver.bk_skus$$, $$VALUES ('ABC', 1, 'new')$$,
                  'key ABC falls back to its version "abc": the key was matched on the expression''s value');

-- A row of the range whose key does not type is still read (and stays in the DLQ), the others matched
SELECT FROM medallion.ingest('bronze.bk_raw', '{"id": "one", "v": 3, "status": "new"}');
SELECT FROM medallion.run('silver.bk_orders');
SELECT isnt(medallion.backfill('silver.bk_orders', current_date, current_date), NULL,
            'a backfill of a range holding a row whose key does not type');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
