-- medallion.backfill(pipeline, from_date, to_date, strategy, dry_run, options) and
-- medallion.backfill_plan(): the guardrails (bad arguments, unknown pipelines, bronze, paused,
-- not the owner, budgets), dry runs, and the partition strategy: the keys with bronze rows in
-- the range recomputed from all their versions under the current contract (a contract change
-- reaches history), DLQ rows that now pass leave the DLQ exactly once, rows that now fail
-- enter it once, keys with no valid version left removed; a gold model's partitions of the
-- range recomputed.
BEGIN;
SELECT plan(59);

CREATE ROLE medallion_tap_bf_owner NOLOGIN;
CREATE ROLE medallion_tap_bf_other NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver, gold TO medallion_tap_bf_owner;

SET ROLE medallion_tap_bf_owner;
SELECT FROM medallion.create_bronze('bf_raw', 'shop');
SELECT FROM medallion.create_silver('bf_orders', 'bronze.bf_raw',
    '{"id": "bigint", "v": "int", "status": {"type": "text", "accepted": ["new", "paid"]},
      "amount": "numeric", "ordered_at": "timestamptz"}',
    ARRAY['id'], 'v', '{"compatibility": "none"}');
SELECT FROM medallion.ingest('bronze.bf_raw', $$[
    {"id": 1, "v": 1, "status": "new", "amount": 10, "ordered_at": "2024-01-01T10:00:00Z"},
    {"id": 1, "v": 2, "status": "paid", "amount": 10, "ordered_at": "2024-01-01T10:00:00Z"},
    {"id": 2, "v": 1, "status": "shipped", "amount": 5, "ordered_at": "2024-01-02T10:00:00Z"},
    {"id": 3, "v": 1, "status": "new", "amount": 7, "ordered_at": "2024-01-02T11:00:00Z"},
    {"id": 4, "v": 1, "status": "refunded", "amount": 1, "ordered_at": "2024-01-03T11:00:00Z"}
]$$);
SELECT FROM medallion.run('silver.bf_orders');
SELECT FROM medallion.create_gold('bf_daily',
    $$SELECT date(ordered_at) AS day, count(*) AS orders, sum(amount) AS revenue
      FROM silver.bf_orders GROUP BY 1$$, 'day');
SELECT FROM medallion.run('gold.bf_daily');
RESET ROLE;

CREATE FUNCTION pg_temp.last_run(p text,
    OUT kind text, OUT status text, OUT rows_read bigint, OUT rows_inserted bigint, OUT rows_dlq bigint,
    OUT detail jsonb) LANGUAGE sql AS $$
    SELECT kind, status, rows_read, rows_inserted, rows_dlq, detail FROM medallion.runs
    WHERE pipeline = p ORDER BY run_id DESC LIMIT 1
$$;
CREATE TEMP VIEW bf_dlq AS
    SELECT d.id, d.reprocessed, b._raw->>'id' AS key, b._raw->>'status' AS status
    FROM medallion.dlq d JOIN bronze.bf_raw b ON b._seq = d.source_seq
    WHERE d.pipeline = 'silver.bf_orders';
GRANT SELECT ON bf_dlq TO PUBLIC;
SELECT results_eq($$SELECT key, reprocessed FROM bf_dlq ORDER BY key$$,
                  $$VALUES ('2', false), ('4', false)$$, 'two rows with a status not accepted are in the DLQ');

-- Guardrails ----------------------------------------------------------------------------------

SET ROLE medallion_tap_bf_owner;
SELECT throws_ok($$SELECT medallion.backfill(NULL, current_date, current_date)$$, '22004', NULL,
                 'a NULL pipeline is refused');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date, 'nightly')$$,
                 '22023', 'unrecognized backfill strategy "nightly"', 'an unknown strategy is refused');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', '2024-02-02', '2024-02-01')$$,
                 '22023', 'from_date 2024-02-02 is after to_date 2024-02-01', 'from > to is refused');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, NULL)$$,
                 '22023', 'from_date and to_date must both be given, or both be NULL', 'one date alone is refused');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date, 'full')$$,
                 '22023', 'a full backfill takes no dates', 'dates given to full are refused');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', 'infinity', 'infinity')$$,
                 '22023', 'backfill dates must be finite', 'infinite dates are refused');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_nothing', current_date, current_date)$$,
                 '42704', 'pipeline "silver.bf_nothing" does not exist', 'an unknown pipeline is refused');
