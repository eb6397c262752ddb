-- medallion.rename_pipeline(pipeline, new_name), as an unprivileged owner: refused to others
-- (42501), for a taken name (42710, or 42P07 for a table), an invalid name (42602) or another
-- layer (22023); a silver pipeline's table, tombstone table, run history, dead letters,
-- watermark, expectations, operators and contract versions follow; a bronze pipeline's
-- partitions, its silver readers' source and an HTTP source's target follow, and ingest and
-- runs go on under the new names; a reader's contract "references", an export's source and
-- a gold model's query follow, and they run.
BEGIN;
SELECT plan(36);

CREATE ROLE medallion_tap_ren_owner NOLOGIN;
CREATE ROLE medallion_tap_ren_other NOLOGIN;
CREATE ROLE medallion_tap_ren_oncall NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver, gold TO medallion_tap_ren_owner;
SET medallion.http_allowed_hosts = '127.0.0.1';

SET ROLE medallion_tap_ren_owner;
SELECT FROM medallion.create_bronze('ren_raw', 'shop');
SELECT FROM medallion.ingest('bronze.ren_raw', '[{"id": 1, "amount": 5, "day": "2026-01-01"},
                                                {"id": 2, "amount": "x", "day": "2026-01-01"},
                                                {"id": 3, "amount": 7, "day": "2026-01-02", "op": "D"}]');
SELECT FROM medallion.create_silver('ren_orders', 'bronze.ren_raw',
    '{"id": {"type": "bigint", "required": true}, "amount": "numeric", "day": "date"}', ARRAY['id'], NULL,
    $${"delete_when": "_raw->>'op' = 'D'"}$$);
SELECT FROM medallion.create_silver('ren_lines', 'bronze.ren_raw',
    '[{"name": "id", "type": "bigint"}, {"name": "order_id", "path": "id", "type": "bigint", "references": "silver.ren_orders.id"}]',
    ARRAY['id']);
SELECT FROM medallion.create_gold('ren_daily', 'SELECT day, sum(amount) AS total FROM silver.ren_orders GROUP BY day', 'day');
SELECT FROM medallion.expect('silver.ren_orders', 'positive', 'amount > 0');
SELECT FROM medallion.grant_operator('silver.ren_orders', 'medallion_tap_ren_oncall');
SELECT FROM medallion.run('silver.ren_orders');
SELECT FROM medallion.run('silver.ren_lines');
SELECT FROM medallion.run('gold.ren_daily');
SELECT FROM medallion.schedule('silver.ren_orders', '10 minutes');
RESET ROLE;
SELECT FROM medallion.create_export('silver.ren_orders', 'http://127.0.0.1:1/x', '{}', 'ren_out');
SELECT FROM medallion.create_http_source('bronze.ren_raw', 'http://127.0.0.1:1/y', '{}', 'ren_feed');

