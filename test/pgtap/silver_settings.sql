-- The settings that change results are pinned for a run (TimeZone UTC, DateStyle,
-- search_path...), whatever the caller's session says, so that a run from psql and one from a
-- background worker give the same rows; options.settings can set them per pipeline. The
-- caller's settings are back after the run, failed or not.
BEGIN;
SELECT plan(13);

CREATE FUNCTION public.tap_tag(t text) RETURNS text LANGUAGE sql AS $$ SELECT 'public:' || t $$;
CREATE SCHEMA tap_shadow;
CREATE FUNCTION tap_shadow.tap_tag(t text) RETURNS text LANGUAGE sql AS $$ SELECT 'shadow:' || t $$;

SELECT FROM medallion.create_bronze('ticks', 'feed');
SELECT FROM medallion.create_silver('ticks_paris', 'bronze.ticks',
    '{"id": "bigint",
      "at": {"type": "timestamptz"},
      "hour": {"path": "at", "type": "text", "expr": "to_char(at, ''YYYY-MM-DD HH24'')"},
      "day": {"path": "at", "type": "date", "expr": "at::date"},
      "local_day": {"path": "local", "type": "date"},
      "tag": {"type": "text", "expr": "tap_tag(tag)"}}',
    ARRAY['id']);
SELECT FROM medallion.create_silver('ticks_utc', 'bronze.ticks',
    '{"id": "bigint",
      "at": {"type": "timestamptz"},
      "hour": {"path": "at", "type": "text", "expr": "to_char(at, ''YYYY-MM-DD HH24'')"},
      "day": {"path": "at", "type": "date", "expr": "at::date"},
      "local_day": {"path": "local", "type": "date"},
      "tag": {"type": "text", "expr": "tap_tag(tag)"}}',
    ARRAY['id']);
SELECT FROM medallion.create_silver('ticks_ny', 'bronze.ticks',
    '{"id": "bigint", "at": {"type": "timestamptz"},
      "hour": {"path": "at", "type": "text", "expr": "to_char(at, ''YYYY-MM-DD HH24'')"}}',
    ARRAY['id'], NULL, '{"settings": {"TimeZone": "America/New_York"}}');

SELECT FROM medallion.ingest('bronze.ticks', $$[
    {"id": 1, "at": "2025-01-10T23:30:00", "local": "03/04/05", "tag": "a"},
    {"id": 2, "at": "2025-07-01 00:15:00+02", "local": "2025-04-03", "tag": "b"}]$$);

SET LOCAL TimeZone = 'Europe/Paris';
SET LOCAL DateStyle = 'SQL, DMY';
SET LOCAL search_path = tap_shadow, public;
SELECT ok(medallion.run('silver.ticks_paris') IS NOT NULL, 'a run from a Europe/Paris, SQL/DMY session');
SELECT is(current_setting('TimeZone'), 'Europe/Paris', 'the caller''s TimeZone is back after the run');
SELECT is(current_setting('DateStyle'), 'SQL, DMY', 'so is its DateStyle');
SELECT is(current_setting('search_path'), 'tap_shadow, public', 'and its search_path');
RESET TimeZone;
RESET DateStyle;
RESET search_path;
SET LOCAL TimeZone = 'UTC';
SELECT FROM medallion.run('silver.ticks_utc');

SELECT results_eq($$SELECT id, at, hour, day, local_day, tag FROM silver.ticks_paris ORDER BY id$$,
                  $$SELECT id, at, hour, day, local_day, tag FROM silver.ticks_utc ORDER BY id$$,
                  'a run from a Europe/Paris, DMY session gives the same rows as one from UTC');
SELECT results_eq($$SELECT id, at, hour, day FROM silver.ticks_paris ORDER BY id$$,
                  $$VALUES (1::bigint, '2025-01-10 23:30:00+00'::timestamptz, '2025-01-10 23', '2025-01-10'::date),
                           (2, '2025-06-30 22:15:00+00', '2025-06-30 22', '2025-06-30')$$,
                  'a timestamp without offset is read as UTC; to_char and ::date work in UTC');
SELECT is((SELECT local_day FROM silver.ticks_paris WHERE id = 1), '2003-04-05'::date,
          'dates are read with the pinned DateStyle (ISO, YMD), not the caller''s DMY');
SELECT is((SELECT tag FROM silver.ticks_paris WHERE id = 1), 'public:a',
          'functions resolve with the pinned search_path, not the caller''s');

SELECT FROM medallion.run('silver.ticks_ny');
SELECT results_eq($$SELECT id, hour FROM silver.ticks_ny ORDER BY id$$,
                  $$VALUES (1::bigint, '2025-01-10 23'), (2, '2025-06-30 18')$$,
                  'options.settings pins another TimeZone for one pipeline');
SELECT is((SELECT at FROM silver.ticks_ny WHERE id = 1), '2025-01-11 04:30:00+00'::timestamptz,
          'and a timestamp without offset is read in it');

-- after a failed run the caller's settings are back too
ALTER TABLE silver.ticks_utc ADD CONSTRAINT small_ids CHECK (id < 3);
SELECT FROM medallion.ingest('bronze.ticks', '[{"id": 3, "at": "2025-01-01T00:00:00"}]');
SET LOCAL TimeZone = 'Asia/Tokyo';
SELECT ok(medallion.run('silver.ticks_utc') IS NOT NULL, 'a failing run from an Asia/Tokyo session');
SELECT is(current_setting('TimeZone'), 'Asia/Tokyo', 'after a failed run the caller''s TimeZone is back');
SELECT is((SELECT status FROM medallion.runs WHERE pipeline = 'silver.ticks_utc' ORDER BY run_id DESC LIMIT 1), 'failed',
          'the run did fail');

SELECT * FROM finish();
ROLLBACK;
