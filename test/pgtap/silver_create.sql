-- medallion.create_silver(name, source, columns, unique_key, order_by, options): the column
-- contract (path, type, required, default, expr, accepted, references, pii), the table it
-- makes (typed columns, primary key, lineage columns), and validation at creation: a bad
-- contract is refused with its SQLSTATE and leaves nothing behind.
-- (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(69);

CREATE DOMAIN public.tap_qty AS integer CHECK (VALUE > 0);
CREATE TYPE public.tap_mood AS ENUM ('sad', 'ok', 'happy');

SELECT FROM medallion.create_bronze('crm', 'crm');
SELECT FROM medallion.create_bronze('shop', 'shop');

-- A referenced silver table -------------------------------------------------------------

SELECT is(medallion.create_silver('customers', 'bronze.crm', '{"customer_id": "bigint"}',
                                  ARRAY['customer_id'])::text,
          'silver.customers', 'create_silver returns the new table');
SELECT FROM medallion.ingest('bronze.crm', '[{"customer_id": 10}, {"customer_id": 11}]');
SELECT FROM medallion.run('silver.customers');

-- The full contract ----------------------------------------------------------------------

SELECT is(medallion.create_silver('orders', 'bronze.shop',
    '{"order_id":     {"path": "id", "type": "bigint", "required": true},
      "qty":          {"path": "line.qty", "type": "tap_qty"},
      "mood":         {"type": "tap_mood", "default": "ok"},
      "country_code": {"path": "ship.addr.country", "type": "text", "expr": "upper(country_code)",
                       "accepted": ["US", "FR", "DE"]},
      "customer_id":  {"path": "customer.id", "type": "bigint", "references": "silver.customers.customer_id"},
      "email":        {"type": "text", "pii": "hash"},
      "phone":        {"type": "text", "pii": "mask"},
      "ssn":          {"type": "text", "pii": "drop", "required": true},
      "total":        {"type": "numeric(10,2)", "default": 0},
      "tags":         {"type": "jsonb"},
      "updated_at":   {"type": "timestamptz", "required": true}}',
    ARRAY['order_id'], 'updated_at')::text,
    'silver.orders', 'a contract with every kind of column is accepted');

SELECT has_table('silver', 'orders', 'the silver table exists');
SELECT col_is_pk('silver', 'orders', ARRAY['order_id'], 'the unique key is the primary key');
SELECT col_type_is('silver', 'orders', 'order_id', 'bigint', 'a column has its contract type');
SELECT col_type_is('silver', 'orders', 'qty', 'public', 'tap_qty', 'a domain column keeps the domain');
SELECT col_type_is('silver', 'orders', 'mood', 'public', 'tap_mood', 'an enum column keeps the enum');
SELECT col_type_is('silver', 'orders', 'total', 'numeric(10,2)', 'a type modifier is kept');
SELECT col_type_is('silver', 'orders', 'tags', 'jsonb', 'a jsonb column');
SELECT col_type_is('silver', 'orders', 'updated_at', 'timestamp with time zone', 'a timestamptz column');
SELECT col_type_is('silver', 'orders', 'email', 'text', 'a hashed column is text');
SELECT col_type_is('silver', 'orders', 'phone', 'text', 'a masked column is text');
SELECT hasnt_column('silver', 'orders', 'ssn', 'a dropped pii column is not stored');
SELECT col_type_is('silver', 'orders', '_source_seq', 'bigint', 'lineage: _source_seq');
SELECT col_type_is('silver', 'orders', '_batch_id', 'text', 'lineage: _batch_id');
SELECT col_type_is('silver', 'orders', '_loaded_at', 'timestamp with time zone', 'lineage: _loaded_at');
SELECT col_type_is('silver', 'orders', '_run_id', 'bigint', 'lineage: _run_id');
SELECT results_eq(
    $$SELECT layer, relname, source, owner::text, state FROM medallion.pipelines WHERE name = 'silver.orders'$$,
    $$VALUES ('silver', 'orders', 'bronze.shop', current_user::text COLLATE "default", 'active')$$,
    'the pipeline is registered with its source and owner');
SELECT is((SELECT definition->'unique_key' FROM medallion.pipelines WHERE name = 'silver.orders'),
          '["order_id"]'::jsonb, 'the definition keeps the unique key');

SELECT FROM medallion.ingest('bronze.shop',
    '[{"id": 1, "line": {"qty": 3}, "mood": "happy", "ship": {"addr": {"country": "fr"}},
       "customer": {"id": 10}, "email": "ann@example.com", "phone": "ann@example.com",
       "ssn": "123", "total": 9.5, "tags": {"a": [1, 2]}, "updated_at": "2025-01-10T10:00:00Z"},
      {"id": 2, "line": {"qty": 1}, "ship": {"addr": {"country": "us"}}, "ssn": "456",
       "updated_at": "2025-01-11T10:00:00Z"}]', 'batch-1');
