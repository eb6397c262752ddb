-- Gold models: a new query through alter_pipeline(p, '{"query": ...}') (validated as create_gold
-- validates, recorded as the next version of the definition), backfilled into history with
-- strategy partition (a range) and full (built aside, swapped in, the table keeping its OID);
-- a query with other output columns pending until a full backfill alters the table (a user's
-- view over a dropped column makes it fail as a whole); blue_green with validation, a dependent
-- view and a grant, rollback() restoring the rows and the query version; change records of
-- upstreams no model reads any more are deleted.
BEGIN;
SELECT plan(58);

CREATE ROLE medallion_tap_bfg_owner NOLOGIN;
CREATE ROLE medallion_tap_bfg_other NOLOGIN;
CREATE ROLE medallion_tap_bfg_reader NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver, gold, public TO medallion_tap_bfg_owner;

SET ROLE medallion_tap_bfg_owner;
SELECT FROM medallion.create_bronze('bfg_raw', 'shop');
SELECT FROM medallion.create_silver('bfg_orders', 'bronze.bfg_raw',
    '{"id": "bigint", "amount": "numeric", "ordered_at": "timestamptz"}', ARRAY['id']);
SELECT FROM medallion.ingest('bronze.bfg_raw', $$[
    {"id": 1, "amount": 10, "ordered_at": "2024-01-01T10:00:00Z"},
    {"id": 2, "amount": 5,  "ordered_at": "2024-01-02T10:00:00Z"},
    {"id": 3, "amount": 7,  "ordered_at": "2024-01-02T11:00:00Z"},
    {"id": 4, "amount": 1,  "ordered_at": "2024-01-03T11:00:00Z"}
]$$);
SELECT FROM medallion.run('silver.bfg_orders');
SELECT FROM medallion.create_gold('bfg_daily',
    $$SELECT date(ordered_at) AS day, count(*) AS orders, sum(amount) AS revenue
      FROM silver.bfg_orders GROUP BY 1$$, 'day');
SELECT FROM medallion.run('gold.bfg_daily');
CREATE VIEW public.bfg_view AS SELECT day, revenue FROM gold.bfg_daily;
GRANT SELECT ON gold.bfg_daily TO medallion_tap_bfg_reader;
RESET ROLE;
CREATE TEMP TABLE bfg_oid AS SELECT 'gold.bfg_daily'::regclass::oid AS relid;
GRANT SELECT ON bfg_oid TO PUBLIC;
CREATE FUNCTION pg_temp.last_run(p text, OUT kind text, OUT status text, OUT error_class text,
    OUT error_message text, OUT detail jsonb) LANGUAGE sql SECURITY DEFINER AS $$
    SELECT kind, status, error_class, error_message, detail FROM medallion.runs
    WHERE pipeline = p ORDER BY run_id DESC LIMIT 1
$$;

-- create_gold records version 1 -----------------------------------------------------------------

SELECT results_eq($$SELECT version, created_by FROM medallion.contract_versions WHERE pipeline = 'gold.bfg_daily'$$,
                  $$VALUES (1, 'medallion_tap_bfg_owner'::text)$$, 'create_gold records version 1 of the query');
SELECT is((SELECT definition_version FROM medallion.pipelines WHERE name = 'gold.bfg_daily'), 1, 'and makes it current');

-- A new query, validated as create_gold validates -----------------------------------------------

SET ROLE medallion_tap_bfg_other;
SELECT throws_ok($$SELECT medallion.alter_pipeline('gold.bfg_daily', '{"query": "SELECT 1 AS x"}')$$,
                 '42501', NULL, 'only the owner changes the query');
SET ROLE medallion_tap_bfg_owner;
SELECT throws_ok($$SELECT medallion.alter_pipeline('gold.bfg_daily', '{"query": "DELETE FROM silver.bfg_orders"}')$$,
                 '22023', 'query must be a SELECT statement', 'a query that is not a SELECT is refused');
SELECT throws_ok($$SELECT medallion.alter_pipeline('gold.bfg_daily', '{"query": "SELECT no_such AS day FROM silver.bfg_orders"}')$$,
                 '42703', NULL, 'a query that does not analyse is refused');
