-- Privileges: a role without grants cannot define bronze tables, ingest, or
-- read dead letters; defining needs CREATE on schema bronze, ingesting needs
-- INSERT on the table, and the DLQ shows each role its own pipelines only.
-- (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(22);

CREATE ROLE medallion_tap_nobody NOLOGIN;
CREATE ROLE medallion_tap_builder NOLOGIN;
CREATE ROLE medallion_tap_feeder NOLOGIN;
CREATE ROLE medallion_tap_team NOLOGIN;
GRANT medallion_tap_builder TO medallion_tap_team;

SELECT FROM medallion.create_bronze('admin_feed', 'ops');
SELECT FROM medallion.ingest_text('bronze.admin_feed', E'{"secret": "s3cr3t"}\nnot json, ssn 123-45-6789', 'ndjson', 'a1');

-- A role without grants -------------------------------------------------------------------

SET ROLE medallion_tap_nobody;
SELECT throws_ok($$SELECT medallion.create_bronze('nobodys', 'x')$$, '42501', NULL,
                 'without CREATE on schema bronze, create_bronze is refused');
SELECT throws_ok($$SELECT medallion.ingest('bronze.admin_feed', '{}')$$, '42501', NULL,
                 'without INSERT, ingest is refused');
SELECT throws_ok($$SELECT medallion.ingest_text('bronze.admin_feed', '{}')$$, '42501', NULL,
                 'without INSERT, ingest_text is refused');
SELECT throws_ok($$SELECT medallion.capture('medallion.pipelines')$$, '42501', NULL,
                 'capture of a table it does not own is refused');
SELECT throws_ok($$SELECT * FROM bronze.admin_feed$$, '42501', NULL,
                 'bronze rows are not readable without SELECT');
SELECT is((SELECT count(*)::int FROM medallion.dlq), 0,
          'the DLQ shows it no row of a pipeline it does not own');
SELECT throws_ok($$INSERT INTO medallion.dlq (pipeline, error_message, error_type) VALUES ('bronze.admin_feed', 'x', 'parse')$$,
                 '42501', NULL, 'it cannot write the DLQ directly');
SELECT throws_ok($$UPDATE medallion.pipelines SET owner = current_user$$, '42501', NULL,
                 'nor change the catalog');
SELECT throws_ok($$INSERT INTO medallion.batches (pipeline, batch_id) VALUES ('bronze.admin_feed', 'next')$$,
                 '42501', NULL, 'nor claim batches by hand');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'bronze.admin_feed'), 1,
          'the DLQ row it could not see does exist');

-- A builder: CREATE on schema bronze --------------------------------------------------------

GRANT CREATE ON SCHEMA bronze TO medallion_tap_builder;
SET ROLE medallion_tap_builder;
SELECT is(medallion.create_bronze('builders', 'crm')::text, 'bronze.builders',
          'with CREATE on schema bronze a role defines a bronze table');
SELECT is(medallion.ingest_text('bronze.builders', E'{"ok": 1}\n{oops}', 'ndjson', 'b1'), 1::bigint,
          'and ingests into it');
SELECT results_eq($$SELECT pipeline, original_payload FROM medallion.dlq$$,
                  $$VALUES ('bronze.builders', '{oops}')$$,
                  'it reads the dead letters of its own pipeline, and only those');
RESET ROLE;
SELECT results_eq(
    $$SELECT (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'bronze.builders'::regclass),
             (SELECT owner::text FROM medallion.pipelines WHERE name = 'bronze.builders')$$,
    $$VALUES ('medallion_tap_builder', 'medallion_tap_builder')$$,
    'the role owns the table and the pipeline');

SET ROLE medallion_tap_team;
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'bronze.builders'), 1,
          'a member of the owning role sees the pipeline''s dead letters too');
RESET ROLE;

-- A feeder: INSERT on one bronze table ------------------------------------------------------

SET ROLE medallion_tap_builder;
GRANT INSERT ON bronze.builders TO medallion_tap_feeder;
RESET ROLE;
SET ROLE medallion_tap_feeder;
SELECT is(medallion.ingest_text('bronze.builders', E'{"fed": 1}\n[not an object]', 'ndjson', 'f1'), 1::bigint,
          'a role granted INSERT ingests');
SELECT is(medallion.ingest('bronze.builders', '{"fed": 2}', 'f2'), 1::bigint,
          'with ingest() too');
SELECT is((SELECT count(*)::int FROM medallion.dlq), 0,
          'its bad records went to the owner''s DLQ, which it cannot read');
SELECT throws_ok($$SELECT medallion.ingest('bronze.admin_feed', '{}')$$, '42501', NULL,
                 'INSERT on one bronze table grants nothing on another');
RESET ROLE;
SELECT results_eq(
    $$SELECT batch_id, original_payload FROM medallion.dlq WHERE pipeline = 'bronze.builders' ORDER BY id$$,
    $$VALUES ('b1', '{oops}'), ('f1', '[not an object]')$$,
    'the feeder''s dead letter is recorded under the pipeline');

-- Partitions a feeder causes are created as the table's owner.
DO $$ BEGIN
    EXECUTE format('DROP TABLE bronze.%I', 'builders_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD'));
END $$;
SET ROLE medallion_tap_feeder;
SELECT is(medallion.ingest('bronze.builders', '{"fed": 3}', 'f3'), 1::bigint,
          'a feeder''s ingest recreates a missing partition');
RESET ROLE;
SELECT is((SELECT relowner::regrole::text FROM pg_class
           WHERE relname = 'builders_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')),
          'medallion_tap_builder', 'owned by the table''s owner, not by the feeder');

SELECT * FROM finish();
ROLLBACK;
