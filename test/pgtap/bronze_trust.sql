-- Bronze never runs a role's code as another role: apply_retention() finds
-- partitions by OID and reads them as their table's owner (a view named like
-- a partition is never read), partition CHECKs qualify their operators, and
-- a writer's session setting cannot premake partitions without bound.
-- (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(12);

-- Who ran the hostile code, as which role.
CREATE TABLE public.bronze_tap_calls (who name, what text);
GRANT INSERT ON public.bronze_tap_calls TO PUBLIC;

-- A spoofed partition ------------------------------------------------------------------------
-- The spoofer attaches a real partition from her own schema, then puts in bronze a view
-- with the partition's name that calls her function.

CREATE ROLE medallion_tap_spoofer NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_spoofer;
CREATE SCHEMA spoof_tap AUTHORIZATION medallion_tap_spoofer;
SET ROLE medallion_tap_spoofer;
SELECT FROM medallion.create_bronze('spoofed', 'web', '1 day');
CREATE TABLE spoof_tap.spoofed_p20200101 (LIKE bronze.spoofed INCLUDING DEFAULTS);
ALTER TABLE bronze.spoofed ATTACH PARTITION spoof_tap.spoofed_p20200101
    FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-01-02 00:00:00+00');
INSERT INTO bronze.spoofed (_raw, _ingested_at) VALUES ('{"id": 1}', '2020-01-01 12:00:00+00');
SELECT FROM medallion.create_silver('spoofed', 'bronze.spoofed', '{"id": "int"}', '{id}');
CREATE FUNCTION spoof_tap.snoop() RETURNS boolean LANGUAGE sql VOLATILE AS
$$ INSERT INTO public.bronze_tap_calls VALUES (current_user, 'view'); SELECT true $$;
CREATE VIEW bronze.spoofed_p20200101 AS
    SELECT _xid, _seq FROM spoof_tap.spoofed_p20200101 WHERE spoof_tap.snoop();
RESET ROLE;

SELECT is(medallion.apply_retention(), 0::bigint,
          'apply_retention() as the superuser drops nothing of the spoofed table');
SELECT is((SELECT count(*)::int FROM public.bronze_tap_calls WHERE who <> 'medallion_tap_spoofer'), 0,
          'the view named like a partition was never read as another role');
SELECT ok(to_regclass('spoof_tap.spoofed_p20200101') IS NOT NULL
          AND to_regclass('bronze.spoofed_p20200101') IS NOT NULL,
          'a partition outside schema bronze is not one of medallion''s: it and the view stay');
SELECT ok(NOT (SELECT rolsuper FROM pg_roles WHERE rolname = 'medallion_tap_spoofer'),
          'the spoofer gained nothing');

-- The owner's own partition in bronze is read as the owner.
SET ROLE medallion_tap_spoofer;
CREATE TABLE bronze.spoofed_p20200102 (LIKE bronze.spoofed INCLUDING DEFAULTS);
ALTER TABLE bronze.spoofed ATTACH PARTITION bronze.spoofed_p20200102
    FOR VALUES FROM ('2020-01-02 00:00:00+00') TO ('2020-01-03 00:00:00+00');
INSERT INTO bronze.spoofed (_raw, _ingested_at) VALUES ('{"id": 2}', '2020-01-02 12:00:00+00');
RESET ROLE;
SELECT is(medallion.apply_retention(), 0::bigint,
          'its own unprocessed partition is kept (the silver pipeline has not run)');
SELECT ok(medallion.run('silver.spoofed') IS NOT NULL, 'the pipeline runs');
SELECT is(medallion.apply_retention(), 1::bigint, 'then its own old partition is dropped');
SELECT ok(to_regclass('bronze.spoofed_p20200102') IS NULL, 'the one in schema bronze');

-- Partition CHECKs qualify their operators ----------------------------------------------------

CREATE ROLE medallion_tap_lurker NOLOGIN;
CREATE SCHEMA lurk_tap AUTHORIZATION medallion_tap_lurker;
SELECT FROM medallion.create_bronze('guarded', 'web');
GRANT INSERT ON bronze.guarded TO medallion_tap_lurker;
SELECT lives_ok(format('DROP TABLE bronze.%I', 'guarded_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')),
                'today''s partition is dropped, so the next writer recreates it');
SET ROLE medallion_tap_lurker;
CREATE FUNCTION lurk_tap.ge(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql VOLATILE AS
$$ INSERT INTO public.bronze_tap_calls VALUES (current_user, '>='); SELECT pg_catalog.timestamptz_ge($1, $2) $$;
CREATE FUNCTION lurk_tap.lt(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql VOLATILE AS
$$ INSERT INTO public.bronze_tap_calls VALUES (current_user, '<'); SELECT pg_catalog.timestamptz_lt($1, $2) $$;
CREATE OPERATOR lurk_tap.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = lurk_tap.ge);
CREATE OPERATOR lurk_tap.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = lurk_tap.lt);
SET LOCAL search_path = lurk_tap, pg_catalog, public;
SELECT FROM medallion.ingest('bronze.guarded', '{"n": 1}');
RESET search_path;
RESET ROLE;
INSERT INTO bronze.guarded (_raw) VALUES ('{"n": 2}');
SELECT is((SELECT count(*)::int FROM public.bronze_tap_calls WHERE who <> 'medallion_tap_lurker'), 0,
          'a look-alike operator on the path of the writer who made the partition runs for no other writer');
SELECT ok(NOT EXISTS (
              SELECT FROM pg_constraint con
              JOIN pg_inherits i ON i.inhrelid = con.conrelid
              JOIN pg_depend d ON d.classid = 'pg_constraint'::regclass AND d.objid = con.oid
              JOIN pg_operator o ON d.refclassid = 'pg_operator'::regclass AND o.oid = d.refobjid
              WHERE i.inhparent = 'bronze.guarded'::regclass
                AND o.oprnamespace <> 'pg_catalog'::regnamespace),
          'the partition CHECK is bound to pg_catalog''s operators');

-- premake_days set by a writer that is not the owner is capped ---------------------------------

SET ROLE medallion_tap_lurker;
DO $$ BEGIN
    PERFORM set_config('medallion.premake_days', '300', true);
EXCEPTION WHEN insufficient_privilege THEN NULL;
END $$;
SELECT FROM medallion.ingest('bronze.guarded', '{"n": 3}');
RESET ROLE;
SELECT cmp_ok((SELECT count(*)::int FROM pg_inherits WHERE inhparent = 'bronze.guarded'::regclass), '<=', 32,
              'a writer that is not the owner premakes at most 31 days');

SELECT * FROM finish();
ROLLBACK;
