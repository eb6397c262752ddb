-- Business documentation in the database: a silver contract's column descriptions and the
-- pipeline's description become COMMENTs on the silver table and its columns; alter_pipeline
-- keeps the table's comment in sync, alter_contract the column comments; a gold model's
-- option columns and description become its table's comments, kept in sync by
-- alter_pipeline; the lineage shows them; the checklist counts the described columns.
BEGIN;
SELECT plan(38);

CREATE FUNCTION tap.doc_attnum(col name) RETURNS int LANGUAGE plpgsql AS
$$ BEGIN RETURN (SELECT attnum FROM pg_attribute WHERE attrelid = 'silver.doc'::regclass AND attname = col); END $$;
CREATE ROLE medallion_tap_doc_owner NOLOGIN;
CREATE ROLE medallion_tap_doc_other NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver, gold TO medallion_tap_doc_owner;
SET ROLE medallion_tap_doc_owner;
SELECT FROM medallion.create_bronze('doc_src', 'crm');
SELECT FROM medallion.create_silver('doc', 'bronze.doc_src',
    '{"id": {"type": "int", "description": "the contact''s id in the CRM"},
      "email": {"type": "text", "description": "where we write to"},
      "age": "int"}',
    ARRAY['id'], NULL, '{"description": "contacts, one row per CRM contact"}');

SELECT is(obj_description('silver.doc'::regclass, 'pg_class'), 'contacts, one row per CRM contact',
          'the pipeline''s description is the table''s comment');
SELECT is(col_description('silver.doc'::regclass, tap.doc_attnum('id')), 'the contact''s id in the CRM',
          'a column''s description is its comment');
SELECT is(col_description('silver.doc'::regclass, tap.doc_attnum('email')), 'where we write to', 'each described column has one');
SELECT is(col_description('silver.doc'::regclass, tap.doc_attnum('age')), NULL, 'a column without a description has none');
SELECT throws_ok($$SELECT medallion.create_silver('doc2', 'bronze.doc_src', '{"id": {"type": "int", "description": 5}}', ARRAY['id'])$$,
                 '22023', NULL, 'a description must be a string');

SELECT FROM medallion.alter_pipeline('silver.doc', '{"description": "CRM contacts, deduplicated"}');
SELECT is(obj_description('silver.doc'::regclass, 'pg_class'), 'CRM contacts, deduplicated',
          'alter_pipeline keeps the table''s comment in sync');
SELECT alike((SELECT detail FROM medallion.checklist('silver.doc') WHERE item = 'documented'),
            '%2 of 3 columns described%', 'the checklist counts the described columns');

-- alter_contract rewrites the column comments in the same transaction --------------------------
SELECT FROM medallion.alter_contract('silver.doc',
    '{"email": {"type": "text", "description": "the address we write to"},
      "age": {"type": "int", "description": "age in years, as told"},
      "id": {"type": "int"},
      "city": {"type": "text", "description": "where the contact lives"}}');
SELECT is(col_description('silver.doc'::regclass, tap.doc_attnum('email')), 'the address we write to',
          'alter_contract: a changed description is the column''s new comment');
SELECT is(col_description('silver.doc'::regclass, tap.doc_attnum('age')), 'age in years, as told',
          'alter_contract: an added description becomes a comment');
SELECT is(col_description('silver.doc'::regclass, tap.doc_attnum('id')), NULL,
          'alter_contract: a removed description removes the comment');
SELECT is(col_description('silver.doc'::regclass, tap.doc_attnum('city')), 'where the contact lives',
          'alter_contract: a new column comes with its comment');
SELECT alike((SELECT detail FROM medallion.checklist('silver.doc') WHERE item = 'documented'),
            '%3 of 4 columns described%', 'the checklist counts the new contract''s descriptions');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.doc', '{"email": {"type": "text", "description": "x"}, "id": null}')$$,
                 NULL, NULL, 'a refused contract change ...');
SELECT is(col_description('silver.doc'::regclass, tap.doc_attnum('email')), 'the address we write to',
          '... leaves the comments as they were');

-- gold: option columns and the description -------------------------------------------------
SELECT is(pg_typeof(medallion.create_gold('doc_by_city',
    'SELECT city, count(*) AS contacts, max(age) AS oldest FROM silver.doc GROUP BY city', NULL,
    '{"description": "contacts per city", "columns": {"city": {"description": "the city, as given"},
                                                      "contacts": {"description": "how many contacts live there"}}}'))::text,
          'regclass', 'create_gold takes option columns');
SELECT is(obj_description('gold.doc_by_city'::regclass, 'pg_class'), 'contacts per city',
          'a model''s description is its table''s comment');
SELECT is(col_description('gold.doc_by_city'::regclass, 1), 'the city, as given', 'an output column''s description is its comment');
SELECT is(col_description('gold.doc_by_city'::regclass, 2), 'how many contacts live there', 'each described column has one');
SELECT is(col_description('gold.doc_by_city'::regclass, 3), NULL, 'an undescribed output column has none');
SELECT FROM medallion.create_gold('doc_plain', 'SELECT 1 AS one');
SELECT is(obj_description('gold.doc_plain'::regclass, 'pg_class'),
          'medallion gold model gold.doc_plain', 'without a description the table''s comment says what it is');
