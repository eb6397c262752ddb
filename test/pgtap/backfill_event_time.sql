-- Contract option event_time: a date, timestamp or timestamptz column of the contract (checked by
-- create_silver and alter_contract, 22023 otherwise). Silver backfill ranges then select keys by
-- their typed event time instead of their ingestion day (all versions of those keys are read), and
-- backfill_plan() estimates each day from the silver rows whose event time falls on it.
BEGIN;
SELECT plan(11);

CREATE ROLE medallion_tap_et_owner NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_et_owner;

SET ROLE medallion_tap_et_owner;
SELECT FROM medallion.create_bronze('et_raw', 'shop');
SELECT throws_ok($$SELECT medallion.create_silver('et_bad', 'bronze.et_raw', '{"id": "int", "at": "timestamptz"}',
                                                  ARRAY['id'], NULL, '{"event_time": "nope"}')$$,
                 '22023', 'invalid silver definition', 'an event_time naming no column is refused');
SELECT throws_ok($$SELECT medallion.create_silver('et_bad', 'bronze.et_raw', '{"id": "int", "at": "text"}',
                                                  ARRAY['id'], NULL, '{"event_time": "at"}')$$,
                 '22023', 'invalid contract for column "at"', 'an event_time column of type text is refused');
SELECT throws_ok($$SELECT medallion.create_silver('et_bad', 'bronze.et_raw', '{"id": "int", "at": "date"}',
                                                  ARRAY['id'], NULL, '{"event_time": 1}')$$,
                 '22023', 'invalid silver definition', 'an event_time that is not a name is refused');
SELECT lives_ok($$SELECT medallion.create_silver('et_orders', 'bronze.et_raw',
                    '{"id": "int", "v": "int", "ordered_at": "timestamptz"}', ARRAY['id'], 'v',
                    '{"event_time": "ordered_at", "compatibility": "none"}')$$,
                'a timestamptz event_time column is accepted');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.et_orders', NULL, '{"event_time": "v"}')$$,
                 '22023', 'invalid contract for column "v"', 'alter_contract refuses an int event_time column');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.et_orders', '{"ordered_at": null}')$$,
                 '22023', 'invalid silver definition', 'alter_contract refuses to remove the event_time column');
SELECT FROM medallion.ingest('bronze.et_raw', $$[
    {"id": 1, "v": 1, "ordered_at": "2024-01-01T10:00:00Z"},
    {"id": 2, "v": 1, "ordered_at": "2024-01-02T10:00:00Z"},
    {"id": 3, "v": 1, "ordered_at": "2024-01-01T23:30:00Z"},
    {"id": 3, "v": 2, "ordered_at": "2024-01-05T10:00:00Z"}
]$$);
SELECT FROM medallion.run('silver.et_orders');

SELECT results_eq($$SELECT day, est_rows, action FROM medallion.backfill_plan('silver.et_orders', '2024-01-01', '2024-01-02')$$,
                  $$VALUES ('2024-01-01'::date, 1::bigint, 'recompute'), ('2024-01-02', 1, 'recompute')$$,
                  'the plan has the event days of the range, each estimated from silver');

-- A contract change backfilled by event time
SELECT FROM medallion.alter_contract('silver.et_orders', '{"note": {"type": "text", "default": "fixed"}}');
SELECT isnt(medallion.backfill('silver.et_orders', '2024-01-01', '2024-01-01'), NULL, 'a backfill of event day 2024-01-01');
SELECT results_eq($$SELECT id, v, note FROM silver.et_orders ORDER BY id$$,
                  $$VALUES (1, 1, 'fixed'), (2, 1, NULL), (3, 2, 'fixed')$$,
                  'the keys with a version on that event day are recomputed (key 3 from its newest version), the others not');
SELECT is((SELECT rows_read FROM medallion.runs WHERE pipeline = 'silver.et_orders' ORDER BY run_id DESC LIMIT 1),
          3::bigint, 'every version of those keys was read');
SELECT is((SELECT detail->'range' FROM medallion.runs WHERE pipeline = 'silver.et_orders' ORDER BY run_id DESC LIMIT 1),
          '["2024-01-01", "2024-01-01"]'::jsonb, 'the range is recorded');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
