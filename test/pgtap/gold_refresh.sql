-- A gold run (medallion.run('gold.x')): an unpartitioned model is refreshed whole and keeps
-- its table (a user's view and grants go on working); a partitioned one recomputes only the
-- partitions whose upstream rows changed, found from change records that silver runs write
-- (the days of the old and the new version of every row they insert, update or delete); an
-- empty change set touches nothing. The model's query runs as its owner
-- (docs/architecture.md, "Gold models").
BEGIN;
SELECT plan(39);

CREATE ROLE medallion_tap_gr_owner NOLOGIN;
CREATE ROLE medallion_tap_gr_reader NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver, gold TO medallion_tap_gr_owner;

SET ROLE medallion_tap_gr_owner;
SELECT FROM medallion.create_bronze('gr_raw', 'shop');
SELECT FROM medallion.create_silver('gr_orders', 'bronze.gr_raw',
    '{"id": "bigint", "channel": "text", "amount": "numeric", "ordered_at": "timestamptz"}',
    ARRAY['id'], NULL, '{"delete_when": "_raw->>''op'' = ''D''"}');
SELECT FROM medallion.ingest('bronze.gr_raw',
    '[{"id": 1, "channel": "web", "amount": 10, "ordered_at": "2024-01-01T10:00:00Z"},
      {"id": 2, "channel": "web", "amount": 5, "ordered_at": "2024-01-02T10:00:00Z"},
      {"id": 3, "channel": "shop", "amount": 7, "ordered_at": "2024-01-02T11:00:00Z"},
      {"id": 4, "channel": "shop", "amount": 1, "ordered_at": "2024-01-05T11:00:00Z"}]');
SELECT FROM medallion.run('silver.gr_orders');

SELECT FROM medallion.create_gold('gr_daily',
    $$SELECT date(ordered_at) AS day, channel, count(*) AS orders, sum(amount) AS revenue, current_user::text AS made_by
      FROM silver.gr_orders GROUP BY 1, 2$$, 'day');
SELECT FROM medallion.create_gold('gr_total',
    'SELECT channel, sum(amount) AS revenue FROM silver.gr_orders GROUP BY 1 ; ');
SELECT FROM medallion.create_gold('gr_weekly', 'SELECT day, sum(orders) AS orders FROM gold.gr_daily GROUP BY 1', 'day');
RESET ROLE;

-- the model equals its query
CREATE FUNCTION pg_temp.daily_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT NOT EXISTS (
        (SELECT day, channel, orders, revenue FROM gold.gr_daily
         EXCEPT ALL
         SELECT date(ordered_at AT TIME ZONE 'UTC'), channel, count(*), sum(amount) FROM silver.gr_orders GROUP BY 1, 2)
        UNION ALL
        (SELECT date(ordered_at AT TIME ZONE 'UTC'), channel, count(*), sum(amount) FROM silver.gr_orders GROUP BY 1, 2
         EXCEPT ALL
         SELECT day, channel, orders, revenue FROM gold.gr_daily))
$$;
CREATE FUNCTION pg_temp.last(p text) RETURNS medallion.runs LANGUAGE sql AS $$
    SELECT * FROM medallion.runs WHERE pipeline = p ORDER BY run_id DESC LIMIT 1
$$;

-- First runs: full ----------------------------------------------------------------------------

SELECT ok(medallion.run('gold.gr_daily') > 0, 'a superuser runs a model owned by an unprivileged role');
SELECT results_eq($$SELECT kind, status, rows_read, rows_inserted, detail->>'mode' FROM pg_temp.last('gold.gr_daily')$$,
                  $$VALUES ('full', 'succeeded', 4::bigint, 4::bigint, 'full')$$,
                  'the first run is a full refresh; rows_read = rows_inserted = the rows the query produced');
SELECT ok(pg_temp.daily_ok(), 'the model equals its query');
SELECT results_eq($$SELECT DISTINCT made_by COLLATE "default" FROM gold.gr_daily$$, $$VALUES ('medallion_tap_gr_owner')$$,
                  'the query ran as the model''s owner, not as the superuser who called run()');
SELECT results_eq($$SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'gold.gr_daily'::regclass ORDER BY 1$$,
                  $$VALUES ('gold.gr_daily_p20240101'), ('gold.gr_daily_p20240102'), ('gold.gr_daily_p20240105')$$,
                  'partitions are created for the days the query produced');
SELECT ok(medallion.run('gold.gr_total') > 0 AND medallion.run('gold.gr_weekly') > 0, 'the other models run');

-- an unpartitioned model keeps its table: a user's view and grants go on working
CREATE VIEW public.gr_total_view AS SELECT * FROM gold.gr_total;
SET ROLE medallion_tap_gr_owner;
GRANT SELECT ON gold.gr_total TO medallion_tap_gr_reader;
RESET ROLE;
CREATE TEMP TABLE gr_oid AS SELECT 'gold.gr_total'::regclass::oid AS oid;

-- an index the owner makes on the model is on every partition made later
SET ROLE medallion_tap_gr_owner;
CREATE INDEX gr_daily_channel ON gold.gr_daily (channel);
RESET ROLE;

-- An empty change set -------------------------------------------------------------------------

SELECT ok(medallion.run('gold.gr_daily') > 0, 'a run with nothing changed upstream');
SELECT results_eq($$SELECT kind, status, rows_read, rows_inserted, detail FROM pg_temp.last('gold.gr_daily')$$,
                  $$VALUES ('incremental', 'succeeded', 0::bigint, 0::bigint, '{"mode": "none", "partitions": []}'::jsonb)$$,
                  'is a succeeded run with zero counts that touches nothing');

-- Change records: a moved row refreshes both days, a new row its day, a delete its old day -----

SELECT FROM medallion.ingest('bronze.gr_raw',
    '[{"id": 2, "channel": "web", "amount": 6, "ordered_at": "2024-01-03T10:00:00Z"},
      {"id": 5, "channel": "web", "amount": 2, "ordered_at": "2024-01-07T09:00:00Z"},
      {"id": 4, "op": "D"}]');
SELECT FROM medallion.run('silver.gr_orders');
SELECT results_eq($$SELECT pipeline, buckets FROM medallion.changes WHERE pipeline = 'silver.gr_orders'$$,
                  $$VALUES ('silver.gr_orders', '{"ordered_at": ["2024-01-02", "2024-01-03", "2024-01-05", "2024-01-07"]}'::jsonb)$$,
                  'the silver run recorded the old and new days of the moved row, the new row''s and the deleted row''s');
SELECT is((SELECT count(*)::int FROM medallion.changes c
           WHERE c.pipeline = 'silver.gr_orders' AND c.xid = pg_current_xact_id()), 1,
          'stamped with the writing transaction');
SELECT ok(medallion.run('gold.gr_daily') > 0, 'the model runs again');
SELECT results_eq($$SELECT kind, detail FROM pg_temp.last('gold.gr_daily')$$,
                  $$VALUES ('incremental', '{"mode": "incremental", "partitions": ["2024-01-02", "2024-01-03", "2024-01-05", "2024-01-07"]}'::jsonb)$$,
                  'only the changed partitions are refreshed, recorded in runs.detail');
SELECT results_eq($$SELECT rows_read, rows_inserted FROM pg_temp.last('gold.gr_daily')$$,
                  $$VALUES (3::bigint, 3::bigint)$$, 'counts are the rows of the refreshed partitions');
SELECT ok(pg_temp.daily_ok(), 'the model equals its query after the change');
SELECT is((SELECT count(*)::int FROM gold.gr_daily_p20240105), 0, 'the deleted row''s day is empty now');
SELECT is((SELECT count(*)::int FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid
           WHERE i.inhparent = 'gold.gr_daily_channel'::regclass
             AND x.indrelid IN ('gold.gr_daily_p20240103'::regclass, 'gold.gr_daily_p20240107'::regclass)), 2,
          'partitions made after the owner indexed the model carry that index, attached to the parent''s');
SELECT ok(medallion.run('gold.gr_daily') > 0 AND (pg_temp.last('gold.gr_daily')).detail->>'mode' = 'none',
          'the records are consumed: the next run has nothing to do');

-- An unpartitioned model refreshes whole, in place
SELECT ok(medallion.run('gold.gr_total') > 0, 'the unpartitioned model runs');
SELECT results_eq($$SELECT kind, rows_inserted FROM pg_temp.last('gold.gr_total')$$, $$VALUES ('full', 2::bigint)$$,
                  'a change upstream refreshes it whole');
SELECT is((SELECT 'gold.gr_total'::regclass::oid), (SELECT oid FROM gr_oid), 'its table keeps its OID');
SELECT results_eq($$SELECT channel, revenue FROM public.gr_total_view ORDER BY 1$$,
                  $$VALUES ('shop', 7::numeric), ('web', 18::numeric)$$, 'a user''s view over it shows the new rows');
SET ROLE medallion_tap_gr_reader;
SELECT is((SELECT count(*)::int FROM gold.gr_total), 2, 'and grants made on it still hold');
RESET ROLE;

-- A model over a model: the upstream model's refreshed partitions are its change records
SELECT results_eq($$SELECT buckets FROM medallion.changes WHERE pipeline = 'gold.gr_daily' ORDER BY id DESC LIMIT 1$$,
                  $$VALUES ('{"day": ["2024-01-02", "2024-01-03", "2024-01-05", "2024-01-07"]}'::jsonb)$$,
                  'a gold run records the days it refreshed, for the models over it');
SELECT ok(medallion.run('gold.gr_weekly') > 0, 'the model over the model runs');
SELECT results_eq($$SELECT detail FROM pg_temp.last('gold.gr_weekly')$$,
                  $$VALUES ('{"mode": "incremental", "partitions": ["2024-01-02", "2024-01-03", "2024-01-05", "2024-01-07"]}'::jsonb)$$,
                  'and refreshes only those days');
SELECT results_eq($$SELECT day, orders FROM gold.gr_weekly ORDER BY 1$$,
                  $$SELECT day, sum(orders) FROM gold.gr_daily GROUP BY 1 ORDER BY 1$$, 'it equals its query');

-- lookback: the trailing days are refreshed at every run ------------------------------------

SET ROLE medallion_tap_gr_owner;
SELECT FROM medallion.create_gold('gr_recent', 'SELECT date(ordered_at) AS day, count(*) AS n FROM silver.gr_orders GROUP BY 1',
                                  'day', '{"lookback": "2 days"}');
RESET ROLE;
SELECT FROM medallion.run('gold.gr_recent');
SELECT FROM medallion.run('gold.gr_recent');
SELECT results_eq($$SELECT detail->>'mode', jsonb_array_length(detail->'partitions') FROM pg_temp.last('gold.gr_recent')$$,
                  $$VALUES ('incremental', 3)$$, 'with nothing changed, a run still refreshes the lookback''s 3 days');

-- another time zone: days of the model's zone, change days widened -------------------------

SET ROLE medallion_tap_gr_owner;
SELECT FROM medallion.create_gold('gr_tokyo', 'SELECT date(ordered_at) AS day, sum(amount) AS amount FROM silver.gr_orders GROUP BY 1',
                                  'day', '{"settings": {"TimeZone": "Asia/Tokyo"}}');
RESET ROLE;
SELECT FROM medallion.run('gold.gr_tokyo');
SELECT FROM medallion.ingest('bronze.gr_raw', '[{"id": 20, "channel": "web", "amount": 100, "ordered_at": "2024-01-05T20:00:00Z"}]');
SELECT FROM medallion.run('silver.gr_orders');
SELECT FROM medallion.run('gold.gr_tokyo');
SET LOCAL TimeZone = 'Asia/Tokyo';
SELECT results_eq($$SELECT day, amount FROM gold.gr_tokyo ORDER BY 1$$,
                  $$SELECT date(ordered_at), sum(amount) FROM silver.gr_orders GROUP BY 1 ORDER BY 1$$,
                  'a model with TimeZone set counts days in that zone, also after a change near midnight UTC');
RESET TimeZone;
SELECT ok((SELECT detail->'partitions' ? '2024-01-06' FROM pg_temp.last('gold.gr_tokyo')),
          'the change of 2024-01-05 20:00 UTC refreshed Tokyo''s 2024-01-06');

-- NULL partition values are refused --------------------------------------------------------

SELECT FROM medallion.ingest('bronze.gr_raw', '[{"id": 9, "channel": "web", "amount": 1}]');
SELECT FROM medallion.run('silver.gr_orders');
SET ROLE medallion_tap_gr_owner;
SELECT FROM medallion.create_gold('gr_nulls', 'SELECT ordered_at, id FROM silver.gr_orders', 'ordered_at');
RESET ROLE;
SELECT throws_ok($$SELECT medallion.run('gold.gr_nulls', strict => true)$$, 'MD011', NULL,
                 'a row whose partition value is NULL fails the run (MD011)');
SELECT is((SELECT count(*)::int FROM gold.gr_nulls), 0, 'and nothing is loaded');

-- Scheduling and freshness -------------------------------------------------------------------

SET ROLE medallion_tap_gr_owner;
SELECT lives_ok($$SELECT medallion.schedule('gold.gr_daily', 'on_change')$$, 'a model is scheduled like a silver pipeline');
RESET ROLE;
SELECT is((SELECT lag FROM medallion.freshness WHERE pipeline = 'gold.gr_daily'), '0'::interval,
          'freshness covers models: caught up, lag 0');
SELECT FROM medallion.ingest('bronze.gr_raw', '[{"id": 10, "channel": "web", "amount": 1, "ordered_at": "2024-01-07T10:00:00Z"}]');
SELECT FROM medallion.run('silver.gr_orders');
UPDATE medallion.changes SET recorded_at = now() - interval '1 hour' WHERE pipeline = 'silver.gr_orders';
SELECT ok((SELECT lag FROM medallion.freshness WHERE pipeline = 'gold.gr_daily') >= interval '1 hour',
          'with an unconsumed upstream change, the lag is its age');
SELECT FROM medallion.run('gold.gr_daily');
SELECT is((SELECT lag FROM medallion.freshness WHERE pipeline = 'gold.gr_daily'), '0'::interval,
          'consumed by a run: lag 0 again');
SELECT throws_ok($$SELECT medallion.replay_dlq('gold.gr_daily')$$, '0A000', NULL, 'a model has no DLQ to replay');
SET ROLE medallion_tap_gr_reader;
SELECT throws_ok($$SELECT medallion.change_note(0, NULL::date, current_date)$$, '55000', NULL,
                 'change_note() refuses to work outside a run of the caller''s own pipeline (55000)');
RESET ROLE;

-- a DLQ replay records its changes too
SELECT FROM medallion.ingest('bronze.gr_raw', '[{"id": 30, "channel": "web", "amount": "oops", "ordered_at": "2024-02-10T10:00:00Z"}]');
SELECT FROM medallion.run('silver.gr_orders');
UPDATE medallion.dlq SET original_payload = replace(original_payload, '"oops"', '3')
WHERE pipeline = 'silver.gr_orders' AND NOT reprocessed;
SELECT is(medallion.replay_dlq('silver.gr_orders'), 1::bigint, 'the corrected row is replayed');
SELECT FROM medallion.run('gold.gr_daily');
SELECT results_eq($$SELECT day, channel, orders, revenue FROM gold.gr_daily WHERE day = '2024-02-10'$$,
                  $$VALUES ('2024-02-10'::date, 'web', 1::bigint, 3::numeric)$$,
                  'the model picked the replayed row''s day up from its change record');

SELECT * FROM finish();
ROLLBACK;