SELECT throws_ok($$SELECT medallion.backfill('bronze.bf_raw', current_date, current_date)$$,
                 'MD080', 'cannot backfill pipeline "bronze.bf_raw" of layer "bronze"', 'a bronze pipeline is refused');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date, options => '{"fast": true}')$$,
                 '22023', 'unrecognized backfill option "fast"', 'an unknown option is refused');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date, options => '[]')$$,
                 '22023', 'options must be a JSON object', 'options that are not an object are refused');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date, options => '{"force": "yes"}')$$,
                 '22023', 'backfill option "force" must be a boolean', 'a force that is not a boolean is refused');
SELECT throws_ok($$SELECT medallion.backfill('gold.bf_daily', current_date, current_date, 'blue_green',
                                             options => '{"max_row_change": "x"}')$$,
                 '22023', 'backfill option "max_row_change" must be a number at least 0',
                 'blue_green options of a gold model are checked as a silver one''s');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date, 'blue_green',
                                             options => '{"max_row_change": -1}')$$,
                 '22023', 'backfill option "max_row_change" must be a number at least 0', 'a negative max_row_change is refused');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date, 'blue_green',
                                             options => '{"checks": "SELECT true"}')$$,
                 '22023', 'backfill option "checks" must be an array of queries', 'checks must be an array');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date, 'blue_green',
                                             options => '{"keep": "a while"}')$$,
                 '22007', NULL, 'keep must be an interval');
SELECT throws_ok($$SELECT medallion.rollback('gold.bf_daily')$$, '55000',
                 'pipeline "gold.bf_daily" has no version to roll back to', 'a gold model with nothing kept has nothing to roll back');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', NULL, NULL, 'full', options => '{"async": true}')$$,
                 '22023', NULL, 'only partition backfills run asynchronously');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date, options => '{"async": 1}')$$,
                 '22023', 'backfill option "async" must be a boolean', 'async must be a boolean');
SELECT throws_ok($$SELECT medallion.rollback('silver.bf_orders')$$, '55000',
                 'pipeline "silver.bf_orders" has no version to roll back to', 'rollback() without a kept version is refused');
SELECT throws_ok($$SELECT * FROM medallion.backfill_plan('silver.bf_orders', current_date, current_date, 'weekly')$$,
                 '22023', NULL, 'backfill_plan checks its arguments too');
RESET ROLE;

SET ROLE medallion_tap_bf_other;
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date)$$,
                 '42501', 'must be owner of pipeline "silver.bf_orders"', 'only the owner may backfill');
SELECT throws_ok($$SELECT * FROM medallion.backfill_plan('silver.bf_orders', current_date, current_date)$$,
                 '42501', NULL, 'or read its plan');
RESET ROLE;

SET ROLE medallion_tap_bf_owner;
SELECT FROM medallion.pause('silver.bf_orders');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date)$$,
                 '55000', 'pipeline "silver.bf_orders" is paused', 'a paused pipeline is refused');
SELECT FROM medallion.resume('silver.bf_orders');

SELECT FROM medallion.alter_pipeline('silver.bf_orders', '{"backfill_max_days": 0}');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date)$$,
                 'MD081', 'backfill of pipeline "silver.bf_orders" covers 1 days, over its budget of 0',
                 'a range over backfill_max_days is refused');
SELECT FROM medallion.alter_pipeline('silver.bf_orders', '{"backfill_max_days": null, "backfill_max_rows": 3}');
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', current_date, current_date)$$,
                 'MD081', 'backfill of pipeline "silver.bf_orders" reads about 5 rows, over its budget of 3',
                 'a range over backfill_max_rows is refused');
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.bf_orders', '{"backfill_max_rows": "many"}')$$,
                 '22P02', NULL, 'backfill_max_rows must be a number');

-- Dry run and plan ----------------------------------------------------------------------------

SELECT is(medallion.backfill('silver.bf_orders', current_date - 1, current_date, dry_run => true,
                             options => '{"force": true}'), NULL, 'a dry run returns NULL');
SELECT is((SELECT count(*)::int FROM medallion.runs WHERE pipeline = 'silver.bf_orders' AND kind = 'backfill'), 0,
          'and records no run');
