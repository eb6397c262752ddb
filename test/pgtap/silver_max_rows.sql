-- Option max_rows_per_run: a run reads at most that many rows of its window, in arrival order,
-- and remembers where it stopped; repeated runs drain a backlog exactly (each bronze row read
-- once), and silver ends as one unbounded run would leave it. Rows landing while a backlog is
-- being drained are read too.
BEGIN;
SELECT plan(14);

SELECT FROM medallion.create_bronze('clicks', 'web');
SELECT FROM medallion.create_silver('clicks_bounded', 'bronze.clicks',
    '{"id": "bigint", "v": "int", "n": "int"}', ARRAY['id'], 'v', '{"max_rows_per_run": 4}');
SELECT FROM medallion.create_silver('clicks_all', 'bronze.clicks',
    '{"id": "bigint", "v": "int", "n": "int"}', ARRAY['id'], 'v');

-- 10 rows over 3 keys (versions out of order), 1 bad row
SELECT FROM medallion.ingest('bronze.clicks',
    (SELECT jsonb_agg(jsonb_build_object('id', i % 3, 'v', (i * 7) % 10, 'n', i) ORDER BY i) FROM generate_series(1, 10) i));
SELECT FROM medallion.ingest('bronze.clicks', '[{"id": 1, "v": 99, "n": "bad"}]');

SELECT results_eq($$SELECT rows_read FROM tap.run_row('silver.clicks_bounded')$$, $$VALUES (4::bigint)$$,
                  'the first run reads max_rows_per_run rows');
SELECT ok((SELECT target_snapshot IS NOT NULL FROM medallion.watermarks WHERE pipeline = 'silver.clicks_bounded'),
          'the watermark keeps the window being drained');
SELECT results_eq($$SELECT rows_read FROM tap.run_row('silver.clicks_bounded')$$, $$VALUES (4::bigint)$$,
                  'the second run reads the next rows');

-- rows landing mid-drain
SELECT FROM medallion.ingest('bronze.clicks', '[{"id": 7, "v": 1, "n": 70}, {"id": 0, "v": 100, "n": 1000}]');

SELECT results_eq($$SELECT rows_read FROM tap.run_row('silver.clicks_bounded')$$, $$VALUES (4::bigint)$$,
                  'the third run is bounded too');
SELECT results_eq($$SELECT rows_read FROM tap.run_row('silver.clicks_bounded')$$, $$VALUES (1::bigint)$$,
                  'the fourth reads what is left');
SELECT results_eq($$SELECT rows_read FROM tap.run_row('silver.clicks_bounded')$$, $$VALUES (0::bigint)$$,
                  'then the backlog is drained');
SELECT ok((SELECT target_snapshot IS NULL FROM medallion.watermarks WHERE pipeline = 'silver.clicks_bounded'),
          'and no window is being drained');
SELECT is((SELECT sum(rows_read)::int FROM medallion.runs WHERE pipeline = 'silver.clicks_bounded'),
          (SELECT count(*)::int FROM bronze.clicks), 'the sum of rows_read equals the rows ingested');
SELECT is((SELECT max(rows_read)::int FROM medallion.runs WHERE pipeline = 'silver.clicks_bounded'), 4,
          'no run read more than max_rows_per_run');

SELECT FROM medallion.run('silver.clicks_all');
SELECT set_eq($$SELECT id, v, n FROM silver.clicks_bounded$$, $$SELECT id, v, n FROM silver.clicks_all$$,
              'silver is what one unbounded run makes of the same rows');
SELECT results_eq($$SELECT id, v, n FROM silver.clicks_bounded ORDER BY id$$,
                  $$VALUES (0::bigint, 100, 1000), (1, 9, 7), (2, 6, 8), (7, 1, 70)$$,
                  'the newest version of each key');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.clicks_bounded'), 1,
          'the bad row went to the DLQ once');

SELECT FROM medallion.ingest('bronze.clicks', '[{"id": 8, "v": 1, "n": 80}]');
SELECT results_eq($$SELECT rows_read, rows_inserted FROM tap.run_row('silver.clicks_bounded')$$,
                  $$VALUES (1::bigint, 1::bigint)$$, 'a later small window is read in one run');

SELECT is_empty(
    $$SELECT run_id FROM medallion.runs WHERE pipeline IN ('silver.clicks_bounded', 'silver.clicks_all')
        AND (status <> 'succeeded'
             OR rows_read <> rows_inserted + rows_updated + rows_unchanged + rows_dlq + rows_quarantined + rows_dropped)$$,
    'every run succeeded and rows_read = inserted + updated + unchanged + dlq + quarantined + dropped');

SELECT * FROM finish();
ROLLBACK;
