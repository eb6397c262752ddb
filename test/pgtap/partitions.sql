-- Daily partitions: today's (UTC) and medallion.premake_days more exist, so
-- any writer's plain INSERT works; ingestion and capture recreate a missing
-- day.  (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(16);

CREATE FUNCTION pg_temp.parts(tbl text) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = format('bronze.%I', tbl)::regclass ORDER BY 1
$$;
CREATE FUNCTION pg_temp.expected(tbl text, days int) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT tbl || '_p' || to_char((now() AT TIME ZONE 'UTC')::date + d, 'YYYYMMDD')
    FROM generate_series(0, days) d ORDER BY 1
$$;
CREATE TEMP TABLE today AS
SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') AS day;

SET LOCAL medallion.premake_days = 3;
SELECT FROM medallion.create_bronze('clicks', 'web');
SELECT results_eq($$SELECT pg_temp.parts('clicks')$$, $$SELECT pg_temp.expected('clicks', 3)$$,
                  'today''s partition and 3 more days exist, named by UTC day');

-- The UTC day, whatever the session's time zone (at any instant, one of these
-- two zones is on another calendar day than UTC).
SET LOCAL TimeZone = 'Pacific/Kiritimati';
SELECT FROM medallion.create_bronze('clicks_east', 'web');
SET LOCAL TimeZone = 'Pacific/Pago_Pago';
SELECT FROM medallion.create_bronze('clicks_west', 'web');
RESET TimeZone;
SELECT results_eq(
    $$SELECT pg_temp.parts('clicks_east') UNION ALL SELECT pg_temp.parts('clicks_west')$$,
    $$SELECT pg_temp.expected('clicks_east', 3) UNION ALL SELECT pg_temp.expected('clicks_west', 3)$$,
    'partitions follow the UTC day in sessions at UTC+14 and UTC-11');

SELECT is(medallion.ingest('bronze.clicks', '{"n": 1}', 'c1'), 1::bigint, 'a row lands');
SELECT is((SELECT tableoid::regclass::text FROM bronze.clicks), 'bronze.clicks_p' || (SELECT day FROM today),
          'in today''s partition');

SET LOCAL medallion.premake_days = 6;
SELECT FROM medallion.ingest('bronze.clicks', '{"n": 2}', 'c2');
SELECT results_eq($$SELECT pg_temp.parts('clicks')$$, $$SELECT pg_temp.expected('clicks', 6)$$,
                  'raising medallion.premake_days makes the next ingest premake more days');
SET LOCAL medallion.premake_days = 3;

-- A missing day -----------------------------------------------------------------------------

SELECT lives_ok(format('DROP TABLE bronze.%I', 'clicks_p' || (SELECT day FROM today)),
                'today''s partition can be dropped');
SELECT throws_ok($$INSERT INTO bronze.clicks (_raw) VALUES ('{"n": 3}')$$, '23514', NULL,
                 'then a plain INSERT finds no partition');
SELECT is(medallion.ingest('bronze.clicks', '{"n": 4}', 'c4'), 1::bigint,
          'but ingest recreates the day and lands');
SELECT results_eq($$SELECT pg_temp.parts('clicks')$$, $$SELECT pg_temp.expected('clicks', 6)$$,
                  'the partition is back');
SELECT lives_ok($$INSERT INTO bronze.clicks (_raw) VALUES ('{"n": 5}')$$,
                'and plain INSERTs work again');
SELECT throws_ok(format('TRUNCATE bronze.%I', 'clicks_p' || (SELECT day FROM today)), '55000', NULL,
                 'the recreated partition refuses TRUNCATE');
SELECT throws_ok(format('DELETE FROM bronze.%I', 'clicks_p' || (SELECT day FROM today)), '55000', NULL,
                 'and DELETE');

SELECT lives_ok(format('DROP TABLE bronze.%I', 'clicks_p' || to_char((now() AT TIME ZONE 'UTC')::date + 2, 'YYYYMMDD')),
                'a premade day can be dropped');
SELECT FROM medallion.ingest_text('bronze.clicks', '{"n": 6}', 'ndjson', 'c6');
SELECT results_eq($$SELECT pg_temp.parts('clicks')$$, $$SELECT pg_temp.expected('clicks', 6)$$,
                  'ingest_text premakes it again');

-- Capture, too, recreates the day before it writes.
CREATE TABLE public.visits (id int);
SELECT FROM medallion.capture('public.visits');
SELECT lives_ok(format('DROP TABLE bronze.%I', 'visits_p' || (SELECT day FROM today)),
                'today''s partition of a capture can be dropped');
INSERT INTO public.visits VALUES (1);
SELECT is((SELECT tableoid::regclass::text FROM bronze.visits), 'bronze.visits_p' || (SELECT day FROM today),
          'the captured change recreated it and landed there');

SELECT * FROM finish();
ROLLBACK;