SELECT throws_ok($$SELECT medallion.create_gold('doc_bad', 'SELECT 1 AS one', NULL, '{"columns": {"two": {"description": "x"}}}')$$,
                 '22023', 'option columns names "two", which is not an output column of model "gold.doc_bad"',
                 'a described column the query does not output is refused');
SELECT throws_ok($$SELECT medallion.create_gold('doc_bad', 'SELECT 1 AS one', NULL, '{"columns": {"one": "x"}}')$$,
                 '22023', 'option columns: the entry of column "one" must be an object', 'an entry is an object');
SELECT throws_ok($$SELECT medallion.create_gold('doc_bad', 'SELECT 1 AS one', NULL, '{"columns": {"one": {"description": "x", "type": "int"}}}')$$,
                 '22023', NULL, 'whose one key is description');
SELECT throws_ok($$SELECT medallion.create_gold('doc_bad', 'SELECT 1 AS one', NULL, '{"columns": {"one": {"description": 1}}}')$$,
                 '22023', 'option columns: the description of column "one" must be a string', 'a string');
SELECT throws_ok($$SELECT medallion.create_gold('doc_bad', 'SELECT 1 AS one', NULL, '{"columns": ["one"]}')$$,
                 '22023', 'option columns must be an object of output columns', 'option columns is an object');
SELECT ok(to_regclass('gold.doc_bad') IS NULL AND NOT EXISTS (SELECT FROM medallion.pipelines WHERE name = 'gold.doc_bad'),
          'a refused model leaves nothing behind');
SELECT alike((SELECT detail FROM medallion.checklist('gold.doc_by_city') WHERE item = 'documented'),
            '%2 of 3 columns described%', 'the checklist counts a model''s described output columns');

-- alter_pipeline keeps a model's comments in sync
SELECT FROM medallion.alter_pipeline('gold.doc_by_city',
    '{"description": "contacts per city, all time", "columns": {"contacts": {"description": "number of contacts"},
                                                                "oldest": {"description": "the oldest contact''s age"}}}');
SELECT is(obj_description('gold.doc_by_city'::regclass, 'pg_class'), 'contacts per city, all time',
          'alter_pipeline: the model''s new description is its table''s comment');
SELECT results_eq($$SELECT col_description('gold.doc_by_city'::regclass, n) FROM generate_series(1, 3) n ORDER BY n$$,
                  $$VALUES (NULL::text), ('number of contacts'), ('the oldest contact''s age')$$,
                  'alter_pipeline: option columns replaces the column comments (a column it leaves out has none)');
SELECT alike((SELECT detail FROM medallion.checklist('gold.doc_by_city') WHERE item = 'documented'),
            '%2 of 3 columns described%', 'the checklist follows');
SELECT throws_ok($$SELECT medallion.alter_pipeline('gold.doc_by_city', '{"columns": {"town": {"description": "x"}}}')$$,
                 '22023', 'option columns names "town", which is not an output column of model "gold.doc_by_city"',
                 'alter_pipeline refuses a column the model does not have');
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.doc', '{"columns": {"id": {"description": "x"}}}')$$,
                 '22023', 'option columns applies to gold models only', 'a silver pipeline''s column descriptions are its contract''s');

-- the lineage shows the descriptions
SELECT is((SELECT column_descriptions FROM medallion.lineage WHERE pipeline = 'gold.doc_by_city'),
          '{"contacts": "number of contacts", "oldest": "the oldest contact''s age"}'::jsonb,
          'lineage: column_descriptions of the downstream''s table');
SELECT is((SELECT description FROM medallion.lineage WHERE pipeline = 'gold.doc_by_city'),
          'contacts per city, all time', 'lineage: the pipeline''s description');
SELECT is((SELECT column_descriptions FROM medallion.lineage WHERE pipeline = 'silver.doc'),
          '{"age": "age in years, as told", "city": "where the contact lives", "email": "the address we write to"}'::jsonb,
          'lineage: a silver pipeline''s column descriptions');
SELECT ok(position(E'["gold.doc_by_city<br/>contacts per city#44; all time"]' IN medallion.lineage_graph()) > 0,
          'lineage_graph: the description is the second line of the node''s label (escaped)');
SELECT FROM medallion.alter_pipeline('gold.doc_by_city', '{"columns": null}');
SELECT is((SELECT column_descriptions FROM medallion.lineage WHERE pipeline = 'gold.doc_by_city'), NULL,
          'alter_pipeline columns null removes every column comment');
RESET ROLE;

SET ROLE medallion_tap_doc_other;
SELECT throws_ok($$SELECT medallion.alter_pipeline('gold.doc_by_city', '{"columns": {"city": {"description": "x"}}}')$$,
                 '42501', NULL, 'another role cannot change a model''s column descriptions');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
