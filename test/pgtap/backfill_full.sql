-- medallion.backfill(p, NULL, NULL, 'full') for silver: the whole table rebuilt from bronze under
-- the current contract into a table built aside, then swapped in by storage (the table keeps its
-- OID: a user's view, grant and comment stay; its files change), newest version wins, delete
-- markers respected, bad rows in the DLQ once (rows_dlq counts only the new ones), DLQ rows that
-- now pass marked reprocessed; the watermark becomes the snapshot the rebuild read, so the next
-- run reads only what came after; keys whose bronze rows are gone refused (MD082) or, forced,
-- carried over.
BEGIN;
SELECT plan(23);

CREATE ROLE medallion_tap_fb_owner NOLOGIN;
CREATE ROLE medallion_tap_fb_reader NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_fb_owner;
GRANT CREATE ON SCHEMA public TO medallion_tap_fb_owner;

SET ROLE medallion_tap_fb_owner;
SELECT FROM medallion.create_bronze('fb_raw', 'shop');
SELECT FROM medallion.create_silver('fb_orders', 'bronze.fb_raw',
    '{"id": "bigint", "v": "int", "status": {"type": "text", "accepted": ["new", "paid"]}}',
    ARRAY['id'], 'v', '{"compatibility": "none", "delete_when": "_raw->>''op'' = ''d''"}');
SELECT FROM medallion.ingest('bronze.fb_raw', $$[
    {"id": 1, "v": 1, "status": "new"},
    {"id": 1, "v": 2, "status": "paid"},
    {"id": 2, "v": 1, "status": "shipped"},
    {"id": 3, "v": 1, "status": "new"},
    {"id": 4, "v": 1, "status": "new"},
    {"id": 4, "v": 2, "op": "d"}
]$$);
SELECT FROM medallion.run('silver.fb_orders');
CREATE VIEW public.fb_paid AS SELECT id FROM silver.fb_orders WHERE status = 'paid';
GRANT SELECT ON silver.fb_orders TO medallion_tap_fb_reader;
COMMENT ON TABLE silver.fb_orders IS 'orders, deduplicated';
RESET ROLE;

CREATE FUNCTION pg_temp.last_run(p text,
    OUT kind text, OUT status text, OUT rows_read bigint, OUT rows_inserted bigint, OUT rows_dlq bigint,
    OUT detail jsonb) LANGUAGE sql AS $$
    SELECT kind, status, rows_read, rows_inserted, rows_dlq, detail FROM medallion.runs
    WHERE pipeline = p ORDER BY run_id DESC LIMIT 1
$$;
CREATE TEMP VIEW fb_dlq AS
    SELECT d.reprocessed, b._raw->>'id' AS key, b._raw->>'status' AS status
    FROM medallion.dlq d JOIN bronze.fb_raw b ON b._seq = d.source_seq
    WHERE d.pipeline = 'silver.fb_orders';
GRANT SELECT ON fb_dlq TO PUBLIC;
CREATE TEMP TABLE fb_before AS
    SELECT 'silver.fb_orders'::regclass::oid AS relid, pg_relation_filenode('silver.fb_orders') AS filenode;
GRANT SELECT ON fb_before TO PUBLIC;
SELECT results_eq($$SELECT id, v, status FROM silver.fb_orders ORDER BY id$$,
                  $$VALUES (1::bigint, 2, 'paid'), (3, 1, 'new')$$, 'the first run loaded two keys (one deleted, one bad)');

-- The whole table rebuilt aside and swapped in ----------------------------------------------------

SET ROLE medallion_tap_fb_owner;
SELECT FROM medallion.alter_contract('silver.fb_orders',
    '{"status": {"type": "text", "accepted": ["new", "paid", "shipped"]}, "note": {"type": "text", "default": "rebuilt"}}');
SELECT isnt(medallion.backfill('silver.fb_orders', NULL, NULL, 'full'), NULL, 'a full backfill');
SELECT results_eq($$SELECT id, v, status, note FROM silver.fb_orders ORDER BY id$$,
                  $$VALUES (1::bigint, 2, 'paid', 'rebuilt'), (2, 1, 'shipped', 'rebuilt'), (3, 1, 'new', 'rebuilt')$$,
                  'history rebuilt under the new contract: newest version wins, the deleted key stays deleted, the row that now passes loads');
SELECT is('silver.fb_orders'::regclass::oid, (SELECT relid FROM fb_before), 'the table keeps its OID');
SELECT isnt(pg_relation_filenode('silver.fb_orders'), (SELECT filenode FROM fb_before),
            'its storage was swapped (built aside, not rewritten in place)');
SELECT is((SELECT count(*)::int FROM public.fb_paid), 1, 'the user''s view reads the new version');
SELECT ok(has_table_privilege('medallion_tap_fb_reader', 'silver.fb_orders', 'SELECT'), 'the grant stays');
SELECT is(obj_description('silver.fb_orders'::regclass, 'pg_class'), 'orders, deduplicated', 'the comment stays');
SELECT is((SELECT count(*)::int FROM pg_class WHERE relname LIKE 'pg\_temp\_%' AND relnamespace = 'silver'::regnamespace),
          0, 'no table built aside is left');
SELECT throws_ok($$INSERT INTO silver.fb_orders (id, v, status, note, _source_seq) VALUES (1, 9, 'x', 'x', 0)$$,
                 '23505', NULL, 'its primary key was rebuilt with it');
SELECT results_eq($$SELECT key, reprocessed FROM fb_dlq ORDER BY key$$,
                  $$VALUES ('2', true)$$, 'the DLQ row that now passes is marked reprocessed');
SELECT results_eq($$SELECT kind, status, rows_read, rows_inserted, rows_dlq, detail->>'strategy'
                    FROM pg_temp.last_run('silver.fb_orders')$$,
                  $$VALUES ('backfill', 'succeeded', 6::bigint, 3::bigint, 0::bigint, 'full')$$,
                  'recorded: every bronze row read, three keys written, no dead letter');

-- The watermark is the snapshot the rebuild read ---------------------------------------------------

SELECT FROM medallion.ingest('bronze.fb_raw', '{"id": 5, "v": 1, "status": "new"}');
SELECT FROM medallion.run('silver.fb_orders');
SELECT results_eq($$SELECT rows_read, rows_inserted FROM pg_temp.last_run('silver.fb_orders')$$,
                  $$VALUES (1::bigint, 1::bigint)$$,
                  'the next run reads only the row that came after the rebuild');

-- A column removed from the contract (dropped from the table): the new heap keeps the table's layout

SELECT FROM medallion.alter_contract('silver.fb_orders', '{"note": null}');
SELECT ok((SELECT count(*) FROM pg_attribute WHERE attrelid = 'silver.fb_orders'::regclass AND attisdropped) > 0,
          'the table has a dropped column');
SELECT isnt(medallion.backfill('silver.fb_orders', NULL, NULL, 'full'), NULL, 'a full backfill of a table with a dropped column');
SELECT results_eq($$SELECT id, v, status FROM silver.fb_orders ORDER BY id$$,
                  $$VALUES (1::bigint, 2, 'paid'), (2, 1, 'shipped'), (3, 1, 'new'), (5, 1, 'new')$$,
                  'its rows read back right');

-- Rows that now fail: in the DLQ once, counted once --------------------------------------------------

SELECT FROM medallion.alter_contract('silver.fb_orders', '{"status": {"type": "text", "accepted": ["new", "paid"]}}');
SELECT isnt(medallion.backfill('silver.fb_orders', NULL, NULL, 'full'), NULL, 'a full backfill under a narrower contract');
SELECT results_eq($$SELECT id FROM silver.fb_orders ORDER BY id$$, $$VALUES (1::bigint), (3), (5)$$,
                  'the key whose only version now fails is gone');
SELECT results_eq($$SELECT rows_dlq, (detail->>'removed')::int FROM pg_temp.last_run('silver.fb_orders')$$,
                  $$VALUES (0::bigint, 1)$$,
                  'rows_dlq counts no row already in the DLQ; removed counts the key gone');
SELECT is((SELECT count(*)::int FROM fb_dlq), 1, 'the DLQ holds that source row once');

-- Keys whose bronze rows retention dropped ----------------------------------------------------------

RESET ROLE;
SET LOCAL medallion.allow_bronze_changes = on;
DELETE FROM bronze.fb_raw WHERE _raw->>'id' = '3';
SET LOCAL medallion.allow_bronze_changes = off;
SET ROLE medallion_tap_fb_owner;
SELECT throws_ok($$SELECT medallion.backfill('silver.fb_orders', NULL, NULL, 'full')$$,
                 'MD082', '1 rows of silver.fb_orders were made from bronze rows that are no longer retained',
                 'a full rebuild that cannot recompute a row is refused');
SELECT isnt(medallion.backfill('silver.fb_orders', NULL, NULL, 'full', options => '{"force": true}'), NULL,
            'forced, it runs');
SELECT results_eq($$SELECT id, v, status FROM silver.fb_orders ORDER BY id$$,
                  $$VALUES (1::bigint, 2, 'paid'), (3, 1, 'new'), (5, 1, 'new')$$, 'the row without bronze is carried over');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
