-- Business documentation in the database: a silver contract's column descriptions and the
-- pipeline's description become COMMENTs on the silver table and its columns; alter_pipeline
-- keeps the table's comment in sync; the checklist counts the described columns.
BEGIN;
SELECT plan(7);

CREATE FUNCTION tap.doc_attnum(col name) RETURNS int LANGUAGE plpgsql AS
$$ BEGIN RETURN (SELECT attnum FROM pg_attribute WHERE attrelid = 'silver.doc'::regclass AND attname = col); END $$;
CREATE ROLE medallion_tap_doc_owner NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_doc_owner;
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
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
