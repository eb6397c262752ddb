--
-- gold_results: a gold model equals its query after every change upstream:
-- inserts, updates that move a row to another day, deletes (delete_when),
-- a new day, an unmappable upstream (a joined dimension), a model over a
-- model, a monthly model and an unpartitioned one.  Each step runs silver,
-- then the models, then compares every model with its query (EXCEPT ALL
-- both ways) and shows what each run refreshed.
--
-- Runs pin TimeZone UTC and DateStyle ISO: compare under the same settings.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET client_min_messages = warning;
SELECT medallion.create_bronze('gr_sales_raw', 'regress') IS NOT NULL AS created;
SELECT medallion.create_bronze('gr_stores_raw', 'regress') IS NOT NULL AS created;
SELECT medallion.create_silver('gr_sales', 'bronze.gr_sales_raw',
    '{"id": "int", "store": "int", "amount": "numeric", "sold_at": "timestamptz"}',
    ARRAY['id'], NULL, '{"delete_when": "_raw->>''op'' = ''D''"}') IS NOT NULL AS created;
SELECT medallion.create_silver('gr_stores', 'bronze.gr_stores_raw',
    '{"store": "int", "region": "text"}', ARRAY['store']) IS NOT NULL AS created;

SELECT medallion.create_gold('gr_by_day',
    $$SELECT date(s.sold_at) AS day, st.region, count(*) AS sales, sum(s.amount) AS amount
      FROM silver.gr_sales s JOIN silver.gr_stores st USING (store) GROUP BY 1, 2$$, 'day') IS NOT NULL AS created;
SELECT medallion.create_gold('gr_by_month',
    $$SELECT date_trunc('month', sold_at) AS month, sum(amount) AS amount FROM silver.gr_sales GROUP BY 1$$,
    'month', '{"granularity": "month"}') IS NOT NULL AS created;
SELECT medallion.create_gold('gr_regions',
    $$SELECT region, sum(amount) AS amount FROM gold.gr_by_day GROUP BY 1$$) IS NOT NULL AS created;
SELECT medallion.create_gold('gr_daily_total',
    $$SELECT day, sum(amount) AS amount FROM gold.gr_by_day GROUP BY 1$$, 'day') IS NOT NULL AS created;
RESET client_min_messages;

SELECT pipeline, upstream, kind, partition_column FROM medallion.dependencies
WHERE pipeline LIKE 'gold.gr_%' ORDER BY 1, 2;

-- Every model against its query: the rows only one side has (none expected).
CREATE FUNCTION gr_diff() RETURNS TABLE (model text, differing bigint) LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n bigint;
BEGIN
    FOR r IN SELECT p.name, p.relname, p.definition->>'query' AS q FROM medallion.pipelines p
             WHERE p.name LIKE 'gold.gr_%' ORDER BY 1 LOOP
        EXECUTE format('SELECT count(*) FROM ((TABLE gold.%I EXCEPT ALL SELECT * FROM (%s) a) '
                       'UNION ALL (SELECT * FROM (%s) b EXCEPT ALL TABLE gold.%I)) d',
                       r.relname, r.q, r.q, r.relname) INTO n;
        model := r.name; differing := n;
        RETURN NEXT;
    END LOOP;
END $$;

-- run everything, upstream first, and show what the model runs did
CREATE FUNCTION gr_step() RETURNS TABLE (model text, kind text, mode text, partitions text, rows_inserted bigint)
LANGUAGE plpgsql AS $$
DECLARE
    first_run bigint := (SELECT COALESCE(max(run_id), 0) FROM medallion.runs);
BEGIN
    PERFORM medallion.run('silver.gr_stores');
    PERFORM medallion.run('silver.gr_sales');
    PERFORM medallion.run('gold.gr_by_day');
    PERFORM medallion.run('gold.gr_by_month');
    PERFORM medallion.run('gold.gr_regions');
    PERFORM medallion.run('gold.gr_daily_total');
    RETURN QUERY SELECT r.pipeline, r.kind, r.detail->>'mode', r.detail->>'partitions', r.rows_inserted
                 FROM medallion.runs r WHERE r.run_id > first_run AND r.pipeline LIKE 'gold.%' ORDER BY r.run_id;
END $$;

-- 1. first data: every model is refreshed whole
SELECT medallion.ingest('bronze.gr_stores_raw', '[{"store": 1, "region": "north"}, {"store": 2, "region": "south"}]');
SELECT medallion.ingest('bronze.gr_sales_raw',
  '[{"id": 1, "store": 1, "amount": 10, "sold_at": "2024-01-30T10:00:00Z"},
    {"id": 2, "store": 2, "amount": 20, "sold_at": "2024-01-31T10:00:00Z"},
    {"id": 3, "store": 1, "amount": 30, "sold_at": "2024-02-01T10:00:00Z"}]');
SELECT * FROM gr_step();
SELECT * FROM gr_diff();

-- 2. nothing changed: nothing refreshed
SELECT * FROM gr_step();
SELECT * FROM gr_diff();

-- 3. a row moves from Jan 31 to Feb 2, a new row on Feb 3, a delete on Jan 30
SELECT medallion.ingest('bronze.gr_sales_raw',
  '[{"id": 2, "store": 2, "amount": 21, "sold_at": "2024-02-02T10:00:00Z"},
    {"id": 4, "store": 2, "amount": 40, "sold_at": "2024-02-03T10:00:00Z"},
    {"id": 1, "op": "D"}]');
SELECT * FROM gr_step();
SELECT * FROM gr_diff();

-- 4. a dimension changes (maps to no partition): the models reading it refresh whole
SELECT medallion.ingest('bronze.gr_stores_raw', '[{"store": 2, "region": "east"}]');
SELECT * FROM gr_step();
SELECT * FROM gr_diff();

SELECT * FROM gold.gr_by_day ORDER BY 1, 2;
SELECT * FROM gold.gr_by_month ORDER BY 1;
SELECT * FROM gold.gr_regions ORDER BY 1;
SELECT * FROM gold.gr_daily_total ORDER BY 1;
