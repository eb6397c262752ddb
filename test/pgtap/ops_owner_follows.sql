-- A pipeline's owner follows its table: ALTER TABLE ... OWNER TO re-owns the pipeline
-- (medallion.pipelines.owner), and an ALTER TABLE of another table does not touch the catalog
-- (the event trigger looks at the relations the command touched only); REASSIGN OWNED fires
-- no event trigger: the ProcessUtility hook re-owns the pipelines; and the role that owns a
-- pipeline's table cannot be dropped, so no pipeline is left with a dangling owner.
BEGIN;
SELECT plan(8);

CREATE ROLE medallion_tap_of_a NOLOGIN;
CREATE ROLE medallion_tap_of_b NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_of_a;
SET ROLE medallion_tap_of_a;
SELECT FROM medallion.create_bronze('of_src', 'crm');
SELECT FROM medallion.create_silver('of_s', 'bronze.of_src', '{"id": "int"}', ARRAY['id']);
RESET ROLE;

SELECT is((SELECT owner::text FROM medallion.pipelines WHERE name = 'silver.of_s'), 'medallion_tap_of_a', 'the creator owns it');
ALTER TABLE silver.of_s OWNER TO medallion_tap_of_b;
SELECT is((SELECT owner::text FROM medallion.pipelines WHERE name = 'silver.of_s'), 'medallion_tap_of_b',
          'ALTER TABLE ... OWNER TO re-owns the pipeline');
SELECT is((SELECT owner::text FROM medallion.pipelines WHERE name = 'bronze.of_src'), 'medallion_tap_of_a',
          'and only that pipeline');

-- an ALTER TABLE of an unrelated table leaves the catalog alone: a row made out of line
-- by hand (what 0.2.0's first trigger brought in line at every ALTER TABLE) stays as it is
UPDATE medallion.pipelines SET owner = 'medallion_tap_of_b' WHERE name = 'bronze.of_src';
SELECT set_config('of.xmin', (SELECT xmin::text FROM medallion.pipelines WHERE name = 'bronze.of_src'), true);
CREATE TABLE pg_temp.of_any (x int);
ALTER TABLE pg_temp.of_any ADD COLUMN y int;
ALTER TABLE silver.of_s ADD COLUMN note text;
SELECT is((SELECT xmin::text || ' ' || owner FROM medallion.pipelines WHERE name = 'bronze.of_src'),
          current_setting('of.xmin') || ' medallion_tap_of_b',
          'an ALTER TABLE of another table does not touch a pipeline''s catalog row');
ALTER TABLE bronze.of_src ADD COLUMN note text;
SELECT is((SELECT owner::text FROM medallion.pipelines WHERE name = 'bronze.of_src'), 'medallion_tap_of_a',
          'an ALTER TABLE of its own table brings it in line');

REASSIGN OWNED BY medallion_tap_of_a TO medallion_tap_of_b;
SELECT is((SELECT owner::text FROM medallion.pipelines WHERE name = 'bronze.of_src'), 'medallion_tap_of_b',
          'REASSIGN OWNED re-owns the pipelines of the tables it moved, at once');
SELECT is((SELECT count(*) FROM medallion.pipelines WHERE name LIKE '%.of\_%' AND owner <> 'medallion_tap_of_b'), 0::bigint,
          'all of them');
SELECT throws_ok('DROP ROLE medallion_tap_of_b', '2BP01', NULL,
                 'a role that owns a pipeline''s table cannot be dropped (no dangling owner)');

SELECT * FROM finish();
ROLLBACK;