-- what the old name had, to compare
CREATE TEMP TABLE ren_before AS
SELECT (SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.ren_orders') AS runs,
       (SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.ren_orders') AS dlq,
       (SELECT count(*) FROM medallion.contract_versions WHERE pipeline = 'silver.ren_orders') AS versions,
       (SELECT done_snapshot::text FROM medallion.watermarks WHERE pipeline = 'silver.ren_orders') AS watermark;
GRANT SELECT ON ren_before TO PUBLIC;

-- Refusals ------------------------------------------------------------------------------------
SET ROLE medallion_tap_ren_other;
SELECT throws_ok($$SELECT medallion.rename_pipeline('silver.ren_orders', 'silver.ren_x')$$, '42501', NULL,
                 'a role that does not own the pipeline cannot rename it');
RESET ROLE;
SET ROLE medallion_tap_ren_oncall;
SELECT throws_ok($$SELECT medallion.rename_pipeline('silver.ren_orders', 'silver.ren_x')$$, '42501', NULL,
                 'nor can its operator');
RESET ROLE;
SET ROLE medallion_tap_ren_owner;
SELECT throws_ok($$SELECT medallion.rename_pipeline('silver.ren_nope', 'silver.ren_x')$$, '42704', NULL,
                 'an unknown pipeline');
SELECT throws_ok($$SELECT medallion.rename_pipeline('silver.ren_orders', 'silver.ren_lines')$$, '42710', NULL,
                 'a name another pipeline has is refused');
CREATE TABLE silver.ren_taken (x int);
SELECT throws_ok($$SELECT medallion.rename_pipeline('silver.ren_orders', 'silver.ren_taken')$$, '42P07', NULL,
                 'a name a table of the layer has is refused');
SELECT throws_ok($$SELECT medallion.rename_pipeline('silver.ren_orders', 'silver.Ren-X')$$, '42602', NULL,
                 'an invalid name is refused');
SELECT throws_ok($$SELECT medallion.rename_pipeline('silver.ren_orders', 'silver.' || repeat('x', 60))$$, '42602', NULL,
                 'so is a name too long for the tombstone table');
SELECT throws_ok($$SELECT medallion.rename_pipeline('silver.ren_orders', 'gold.ren_x')$$, '22023', NULL,
                 'a pipeline keeps its layer');
SELECT throws_ok($$SELECT medallion.rename_pipeline('silver.ren_orders', NULL)$$, '22004', NULL,
                 'NULL is refused');
SELECT ok(EXISTS (SELECT FROM medallion.pipelines WHERE name = 'silver.ren_orders')
          AND to_regclass('silver.ren_orders') IS NOT NULL, 'after a refusal nothing changed');

-- nothing half-applied: a failure after the partitions were renamed (the table itself belongs
-- to another role, made out of line by hand) leaves every name as it was
SELECT FROM medallion.create_bronze('ren_half', 'shop');
SELECT FROM medallion.ingest('bronze.ren_half', '[{"id": 1}]');
RESET ROLE;
ALTER TABLE bronze.ren_half OWNER TO medallion_tap_ren_other;
UPDATE medallion.pipelines SET owner = 'medallion_tap_ren_owner' WHERE name = 'bronze.ren_half';
SET ROLE medallion_tap_ren_owner;
SELECT throws_ok($$SELECT medallion.rename_pipeline('bronze.ren_half', 'bronze.ren_whole')$$, '42501', NULL,
                 'a rename PostgreSQL refuses half-way fails');
SELECT ok((SELECT bool_and(c.relname ~ '^ren_half_p\d{8}$') AND count(*) > 0 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'bronze.ren_half'::regclass)
          AND to_regclass('bronze.ren_whole') IS NULL
          AND EXISTS (SELECT FROM medallion.pipelines WHERE name = 'bronze.ren_half'),
          'and leaves nothing half-applied (its partitions keep their names)');

-- A silver pipeline -------------------------------------------------------------------------
SELECT lives_ok($$SELECT medallion.rename_pipeline('silver.ren_orders', 'silver.ren_sales')$$,
                'the owner renames a silver pipeline');
SELECT ok(to_regclass('silver.ren_sales') IS NOT NULL AND to_regclass('silver.ren_orders') IS NULL
          AND to_regclass('silver._ren_sales_deleted') IS NOT NULL AND to_regclass('silver._ren_orders_deleted') IS NULL,
          'its table and tombstone table are renamed (the name follows the table)');
SELECT is((SELECT relname || ' ' || layer FROM medallion.pipelines WHERE name = 'silver.ren_sales'), 'ren_sales silver',
          'the catalog row has the new name');
RESET ROLE;
SELECT is((SELECT ROW((SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.ren_sales'),
                      (SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.ren_sales'),
                      (SELECT count(*) FROM medallion.contract_versions WHERE pipeline = 'silver.ren_sales'),
                      (SELECT done_snapshot::text FROM medallion.watermarks WHERE pipeline = 'silver.ren_sales'))::text),
          (SELECT ROW(runs, dlq, versions, watermark)::text FROM ren_before),
          'run history, dead letters, contract versions and watermark follow');
SELECT is((SELECT count(*) FROM (
             SELECT pipeline FROM medallion.runs UNION ALL SELECT pipeline FROM medallion.dlq
             UNION ALL SELECT pipeline FROM medallion.watermarks UNION ALL SELECT pipeline FROM medallion.expectations
             UNION ALL SELECT pipeline FROM medallion.operators UNION ALL SELECT pipeline FROM medallion.contract_versions
             UNION ALL SELECT pipeline FROM medallion.dependencies UNION ALL SELECT upstream FROM medallion.dependencies
             UNION ALL SELECT pipeline FROM medallion.quarantine UNION ALL SELECT pipeline FROM medallion.batches) x
           WHERE pipeline = 'silver.ren_orders'), 0::bigint, 'no catalog row names the old name');
SELECT is((SELECT name FROM medallion.expectations WHERE pipeline = 'silver.ren_sales'), 'positive', 'expectations follow');
SELECT is((SELECT role::text FROM medallion.operators WHERE pipeline = 'silver.ren_sales'), 'medallion_tap_ren_oncall',
          'operators follow');
SELECT is((SELECT schedule || ' ' || schedule_kind FROM medallion.pipelines WHERE name = 'silver.ren_sales'), '00:10:00 interval',
          'the schedule follows');

-- its readers
SELECT is((SELECT definition #>> '{columns,1,references}' FROM medallion.pipelines WHERE name = 'silver.ren_lines'),
          'silver.ren_sales.id', 'a reader''s contract "references" follows');
SELECT is((SELECT count(*) FROM medallion.contract_versions WHERE pipeline = 'silver.ren_lines'
             AND definition::text LIKE '%silver.ren_orders.%'), 0::bigint, 'in every contract version');
SELECT is((SELECT definition ->> 'source' FROM medallion.pipelines WHERE name = 'export.ren_out'), 'silver.ren_sales',
          'an export''s source follows');
SELECT matches((SELECT definition ->> 'query' FROM medallion.pipelines WHERE name = 'gold.ren_daily'),
               'FROM silver\.ren_sales', 'a gold model''s query is rewritten with the new name');
SELECT is((SELECT array_agg(pipeline || '<-' || upstream || ':' || kind ORDER BY pipeline)::text FROM medallion.dependencies
           WHERE upstream = 'silver.ren_sales'),
          '{export.ren_out<-silver.ren_sales:export,gold.ren_daily<-silver.ren_sales:query,silver.ren_lines<-silver.ren_sales:reference}',
          'the graph''s edges follow');

-- A bronze pipeline ---------------------------------------------------------------------------
SET ROLE medallion_tap_ren_owner;
SELECT lives_ok($$SELECT medallion.rename_pipeline('bronze.ren_raw', 'bronze.ren_feed_raw')$$,
                'the owner renames a bronze pipeline');
SELECT is((SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'bronze.ren_feed_raw'::regclass AND c.relname !~ '^ren_feed_raw_p\d{8}$'), 0::bigint,
          'its day partitions are renamed with it');
SELECT ok((SELECT count(*) FROM pg_inherits WHERE inhparent = 'bronze.ren_feed_raw'::regclass) > 0, 'and it has some');
SELECT is((SELECT string_agg(DISTINCT source, ',') FROM medallion.pipelines WHERE layer = 'silver' AND name LIKE 'silver.ren_%'),
          'bronze.ren_feed_raw', 'its silver readers'' source follows');
RESET ROLE;
SELECT is((SELECT string_agg(DISTINCT source_table, ',') FROM medallion.dlq WHERE pipeline = 'silver.ren_sales'),
          'bronze.ren_feed_raw', 'their dead letters name the renamed table they came from');
SET ROLE medallion_tap_ren_owner;
SELECT is((SELECT definition ->> 'target' FROM medallion.pipelines WHERE name = 'source.ren_feed'), 'ren_feed_raw',
          'an HTTP source''s target follows');

-- everything goes on under the new names (runs execute as the owner; tap.run_row reads runs.*)
RESET ROLE;
SELECT is(medallion.ingest('bronze.ren_feed_raw', '[{"id": 4, "amount": 9, "day": "2026-01-02"}]'), 1::bigint,
          'ingest into the renamed bronze table');
SELECT is((SELECT rows_inserted FROM tap.run_row('silver.ren_sales')), 1::bigint,
          'the renamed silver pipeline reads only the new row');
SELECT is((SELECT rows_read FROM tap.run_row('silver.ren_lines')), 1::bigint,
          'its reader runs, its reference checked against the renamed table');
SELECT is((SELECT status FROM tap.run_row('gold.ren_daily')), 'succeeded', 'the gold model runs its rewritten query');
SELECT is((SELECT total FROM gold.ren_daily WHERE day = '2026-01-02'), 9::numeric, 'with the new row');

SELECT * FROM finish();
ROLLBACK;