SELECT throws_ok($$SELECT medallion.alter_pipeline('gold.bfg_daily', '{"query": "SELECT 1 AS orders"}')$$,
                 '42703', 'partition_by column "day" is not an output column of the query',
                 'a query without the partition column is refused');
SELECT throws_ok($$SELECT medallion.alter_pipeline('gold.bfg_daily', '{"query": "SELECT ordered_at AS day FROM silver.bfg_orders"}')$$,
                 '0A000', NULL, 'a query changing the partition column''s type is refused');
SELECT throws_ok($$SELECT medallion.alter_pipeline('gold.bfg_daily', '{"query": 1}')$$,
                 '22023', NULL, 'a query that is not a string is refused');
SELECT is((SELECT definition_version FROM medallion.pipelines WHERE name = 'gold.bfg_daily'), 1,
          'refused queries leave the version alone');

-- Same output columns: the next refresh uses it; history through backfills --------------------

SELECT lives_ok($$SELECT medallion.alter_pipeline('gold.bfg_daily', '{"query":
    "SELECT date(ordered_at) AS day, count(*) AS orders, sum(amount) * 10 AS revenue FROM silver.bfg_orders GROUP BY 1"}')$$,
                'a new query with the same output columns');
SELECT results_eq($$SELECT version, created_by FROM medallion.contract_versions WHERE pipeline = 'gold.bfg_daily' ORDER BY 1$$,
                  $$VALUES (1, 'medallion_tap_bfg_owner'::text), (2, 'medallion_tap_bfg_owner')$$,
                  'is recorded as version 2, with who made it');
SELECT is((SELECT definition->>'query' FROM medallion.pipelines WHERE name = 'gold.bfg_daily'),
          'SELECT date(ordered_at) AS day, count(*) AS orders, sum(amount) * 10 AS revenue FROM silver.bfg_orders GROUP BY 1',
          'and becomes the definition');
SELECT is((SELECT definition_version FROM medallion.pipelines WHERE name = 'gold.bfg_daily'), 2, 'definition_version moves');
SELECT is((SELECT revenue FROM gold.bfg_daily WHERE day = '2024-01-01'), 10::numeric,
          'partitions already built keep the earlier query''s rows');
SELECT FROM medallion.ingest('bronze.bfg_raw', '{"id": 5, "amount": 1, "ordered_at": "2024-01-03T12:00:00Z"}');
SELECT FROM medallion.run('silver.bfg_orders');
SELECT FROM medallion.run('gold.bfg_daily');
SELECT results_eq($$SELECT day, revenue FROM gold.bfg_daily ORDER BY day$$,
                  $$VALUES ('2024-01-01'::date, 10::numeric), ('2024-01-02', 12), ('2024-01-03', 20)$$,
                  'the next refresh uses the new query for the days it refreshes');
SELECT isnt(medallion.backfill('gold.bfg_daily', '2024-01-02', '2024-01-02'), NULL, 'a partition backfill of a range');
SELECT results_eq($$SELECT day, revenue FROM gold.bfg_daily ORDER BY day$$,
                  $$VALUES ('2024-01-01'::date, 10::numeric), ('2024-01-02', 120), ('2024-01-03', 20)$$,
                  'brings the new query to the range only');
SELECT isnt(medallion.backfill('gold.bfg_daily', NULL, NULL, 'full'), NULL, 'a full backfill');
SELECT results_eq($$SELECT day, revenue FROM gold.bfg_daily ORDER BY day$$,
                  $$VALUES ('2024-01-01'::date, 100::numeric), ('2024-01-02', 120), ('2024-01-03', 20)$$,
                  'brings it to the whole history');
SELECT is('gold.bfg_daily'::regclass::oid, (SELECT relid FROM bfg_oid), 'the table keeps its OID');
SELECT is((SELECT count(*)::int FROM pg_class WHERE relname LIKE '\_bf%'), 0, 'the table built aside is gone');
SELECT results_eq($$SELECT kind, status, detail->>'strategy', (detail->>'definition_version')::int
                    FROM pg_temp.last_run('gold.bfg_daily')$$,
                  $$VALUES ('backfill', 'succeeded', 'full', 2)$$, 'recorded as a full backfill of version 2');

-- Other output columns: pending until a full backfill -------------------------------------------