SELECT ok(medallion.run('silver.orders') IS NOT NULL, 'the pipeline runs');
SELECT results_eq(
    $$SELECT order_id, qty::int, mood, country_code, customer_id, total, tags, updated_at FROM silver.orders ORDER BY order_id$$,
    $$VALUES (1::bigint, 3, 'happy'::tap_mood, 'FR', 10::bigint, 9.50::numeric, '{"a": [1, 2]}'::jsonb,
              '2025-01-10 10:00:00+00'::timestamptz),
             (2, 1, 'ok', 'US', NULL, 0.00, NULL, '2025-01-11 10:00:00+00')$$,
    'paths (dotted, nested) are read, values typed, defaults applied, expressions computed');
SELECT is((SELECT email FROM silver.orders WHERE order_id = 1),
          medallion.pseudonymize('ann@example.com'), 'pii hash stores the keyed pseudonym (HMAC-SHA256) of the value');
SELECT is((SELECT phone FROM silver.orders WHERE order_id = 1), 'a***@example.com', 'pii mask keeps the first letter and the domain');
SELECT is((SELECT email FROM silver.orders WHERE order_id = 2), NULL, 'a missing pii value stays NULL');
SELECT results_eq(
    $$SELECT _source_seq, _batch_id, _loaded_at, _run_id FROM silver.orders ORDER BY order_id$$,
    $$SELECT b._seq, 'batch-1', now(), r.run_id FROM bronze.shop b,
             (SELECT max(run_id) AS run_id FROM medallion.runs WHERE pipeline = 'silver.orders') r
      ORDER BY b._seq$$,
    'lineage columns name the bronze row, its batch, the load time and the run');

-- Shorthand and names ----------------------------------------------------------------------

SELECT is(medallion.create_silver('Mixed Case', 'bronze.shop', '{"Id": "bigint", "note": "text"}', ARRAY['Id'])::text,
          'silver."Mixed Case"', 'names are used as given (quoted, case kept); "col": "type" is a shorthand');
SELECT col_type_is('silver', 'Mixed Case', 'note', 'text', 'the shorthand column has its type');
SELECT col_is_pk('silver', 'Mixed Case', ARRAY['Id'], 'a quoted unique key is the primary key');
SELECT is(medallion.create_silver('multi', 'bronze.shop', '{"a": "int", "b": "text", "v": "int"}', ARRAY['a', 'b'], 'v')::text,
          'silver.multi', 'a composite unique key');
SELECT col_is_pk('silver', 'multi', ARRAY['a', 'b'], 'a composite unique key is the primary key');

-- Validation: each refusal has its SQLSTATE and leaves nothing behind ----------------------

CREATE FUNCTION pg_temp.nothing_left(name text) RETURNS boolean LANGUAGE sql AS $$
    SELECT to_regclass(format('silver.%I', name)) IS NULL
       AND NOT EXISTS (SELECT FROM medallion.pipelines WHERE pipelines.name = 'silver.' || nothing_left.name)
$$;

SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "nosuchtype"}', ARRAY['id'])$$,
                 '42704', NULL, 'an unknown type is refused (42704)');
SELECT ok(pg_temp.nothing_left('bad'), 'after a refusal there is no table and no pipeline row');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": {"type": "bigint", "path": "a..b"}}', ARRAY['id'])$$,
                 '22023', NULL, 'a path with an empty key is refused (22023)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": {"type": "bigint", "path": ".a"}}', ARRAY['id'])$$,
                 '22023', NULL, 'a path starting with a dot is refused (22023)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint", "n": {"type": "text", "expr": "upper(("}}', ARRAY['id'])$$,
                 '42601', NULL, 'an expression that does not parse is refused (42601)');
SELECT ok(pg_temp.nothing_left('bad'), 'a refused expression leaves no table behind');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint", "n": {"type": "text", "expr": "upper(nosuch)"}}', ARRAY['id'])$$,
                 '42703', NULL, 'an expression naming a missing column is refused (42703)');