SELECT results_eq($$SELECT day, est_rows, action FROM medallion.backfill_plan('silver.bf_orders', current_date - 1, current_date)$$,
                  $$VALUES (current_date - 1, 0::bigint, 'skip'), (current_date, 5::bigint, 'recompute')$$,
                  'the plan lists each ingestion day with its bronze rows: a day without rows is skipped');
SELECT results_eq($$SELECT day, action FROM medallion.backfill_plan('silver.bf_orders', NULL, NULL)$$,
                  $$SELECT d::date, CASE WHEN d::date = current_date THEN 'recompute' ELSE 'skip' END
                    FROM generate_series(current_date, current_date + 3, '1 day') d$$,
                  'NULL dates: every day bronze holds');
SELECT FROM medallion.alter_pipeline('silver.bf_orders', '{"backfill_max_rows": null}');

-- A range without rows changes nothing ---------------------------------------------------------

SELECT isnt(medallion.backfill('silver.bf_orders', current_date - 3, current_date - 1), NULL,
            'a backfill of days without rows runs');
SELECT results_eq($$SELECT kind, status, rows_read, detail->>'strategy', detail->'range'
                    FROM pg_temp.last_run('silver.bf_orders')$$,
                  $$VALUES ('backfill', 'succeeded', 0::bigint, 'partition',
                            jsonb_build_array(current_date - 3, current_date - 1))$$,
                  'it is a run of kind backfill, strategy and range in detail, that read nothing');

-- A contract change reaches history -----------------------------------------------------------

SELECT FROM medallion.alter_contract('silver.bf_orders',
    '{"status": {"type": "text", "accepted": ["new", "paid", "shipped"]}, "currency": {"type": "text", "default": "EUR"}}');
SELECT FROM medallion.run('silver.bf_orders');
SELECT results_eq($$SELECT id, currency FROM silver.bf_orders ORDER BY id$$,
                  $$VALUES (1::bigint, NULL::text), (3, NULL)$$, 'an incremental run does not rewrite history');

SELECT isnt(medallion.backfill('silver.bf_orders', current_date, current_date), NULL, 'a backfill of today');
SELECT results_eq($$SELECT id, v, status, currency FROM silver.bf_orders ORDER BY id$$,
                  $$VALUES (1::bigint, 2, 'paid', 'EUR'), (2, 1, 'shipped', 'EUR'), (3, 1, 'new', 'EUR')$$,
                  'history is recomputed under the new contract: newest version wins, the row that now passes loads');
SELECT results_eq($$SELECT key, reprocessed FROM bf_dlq ORDER BY key$$,
                  $$VALUES ('2', true), ('4', false)$$,
                  'the DLQ row that now passes leaves the DLQ; the one still failing stays');
SELECT results_eq($$SELECT status, rows_read, rows_inserted, rows_dlq FROM pg_temp.last_run('silver.bf_orders')$$,
                  $$VALUES ('succeeded', 5::bigint, 3::bigint, 0::bigint)$$,
                  'the run read every version, wrote three keys, and counts no dead letter (the row still failing was in the DLQ already)');

SELECT isnt(medallion.backfill('silver.bf_orders', current_date, current_date), NULL, 'the same backfill again');
SELECT results_eq($$SELECT id, v, status, currency FROM silver.bf_orders ORDER BY id$$,
                  $$VALUES (1::bigint, 2, 'paid', 'EUR'), (2, 1, 'shipped', 'EUR'), (3, 1, 'new', 'EUR')$$,
                  'changes nothing');
SELECT is((SELECT count(*)::int FROM bf_dlq), 2,
          'and adds no DLQ row');

-- Rows that now fail: in the DLQ once; a key with no valid version left removed -----------------

SELECT FROM medallion.alter_contract('silver.bf_orders', '{"status": {"type": "text", "accepted": ["new", "shipped"]}}');
SELECT isnt(medallion.backfill('silver.bf_orders', current_date, current_date), NULL, 'a backfill under a narrower contract');
SELECT results_eq($$SELECT id, v, status FROM silver.bf_orders ORDER BY id$$,
                  $$VALUES (1::bigint, 1, 'new'), (2, 1, 'shipped'), (3, 1, 'new')$$,
                  'a key whose newest version now fails falls back to its newest valid one');