SELECT lives_ok($$SELECT medallion.alter_pipeline('gold.bfg_daily', '{"query":
    "SELECT date(ordered_at) AS day, count(*) AS orders, sum(amount) AS revenue, max(amount) AS biggest FROM silver.bfg_orders GROUP BY 1"}')$$,
                'a query with another output column is accepted');
SELECT is((SELECT definition_version FROM medallion.pipelines WHERE name = 'gold.bfg_daily'), 3, 'as version 3');
SELECT hasnt_column('gold', 'bfg_daily', 'biggest', 'the table is left as it is');
SELECT results_eq($$SELECT (detail->>'version')::int, classification FROM medallion.schema_changes
                    WHERE pipeline = 'gold.bfg_daily' AND change = 'contract_changed' ORDER BY id$$,
                  $$VALUES (2, 'safe'::text), (3, 'breaking')$$,
                  'each query change is a schema change: safe with the same columns, breaking with others');
SELECT throws_ok($$SELECT medallion.run('gold.bfg_daily', strict => true)$$, 'MD012', NULL, 'runs are refused');
SELECT FROM medallion.run('gold.bfg_daily');
SELECT results_eq($$SELECT status, error_message FROM pg_temp.last_run('gold.bfg_daily')$$,
                  $$VALUES ('failed', 'the output columns of gold model "gold.bfg_daily" changed and its table has the earlier ones')$$,
                  'a run is recorded failed, and says why');
SELECT throws_ok($$SELECT medallion.backfill('gold.bfg_daily', '2024-01-01', '2024-01-01')$$, 'MD012', NULL,
                 'a partition backfill too');
SELECT throws_ok($$SELECT medallion.backfill('gold.bfg_daily', '2024-01-01', '2024-01-01', 'blue_green')$$,
                 '22023', NULL, 'a blue-green backfill of a range cannot build other columns');
SELECT isnt(medallion.backfill('gold.bfg_daily', NULL, NULL, 'full'), NULL, 'a full backfill builds them');
SELECT has_column('gold', 'bfg_daily', 'biggest', 'the new column is there');
SELECT results_eq($$SELECT day, revenue, biggest FROM gold.bfg_daily ORDER BY day$$,
                  $$VALUES ('2024-01-01'::date, 10::numeric, 10::numeric), ('2024-01-02', 12, 7), ('2024-01-03', 2, 1)$$,
                  'with the new query''s rows');
SELECT is('gold.bfg_daily'::regclass::oid, (SELECT relid FROM bfg_oid), 'in the same table');
SELECT is((SELECT sum(revenue) FROM public.bfg_view), 24::numeric, 'the user''s view reads it');
SELECT lives_ok($$SELECT medallion.run('gold.bfg_daily', strict => true)$$, 'runs work again');

-- A dropped column a user's view reads: the backfill fails as a whole ------------------------

SELECT lives_ok($$SELECT medallion.alter_pipeline('gold.bfg_daily', '{"query":
    "SELECT date(ordered_at) AS day, count(*) AS orders, max(amount) AS biggest FROM silver.bfg_orders GROUP BY 1"}')$$,
                'a query without a column the user''s view reads');
SELECT throws_ok($$SELECT medallion.backfill('gold.bfg_daily', NULL, NULL, 'full')$$, '2BP01', NULL,
                 'its full backfill fails on the view');
SELECT has_column('gold', 'bfg_daily', 'revenue', 'nothing was applied: the column is there');
SELECT is((SELECT sum(revenue) FROM gold.bfg_daily), 24::numeric, 'with its rows');
-- the earlier query back, as version 5 (same columns as the table)
SELECT FROM medallion.alter_pipeline('gold.bfg_daily', '{"query":
    "SELECT date(ordered_at) AS day, count(*) AS orders, sum(amount) AS revenue, max(amount) AS biggest FROM silver.bfg_orders GROUP BY 1"}');

-- blue_green with validation, a view and a grant; rollback -------------------------------------

SELECT FROM medallion.alter_pipeline('gold.bfg_daily', '{"query":
    "SELECT date(ordered_at) AS day, count(*) AS orders, sum(amount) + 1 AS revenue, max(amount) AS biggest FROM silver.bfg_orders GROUP BY 1"}');
