-- medallion.apply_retention(): drops the partitions of days wholly older than
-- their table's retention, keeps the rest, and touches only the tables the
-- caller may manage.  (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(16);

-- Attaches to bronze.<tbl> the partition of one UTC day, holding one row.
CREATE FUNCTION pg_temp.old_day(tbl text, day date) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE bronze.%I (LIKE bronze.%I INCLUDING DEFAULTS)',
                   tbl || '_p' || to_char(day, 'YYYYMMDD'), tbl);
    EXECUTE format('ALTER TABLE bronze.%I ATTACH PARTITION bronze.%I FOR VALUES FROM (%L) TO (%L)',
                   tbl, tbl || '_p' || to_char(day, 'YYYYMMDD'),
                   day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
    EXECUTE format('INSERT INTO bronze.%I (_raw, _ingested_at) VALUES (%L, %L)',
                   tbl, jsonb_build_object('day', day), day::text || ' 12:00:00+00');
END $$;
CREATE FUNCTION pg_temp.days(tbl text) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = format('bronze.%I', tbl)::regclass ORDER BY 1
$$;
CREATE TEMP TABLE utc AS SELECT (now() AT TIME ZONE 'UTC')::date AS today;

SELECT FROM medallion.create_bronze('logs', 'web', '30 days');
SELECT FROM medallion.ingest('bronze.logs', '{"fresh": true}', 'today');
SELECT FROM pg_temp.old_day('logs', '2020-01-01');
SELECT FROM pg_temp.old_day('logs', (SELECT today - 31 FROM utc));   -- ended 30 days ago: past retention
SELECT FROM pg_temp.old_day('logs', (SELECT today - 30 FROM utc));   -- partly within the last 30 days

SELECT FROM medallion.create_bronze('archive', 'web', NULL);
SELECT FROM pg_temp.old_day('archive', '2020-01-01');

SELECT FROM medallion.create_bronze('yearly', 'web', '100 years');
SELECT FROM pg_temp.old_day('yearly', '2020-01-01');

CREATE ROLE medallion_tap_keeper NOLOGIN;
GRANT CREATE ON SCHEMA bronze TO medallion_tap_keeper;
SET ROLE medallion_tap_keeper;
SELECT FROM medallion.create_bronze('theirs', 'web', '1 day');
DO $$ BEGIN PERFORM pg_temp.old_day('theirs', '2020-01-01'); END $$;
SELECT is((SELECT count(*)::int FROM bronze.theirs), 1, 'the role''s table holds an old row');

-- As the role: only its own table -----------------------------------------------------------

SELECT is(medallion.apply_retention(), 1::bigint, 'a role''s apply_retention drops one partition');
RESET ROLE;
SELECT ok(to_regclass('bronze.theirs_p20200101') IS NULL, 'the old partition of its own table');
SELECT ok(to_regclass('bronze.logs_p20200101') IS NOT NULL,
          'not the partitions of tables it does not own');
SELECT is((SELECT count(*)::int FROM bronze.theirs), 0, 'the role''s old row is gone');

-- As the superuser: every table ------------------------------------------------------------

SELECT is(medallion.apply_retention(), 2::bigint, 'the superuser''s apply_retention drops the rest');
SELECT ok(to_regclass('bronze.logs_p20200101') IS NULL, 'a partition years old is dropped');
SELECT ok(to_regclass(format('bronze.%I', 'logs_p' || to_char((SELECT today - 31 FROM utc), 'YYYYMMDD'))) IS NULL,
          'the day that ended more than the retention ago is dropped');
SELECT ok(to_regclass(format('bronze.%I', 'logs_p' || to_char((SELECT today - 30 FROM utc), 'YYYYMMDD'))) IS NOT NULL,
          'the next day, partly within the retention, is kept');
SELECT is((SELECT count(*)::int FROM pg_temp.days('logs')), 5,
          'today''s and the premade partitions are kept');
SELECT results_eq(
    $$SELECT _raw FROM bronze.logs ORDER BY _ingested_at$$,
    $$SELECT jsonb_build_object('day', today - 30) FROM utc UNION ALL SELECT '{"fresh": true}'::jsonb$$,
    'rows within the retention are kept, older ones are gone');
SELECT ok(to_regclass('bronze.archive_p20200101') IS NOT NULL,
          'a table without retention keeps its rows forever');
SELECT ok(to_regclass('bronze.yearly_p20200101') IS NOT NULL,
          'a table whose retention has not passed keeps them');
SELECT is((SELECT count(*)::int FROM bronze.archive) + (SELECT count(*)::int FROM bronze.yearly), 2,
          'with their rows');

SELECT is(medallion.apply_retention(), 0::bigint, 'a second run has nothing to drop');
SELECT ok(EXISTS (SELECT FROM medallion.pipelines WHERE name = 'bronze.logs')
          AND to_regclass('bronze.logs') IS NOT NULL,
          'retention drops partitions, never the table or its pipeline');

SELECT * FROM finish();
ROLLBACK;
