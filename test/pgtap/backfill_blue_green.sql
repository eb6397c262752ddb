-- medallion.backfill(..., 'blue_green') and medallion.rollback(): the new version is built in a
-- shadow table (the range recomputed, the rest carried over), validated (row count within
-- max_row_change, options.checks), then swapped in keeping the table's OID, so a user's view and
-- grant on it go on working; the old version is kept (medallion.backfill_versions) and
-- rollback() swaps it back with the watermark and the contract version it had. A failed validation swaps nothing, records
-- the run failed (business_rule) and raises a backfill alert.
BEGIN;
SELECT plan(25);

CREATE ROLE medallion_tap_bg_owner NOLOGIN;
CREATE ROLE medallion_tap_bg_reader NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver, gold TO medallion_tap_bg_owner;
GRANT CREATE ON SCHEMA public TO medallion_tap_bg_owner;

SET ROLE medallion_tap_bg_owner;
SELECT FROM medallion.create_bronze('bg_raw', 'shop');
SELECT FROM medallion.create_silver('bg_orders', 'bronze.bg_raw',
    '{"id": "bigint", "amount": "numeric", "tier": "text"}', ARRAY['id'], NULL, '{"compatibility": "none"}');
SELECT FROM medallion.ingest('bronze.bg_raw', (SELECT jsonb_agg(jsonb_build_object('id', i, 'amount', i, 'tier', 'gold'))
                                               FROM generate_series(1, 10) i));
SELECT FROM medallion.run('silver.bg_orders');
CREATE VIEW public.bg_big AS SELECT id, amount FROM silver.bg_orders WHERE amount > 5;
GRANT SELECT ON silver.bg_orders TO medallion_tap_bg_reader;
CREATE FUNCTION pg_temp.last_run(p text, OUT status text, OUT error_class text, OUT detail jsonb) LANGUAGE sql AS $$
    SELECT status, error_class, detail FROM medallion.runs WHERE pipeline = p ORDER BY run_id DESC LIMIT 1
$$;
RESET ROLE;
CREATE TEMP TABLE bg_before AS
    SELECT 'silver.bg_orders'::regclass::oid AS relid,
           (SELECT to_jsonb(w) - 'updated_at' FROM medallion.watermarks w WHERE pipeline = 'silver.bg_orders') AS wm;
GRANT SELECT ON bg_before TO PUBLIC;

-- A valid new version is swapped in -------------------------------------------------------------

SET ROLE medallion_tap_bg_owner;
SELECT FROM medallion.alter_contract('silver.bg_orders', '{"tier": {"type": "text", "expr": "upper(tier)"}}');
SELECT isnt(medallion.backfill('silver.bg_orders', current_date, current_date, 'blue_green'), NULL,
            'a blue-green backfill');
SELECT is((SELECT count(*)::int FROM silver.bg_orders WHERE tier = 'GOLD'), 10, 'the new version is in place');
SELECT is('silver.bg_orders'::regclass::oid, (SELECT relid FROM bg_before), 'the table keeps its OID');
SELECT is((SELECT count(*)::int FROM public.bg_big), 5, 'the user''s view reads the new version');
SELECT ok(has_table_privilege('medallion_tap_bg_reader', 'silver.bg_orders', 'SELECT'), 'the grant stays');
SELECT is((SELECT count(*)::int FROM medallion.backfill_versions WHERE pipeline = 'silver.bg_orders'), 1,
          'the old version is kept');
SELECT ok((SELECT kept_until BETWEEN now() + interval '7 days' - interval '1 minute' AND now() + interval '7 days'
           FROM medallion.backfill_versions WHERE pipeline = 'silver.bg_orders'), 'for 7 days by default');
SELECT is((SELECT count(*)::int FROM pg_class WHERE relname LIKE '\_bf%\_new'), 0, 'no shadow is left');
SELECT results_eq($$SELECT status, detail->>'strategy' FROM pg_temp.last_run('silver.bg_orders')$$,
                  $$VALUES ('succeeded', 'blue_green')$$, 'the run succeeded');

-- New rows after the swap, then a rollback --------------------------------------------------------

SELECT FROM medallion.ingest('bronze.bg_raw', '{"id": 11, "amount": 11, "tier": "silver"}');
SELECT FROM medallion.run('silver.bg_orders');
SELECT is((SELECT tier FROM silver.bg_orders WHERE id = 11), 'SILVER', 'a run after the swap loads into the new version');
SELECT lives_ok($$SELECT medallion.rollback('silver.bg_orders')$$, 'rollback()');
SELECT is((SELECT count(*)::int FROM silver.bg_orders WHERE tier = 'gold'), 10, 'the old version is back');
SELECT is('silver.bg_orders'::regclass::oid, (SELECT relid FROM bg_before), 'in the same table');
SELECT is((SELECT count(*)::int FROM public.bg_big), 5, 'which the view reads');
SELECT is((SELECT to_jsonb(w) - 'updated_at' FROM medallion.watermarks w WHERE pipeline = 'silver.bg_orders'),
          (SELECT wm FROM bg_before), 'with the watermark it had');
SELECT is((SELECT count(*)::int FROM medallion.backfill_versions WHERE pipeline = 'silver.bg_orders'), 0,
          'the kept version is used up');
SELECT is((SELECT definition_version FROM medallion.pipelines WHERE name = 'silver.bg_orders'), 1,
          'the contract version the old rows were built with is current again');
SELECT FROM medallion.run('silver.bg_orders');
SELECT is((SELECT tier FROM silver.bg_orders WHERE id = 11), 'silver',
          'the next run reapplies what landed since the swap, under the restored contract');
SELECT throws_ok($$SELECT medallion.rollback('silver.bg_orders')$$, '55000',
                 'pipeline "silver.bg_orders" has no version to roll back to', 'a second rollback has nothing to swap');

-- A failed validation swaps nothing ---------------------------------------------------------------

SELECT FROM medallion.alter_contract('silver.bg_orders', '{"tier": {"type": "text", "accepted": ["platinum"]}}');
SELECT isnt(medallion.backfill('silver.bg_orders', current_date, current_date, 'blue_green'), NULL,
            'a blue-green backfill whose new version loses most rows');
SELECT results_eq($$SELECT status, error_class FROM pg_temp.last_run('silver.bg_orders')$$,
                  $$VALUES ('failed', 'business_rule')$$, 'is recorded failed, business_rule');
SELECT is((SELECT count(*)::int FROM silver.bg_orders), 11, 'the current version is untouched');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.bg_orders'), 0, 'and so is the DLQ');
SELECT is((SELECT count(*)::int FROM medallion.alerts WHERE pipeline = 'silver.bg_orders' AND kind = 'backfill'
           AND resolved_at IS NULL), 1, 'a backfill alert is raised');
SET ROLE medallion_tap_bg_owner;
SELECT FROM medallion.alter_contract('silver.bg_orders', '{"tier": {"type": "text"}}');
SELECT FROM medallion.backfill('silver.bg_orders', current_date, current_date, 'blue_green',
                               options => '{"checks": ["SELECT count(*) = 0 FROM shadow"]}');
SELECT results_eq($$SELECT status, error_class FROM pg_temp.last_run('silver.bg_orders')$$,
                  $$VALUES ('failed', 'business_rule')$$, 'a user check that is not true fails the validation too');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