SELECT is((SELECT definition_version FROM medallion.pipelines WHERE name = 'gold.bfg_daily'), 6, 'version 6');
SELECT isnt(medallion.backfill('gold.bfg_daily', '2024-01-01', '2024-01-02', 'blue_green'), NULL,
            'a blue-green backfill of a range');
SELECT results_eq($$SELECT day, revenue FROM gold.bfg_daily ORDER BY day$$,
                  $$VALUES ('2024-01-01'::date, 11::numeric), ('2024-01-02', 13), ('2024-01-03', 2)$$,
                  'the range is recomputed, the rest carried over');
SELECT is('gold.bfg_daily'::regclass::oid, (SELECT relid FROM bfg_oid), 'the table keeps its OID');
SELECT is((SELECT sum(revenue) FROM public.bfg_view), 26::numeric, 'the user''s view reads the new version');
SELECT ok(has_table_privilege('medallion_tap_bfg_reader', 'gold.bfg_daily', 'SELECT'), 'the grant stays');
SELECT results_eq($$SELECT definition_version FROM medallion.backfill_versions WHERE pipeline = 'gold.bfg_daily'$$,
                  $$VALUES (5)$$, 'the old version is kept, with the query version it was built with');
SELECT lives_ok($$SELECT medallion.rollback('gold.bfg_daily')$$, 'rollback()');
SELECT results_eq($$SELECT day, revenue FROM gold.bfg_daily ORDER BY day$$,
                  $$VALUES ('2024-01-01'::date, 10::numeric), ('2024-01-02', 12), ('2024-01-03', 2)$$,
                  'the old rows are back');
SELECT is((SELECT definition_version FROM medallion.pipelines WHERE name = 'gold.bfg_daily'), 5,
          'and the query version they were built with');
SELECT is('gold.bfg_daily'::regclass::oid, (SELECT relid FROM bfg_oid), 'in the same table');
SELECT FROM medallion.run('gold.bfg_daily');
SELECT results_eq($$SELECT day, revenue FROM gold.bfg_daily ORDER BY day$$,
                  $$VALUES ('2024-01-01'::date, 10::numeric), ('2024-01-02', 12), ('2024-01-03', 2)$$,
                  'the next run refreshes with the restored query');

-- A failed validation swaps nothing -------------------------------------------------------------

SELECT FROM medallion.alter_pipeline('gold.bfg_daily', '{"query":
    "SELECT date(ordered_at) AS day, count(*) AS orders, sum(amount) AS revenue, max(amount) AS biggest FROM silver.bfg_orders WHERE amount > 5 GROUP BY 1"}');
SELECT isnt(medallion.backfill('gold.bfg_daily', NULL, NULL, 'blue_green'), NULL,
            'a blue-green backfill whose new version loses a day');
SELECT results_eq($$SELECT status, error_class FROM pg_temp.last_run('gold.bfg_daily')$$,
                  $$VALUES ('failed', 'business_rule')$$, 'is recorded failed, business_rule');
SELECT is((SELECT count(*)::int FROM gold.bfg_daily), 3, 'the current version is untouched');
SELECT is((SELECT count(*)::int FROM medallion.backfill_versions WHERE pipeline = 'gold.bfg_daily'), 0, 'nothing is kept');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM medallion.alerts WHERE pipeline = 'gold.bfg_daily' AND kind = 'backfill'
           AND resolved_at IS NULL), 1, 'a backfill alert is raised');

-- Change records no model reads are deleted -----------------------------------------------------

SELECT FROM medallion.create_bronze('bfg_lonely_raw', 'shop');
SELECT FROM medallion.create_silver('bfg_lonely', 'bronze.bfg_lonely_raw', '{"id": "bigint"}', ARRAY['id']);
INSERT INTO medallion.changes (pipeline) VALUES ('silver.bfg_lonely');
SELECT FROM medallion.ingest('bronze.bfg_raw', '{"id": 6, "amount": 3, "ordered_at": "2024-01-03T13:00:00Z"}');
SELECT FROM medallion.run('silver.bfg_orders');
SELECT FROM medallion.run('gold.bfg_daily');
SELECT is((SELECT count(*)::int FROM medallion.changes WHERE pipeline = 'silver.bfg_lonely'), 0,
          'a gold run deletes the records of an upstream no model reads');

SELECT * FROM finish();
ROLLBACK;