SELECT ok(pg_temp.nothing_left('bad'), 'nor does an expression naming a missing column');
CREATE FUNCTION pg_temp.error_context(stmt text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE ctx text;
BEGIN
  EXECUTE stmt;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS ctx = PG_EXCEPTION_CONTEXT;
  RETURN ctx;
END $f$;
SELECT ok(ctx LIKE '%while validating the contract of pipeline "silver.bad"%' AND ctx NOT LIKE '%MERGE%',
          'a refused expression names the pipeline, not the generated SQL: ' || coalesce(ctx, 'no error'))
  FROM pg_temp.error_context($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint", "n": {"type": "text", "expr": "upper(nosuch)"}}', ARRAY['id'])$$) AS ctx;
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint", "n": {"type": "text", "expr": "1) AS n FROM pg_class --"}}', ARRAY['id'])$$,
                 '42601', NULL, 'an expression cannot break out of its parentheses');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": {"type": "bigint", "colour": "red"}}', ARRAY['id'])$$,
                 '22023', NULL, 'an unknown contract key is refused (22023)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint"}', ARRAY['id'], NULL, '{"colour": "red"}')$$,
                 '22023', NULL, 'an unknown option is refused (22023)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": {"type": "bigint", "required": "yes"}}', ARRAY['id'])$$,
                 '22023', NULL, 'required must be a boolean (22023)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": {"type": "bigint", "pii": "encrypt"}}', ARRAY['id'])$$,
                 '22023', NULL, 'pii must be hash, mask or drop (22023)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint", "n": {"type": "int", "default": "abc"}}', ARRAY['id'])$$,
                 '22P02', NULL, 'a default that does not type is refused');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint", "n": {"type": "tap_mood", "accepted": ["ok", "angry"]}}', ARRAY['id'])$$,
                 '22P02', NULL, 'an accepted value that does not type is refused');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint", "n": {"type": "bigint", "references": "silver.nosuch.id"}}', ARRAY['id'])$$,
                 '42P01', NULL, 'a reference to a missing table is refused (42P01)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint", "n": {"type": "bigint", "references": "silver.customers.nosuch"}}', ARRAY['id'])$$,
                 '42703', NULL, 'a reference to a missing column is refused (42703)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint", "_run_id": "bigint"}', ARRAY['id'])$$,
                 '22023', NULL, 'a lineage column name is reserved');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint"}', ARRAY['nope'])$$,
                 '42703', NULL, 'a unique_key column not in the contract is refused (42703)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint"}', ARRAY[]::text[])$$,
                 '22023', NULL, 'an empty unique_key is refused');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint"}', ARRAY['id'], 'nope')$$,
                 '42703', NULL, 'an order_by that is not a column is refused (42703)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint"}', ARRAY['id'], NULL, '{"delete_when": "_raw->>nosuch = 1"}')$$,
                 '42703', NULL, 'a delete_when naming a missing column is refused');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint"}', ARRAY['id'], NULL, '{"max_rows_per_run": 0}')$$,
                 '22023', NULL, 'max_rows_per_run must be positive');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint"}', ARRAY['id'], NULL, '{"settings": {"TimeZone": "Nowhere/Land"}}')$$,
                 '22023', NULL, 'an invalid pinned setting is refused');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'silver.customers', '{"id": "bigint"}', ARRAY['id'])$$,
                 '42809', NULL, 'a source that is not a bronze table is refused (42809)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'medallion.runs', '{"id": "bigint"}', ARRAY['id'])$$,
                 '42809', NULL, 'a catalog table is not a bronze table either');
SELECT throws_ok($$SELECT medallion.create_silver(NULL, 'bronze.shop', '{"id": "bigint"}', ARRAY['id'])$$,
                 '22004', NULL, 'a NULL name is refused (22004)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', NULL, '{"id": "bigint"}', ARRAY['id'])$$,
                 '22004', NULL, 'a NULL source is refused (22004)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', NULL, ARRAY['id'])$$,
                 '22004', NULL, 'NULL columns are refused (22004)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint"}', NULL)$$,
                 '22004', NULL, 'a NULL unique_key is refused (22004)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint"}', ARRAY['id', NULL])$$,
                 '22004', NULL, 'a NULL in unique_key is refused (22004)');
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{}', ARRAY['id'])$$,
                 '22023', NULL, 'an empty contract is refused');
SELECT ok(pg_temp.nothing_left('bad'), 'none of the refusals left a table or a pipeline row');
SELECT throws_ok($$SELECT medallion.create_silver('orders', 'bronze.shop', '{"id": "bigint"}', ARRAY['id'])$$,
                 '42P07', NULL, 'a name already taken is refused (42P07)');
SELECT is((SELECT definition->'columns' ? 'order_id' FROM medallion.pipelines WHERE name = 'silver.orders'), true,
          'the existing pipeline is untouched');

-- Types resolve as a run will resolve them (pinned search_path), not by the caller's path.
CREATE SCHEMA tap_app;
CREATE DOMAIN tap_app.code AS text;
SET LOCAL search_path = tap_app, public;
SELECT throws_ok($$SELECT medallion.create_silver('bad', 'bronze.shop', '{"id": "bigint", "c": "code"}', ARRAY['id'])$$,
                 '42704', NULL, 'a type only the caller''s search_path finds is refused');
RESET search_path;
SELECT lives_ok($$SELECT medallion.create_silver('coded', 'bronze.shop', '{"id": "bigint", "c": "tap_app.code"}', ARRAY['id'])$$,
                'a schema-qualified type is accepted');
SELECT col_type_is('silver', 'coded', 'c', 'tap_app', 'code', 'and is the column''s type');

SELECT * FROM finish();
ROLLBACK;