SELECT is((SELECT count(*)::int FROM bf_dlq WHERE NOT reprocessed AND status = 'paid'), 1,
          'the version that now fails is in the DLQ once');
SELECT isnt(medallion.backfill('silver.bf_orders', current_date, current_date), NULL, 'again');
SELECT is((SELECT count(*)::int FROM bf_dlq WHERE NOT reprocessed AND status = 'paid'), 1,
          'still once');

SELECT FROM medallion.alter_contract('silver.bf_orders', '{"status": {"type": "text", "accepted": ["new"]}}');
SELECT isnt(medallion.backfill('silver.bf_orders', NULL, NULL), NULL, 'a backfill of the whole history');
SELECT results_eq($$SELECT id FROM silver.bf_orders ORDER BY id$$, $$VALUES (1::bigint), (3)$$,
                  'a key with no valid version left is removed');
SELECT is((pg_temp.last_run('silver.bf_orders')).detail->'range', 'null'::jsonb, 'the whole history has a null range');

-- full: the whole history; rows whose bronze retention dropped are refused, or carried over -----

RESET ROLE;
SET LOCAL medallion.allow_bronze_changes = on;
DELETE FROM bronze.bf_raw WHERE _raw->>'id' = '3';
SET LOCAL medallion.allow_bronze_changes = off;
SET ROLE medallion_tap_bf_owner;
SELECT throws_ok($$SELECT medallion.backfill('silver.bf_orders', NULL, NULL, 'full')$$,
                 'MD082', '1 rows of silver.bf_orders were made from bronze rows that are no longer retained',
                 'a full rebuild that cannot recompute a row is refused');
SELECT isnt(medallion.backfill('silver.bf_orders', NULL, NULL, 'full', options => '{"force": true}'), NULL,
            'forced, it runs');
SELECT results_eq($$SELECT id, v, status FROM silver.bf_orders ORDER BY id$$,
                  $$VALUES (1::bigint, 1, 'new'), (3, 1, 'new')$$, 'the row without bronze is carried over');
SELECT results_eq($$SELECT kind, status, detail->>'strategy', detail->>'forced' FROM pg_temp.last_run('silver.bf_orders')$$,
                  $$VALUES ('backfill', 'succeeded', 'full', 'true')$$, 'recorded as a forced full backfill');

-- async: the days queued, the run id returned at once -------------------------------------------

CREATE TEMP TABLE bf_async AS
    SELECT medallion.backfill('silver.bf_orders', current_date - 1, current_date, options => '{"async": true}') AS run_id;
SELECT results_eq($$SELECT status, detail->>'async' FROM medallion.runs WHERE run_id = (SELECT run_id FROM bf_async)$$,
                  $$VALUES ('running', 'true')$$, 'an async backfill is recorded running at once');
SELECT results_eq($$SELECT day, done_at IS NULL FROM medallion.backfills WHERE run_id = (SELECT run_id FROM bf_async)$$,
                  $$VALUES (current_date, true)$$, 'its days with rows are queued, not done');
SELECT is(medallion.backfill('silver.bf_orders', current_date - 1, current_date, options => '{"async": true}'),
          (SELECT run_id FROM bf_async), 'asking again returns the same run');

-- Gold: the range's partitions recomputed ---------------------------------------------------------

RESET ROLE;
DELETE FROM gold.bf_daily;
INSERT INTO gold.bf_daily VALUES ('2024-01-01', 99, 99), ('2024-01-02', 99, 99);
SET ROLE medallion_tap_bf_owner;
SELECT isnt(medallion.backfill('gold.bf_daily', '2024-01-01', '2024-01-01'), NULL, 'a backfill of a gold model');
SELECT results_eq($$SELECT day, orders, revenue FROM gold.bf_daily ORDER BY day$$,
                  $$VALUES ('2024-01-01'::date, 1::bigint, 10::numeric), ('2024-01-02', 99, 99)$$,
                  'the partitions of the range are recomputed from the query; the others are left alone');
SELECT results_eq($$SELECT kind, status, detail->>'whole_model' FROM pg_temp.last_run('gold.bf_daily')$$,
                  $$VALUES ('backfill', 'succeeded', 'false')$$, 'recorded as a backfill of partitions');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
