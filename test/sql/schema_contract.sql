--
-- schema_contract: a silver contract that evolves.  alter_contract patches the
-- contract (an object adds or replaces a column, null removes it), alters the
-- silver table to match and records a new version; the next run loads under
-- it.  Changes the pipeline's compatibility mode refuses say which rule they
-- break; force makes them and records them as breaking.
--

SELECT medallion.create_bronze('cx_orders', 'shop');
SELECT medallion.create_silver('cx_orders', 'bronze.cx_orders',
    '{"order_id": {"path": "id", "type": "integer", "required": true},
      "amount":   "numeric(8,2)",
      "status":   {"type": "text", "accepted": ["new", "paid"]}}',
    ARRAY['order_id']);
SELECT medallion.ingest('bronze.cx_orders',
    '[{"id": 1, "amount": 10.5, "status": "new"}, {"id": 2, "amount": 20, "status": "paid"}]', 'b1');
SELECT medallion.run('silver.cx_orders') IS NOT NULL AS ran;
SELECT order_id, amount, status FROM silver.cx_orders ORDER BY order_id;

-- Version 1 is create_silver's.
SELECT version, compatibility, forced FROM medallion.contract_versions
WHERE pipeline = 'silver.cx_orders' ORDER BY version;

-- Payloads now carry a currency and bigger amounts: add a column, widen one.
SELECT medallion.alter_contract('silver.cx_orders',
    '{"currency": {"type": "char(3)", "default": "EUR", "required": true},
      "amount":   "numeric(12,2)"}');
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull AS not_null
FROM pg_attribute
WHERE attrelid = 'silver.cx_orders'::regclass AND attnum > 0 AND NOT attisdropped
  AND attname !~ '^_'
ORDER BY attnum;

SELECT medallion.ingest('bronze.cx_orders',
    '[{"id": 3, "amount": 1234567.25, "status": "new", "currency": "USD"},
      {"id": 4, "amount": 5, "status": "paid"}]', 'b2');
SELECT medallion.run('silver.cx_orders') IS NOT NULL AS ran;
SELECT order_id, amount, status, currency FROM silver.cx_orders ORDER BY order_id;

-- Refused under the default mode (backward), with the rule in the detail.
SELECT medallion.alter_contract('silver.cx_orders', '{"channel": {"type": "text", "required": true}}');
SELECT medallion.alter_contract('silver.cx_orders', '{"status": {"type": "text", "accepted": ["paid"]}}');
SELECT medallion.alter_contract('silver.cx_orders', NULL, '{"unique_key": ["status"]}');

-- Forced: made, and recorded as breaking.
SELECT medallion.alter_contract('silver.cx_orders', '{"status": {"type": "text", "accepted": ["paid"]}}',
                                force => true);
SELECT medallion.ingest('bronze.cx_orders', '[{"id": 5, "amount": 1, "status": "new"}]', 'b3');
SELECT medallion.run('silver.cx_orders') IS NOT NULL AS ran;
SELECT source_seq, error_type, field FROM medallion.dlq WHERE pipeline = 'silver.cx_orders' ORDER BY id;

-- Dropping a column is backward compatible (payloads still load).
SELECT medallion.alter_contract('silver.cx_orders', '{"status": null}');
SELECT order_id, amount, currency FROM silver.cx_orders ORDER BY order_id;

SELECT version, compatibility, forced, definition->'columns' AS columns
FROM medallion.contract_versions WHERE pipeline = 'silver.cx_orders' ORDER BY version;
SELECT change, classification, relation, detail - 'compatibility' AS detail
FROM medallion.schema_changes WHERE pipeline = 'silver.cx_orders' ORDER BY id;
SELECT definition_version FROM medallion.pipelines WHERE name = 'silver.cx_orders';
