-- A pipeline's owner follows its table: ALTER TABLE ... OWNER TO re-owns the pipeline
-- (medallion.pipelines.owner); REASSIGN OWNED fires no event trigger, and the next ALTER TABLE
-- in the database brings its pipelines in line; and the role that owns a pipeline's table
-- cannot be dropped, so no pipeline is left with a dangling owner.
BEGIN;
SELECT plan(5);

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
REASSIGN OWNED BY medallion_tap_of_a TO medallion_tap_of_b;
CREATE TABLE pg_temp.of_any (x int);
ALTER TABLE pg_temp.of_any ADD COLUMN y int;
SELECT is((SELECT owner::text FROM medallion.pipelines WHERE name = 'bronze.of_src'), 'medallion_tap_of_b',
          'after REASSIGN OWNED, the next ALTER TABLE re-owns the pipelines of the tables it moved');
SELECT throws_ok('DROP ROLE medallion_tap_of_b', '2BP01', NULL,
                 'a role that owns a pipeline''s table cannot be dropped (no dangling owner)');

SELECT * FROM finish();
ROLLBACK;
