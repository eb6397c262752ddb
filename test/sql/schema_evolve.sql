--
-- schema_evolve: a walk-through of payload drift with schema_policy "evolve".
-- Bronze accepts whatever arrives and registers its keys (medallion.payload_keys);
-- at the start of each silver run, keys the contract does not read become
-- nullable columns of the silver table and of the contract (a new contract
-- version), and the window loads with them.  Captured rows carry their
-- columns under "data.": the envelope (op, table, old, xid) is not drift.
-- (Explicit batch ids and ORDER BY keep this output deterministic.)
--

SELECT medallion.create_bronze('shop_orders', 'shop');
SELECT medallion.create_silver('shop_orders', 'bronze.shop_orders',
    '{"order_id": {"type": "bigint", "required": true}, "total": "numeric"}',
    ARRAY['order_id'], options => '{"schema_policy": "evolve"}');

-- 1. A first payload: what the contract expects.
SELECT medallion.ingest('bronze.shop_orders',
    '[{"order_id": 1, "total": 10.5}, {"order_id": 2, "total": 7}]', 'b1');
SELECT medallion.run('silver.shop_orders') AS run_id \gset
SELECT status, rows_read, rows_inserted FROM medallion.runs WHERE run_id = :run_id;

-- 2. The source starts sending more: a currency, a gift flag, a customer object.
SELECT medallion.ingest_text('bronze.shop_orders',
    E'{"order_id": 3, "total": 12, "currency": "EUR", "gift": true, "customer": {"id": 7, "tier": "gold"}}\n'
     '{"order_id": 1, "total": 11, "currency": "EUR"}\n', 'ndjson', 'b2');

SELECT path, json_type FROM medallion.payload_keys
WHERE pipeline = 'bronze.shop_orders' ORDER BY path, json_type;

SELECT medallion.run('silver.shop_orders') AS run_id \gset
SELECT status, rows_read, rows_inserted, rows_updated, rows_dlq FROM medallion.runs WHERE run_id = :run_id;

-- The silver table grew by one nullable column per new key.
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull AS not_null
FROM pg_attribute
WHERE attrelid = 'silver.shop_orders'::regclass AND attnum > 0 AND NOT attisdropped
  AND attname NOT LIKE '\_%'
ORDER BY attnum;

SELECT order_id, total, currency, gift, customer FROM silver.shop_orders ORDER BY order_id;

-- The contract too, as version 2; every version is kept.
SELECT version, jsonb_pretty(definition->'columns') AS columns, compatibility, forced
FROM medallion.contract_versions WHERE pipeline = 'silver.shop_orders' ORDER BY version;

SELECT relation, path, change, classification, detail->>'column' AS col, detail->>'type' AS type,
       detail->>'contract_version' AS version
FROM medallion.schema_changes WHERE pipeline = 'silver.shop_orders' ORDER BY id;

-- 3. Nothing new: no new version.
SELECT medallion.ingest('bronze.shop_orders', '{"order_id": 4, "total": 1, "currency": "USD"}', 'b3');
SELECT medallion.run('silver.shop_orders') AS run_id \gset
SELECT status, rows_inserted FROM medallion.runs WHERE run_id = :run_id;
SELECT max(version) FROM medallion.contract_versions WHERE pipeline = 'silver.shop_orders';

-- 4. Captured rows: keys under "data." evolve, the capture envelope does not.
CREATE TABLE public.shop_items (sku text PRIMARY KEY, price numeric);
SELECT medallion.capture('public.shop_items');
SELECT medallion.create_silver('shop_items', 'bronze.shop_items',
    '{"sku": {"path": "data.sku", "type": "text"}, "price": {"path": "data.price", "type": "numeric"}}',
    ARRAY['sku'], options => '{"schema_policy": "evolve"}');
INSERT INTO public.shop_items VALUES ('A', 1.5);
SELECT medallion.run('silver.shop_items') AS run_id \gset
SELECT status, rows_inserted FROM medallion.runs WHERE run_id = :run_id;
ALTER TABLE public.shop_items ADD COLUMN color text;
INSERT INTO public.shop_items VALUES ('B', 2, 'red');
SELECT medallion.run('silver.shop_items') AS run_id \gset
SELECT status, rows_inserted FROM medallion.runs WHERE run_id = :run_id;
SELECT sku, price, color FROM silver.shop_items ORDER BY sku;
SELECT path, change, detail->>'column' AS col FROM medallion.schema_changes
WHERE pipeline = 'silver.shop_items' ORDER BY id;
