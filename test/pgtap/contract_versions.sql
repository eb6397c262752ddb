-- medallion.alter_contract(pipeline, columns, options, force) and medallion.contract_versions
-- (docs/architecture.md, "Contract versions"): version 1 is create_silver's contract; a patch
-- (object adds or replaces a column, null removes it) makes the next version and alters the
-- silver table; each compatibility mode refuses what it must, with the broken rule in the
-- detail; force makes the change and records it as breaking; what needs a rebuild is refused.
BEGIN;
SELECT plan(98);

-- The SQLSTATE and detail of an error (or 'no error').
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s text;
    d text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, d = PG_EXCEPTION_DETAIL;
    RETURN s || ': ' || d;
END $$;

CREATE FUNCTION pg_temp.cols(t text) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod)
                      || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum)
    FROM pg_attribute
    WHERE attrelid = t::regclass AND attnum > 0 AND NOT attisdropped AND attname !~ '^_'
$$;

SELECT FROM medallion.create_bronze('cv_shop', 'shop');

-- Version 1 -----------------------------------------------------------------------------

SELECT FROM medallion.create_silver('cv_orders', 'bronze.cv_shop',
    '{"id": "bigint", "qty": "integer", "note": "varchar(10)",
      "status": {"type": "text", "accepted": ["new", "paid"]}}', ARRAY['id']);
SELECT results_eq(
    $$SELECT v.version, v.compatibility, v.forced, v.created_by, v.definition = p.definition
      FROM medallion.contract_versions v JOIN medallion.pipelines p ON p.name = v.pipeline
      WHERE v.pipeline = 'silver.cv_orders'$$,
    $$VALUES (1, 'backward', false, current_user::text COLLATE "default", true)$$,
    'create_silver records version 1: its definition, compatibility backward by default, the creator');
SELECT is((SELECT definition_version FROM medallion.pipelines WHERE name = 'silver.cv_orders'), 1,
          'the pipeline''s definition is version 1');
SELECT FROM medallion.create_silver('cv_full', 'bronze.cv_shop', '{"id": "bigint", "a": "integer"}',
    ARRAY['id'], NULL, '{"compatibility": "full"}');
SELECT is((SELECT compatibility FROM medallion.contract_versions WHERE pipeline = 'silver.cv_full'), 'full',
          'option compatibility is recorded with the version');
SELECT throws_ok($$SELECT medallion.create_silver('cv_bad', 'bronze.cv_shop', '{"id": "bigint"}', ARRAY['id'],
                   NULL, '{"compatibility": "sideways"}')$$, '22023', NULL,
                 'an unknown compatibility mode is refused at creation (22023)');
SELECT throws_ok($$SELECT medallion.create_silver('cv_bad', 'bronze.cv_shop', '{"id": "bigint"}', ARRAY['id'],
                   NULL, '{"compatibility": 1}')$$, '22023', NULL, 'so is a compatibility that is not a string');

SELECT FROM medallion.ingest('bronze.cv_shop', '[{"id": 1, "qty": 2, "note": "first", "status": "new"}]');
SELECT FROM medallion.run('silver.cv_orders');

-- Patch semantics -----------------------------------------------------------------------

SELECT is(medallion.alter_contract('silver.cv_orders', '{"qty": "bigint", "color": {"type": "text"}}'), 2,
          'widening a column and adding one makes version 2');
SELECT is(pg_temp.cols('silver.cv_orders'),
          'id bigint not null, qty bigint, note character varying(10), status text, color text',
          'the table is altered: qty widened, color added');
SELECT is((SELECT definition->'columns' FROM medallion.pipelines WHERE name = 'silver.cv_orders'),
          '{"id": "bigint", "qty": "bigint", "note": "varchar(10)", "color": {"type": "text"},
            "status": {"type": "text", "accepted": ["new", "paid"]}}'::jsonb,
          'the pipeline''s definition is the patched contract');
SELECT results_eq($$SELECT version, definition_version FROM medallion.contract_versions v
                    JOIN medallion.pipelines p ON p.name = v.pipeline AND p.definition = v.definition
                    WHERE v.pipeline = 'silver.cv_orders'$$,
                  $$VALUES (2, 2)$$, 'version 2 is stored and is the pipeline''s current definition');
SELECT is((SELECT definition->'columns'->>'qty' FROM medallion.contract_versions
           WHERE pipeline = 'silver.cv_orders' AND version = 1), 'integer', 'version 1 is kept as it was');
SELECT is((SELECT color FROM silver.cv_orders WHERE id = 1), NULL, 'rows already in silver are not rewritten');
SELECT results_eq($$SELECT classification, detail->'added', detail->'retyped', (detail->>'forced')::boolean
                    FROM medallion.schema_changes WHERE pipeline = 'silver.cv_orders' AND change = 'contract_changed'$$,
                  $$VALUES ('warning', '["color"]'::jsonb, '["qty"]'::jsonb, false)$$,
                  'the change is recorded: a widening is a warning');

SELECT FROM medallion.ingest('bronze.cv_shop', '[{"id": 2, "qty": 3000000000, "note": "sec", "color": "red"}]');
SELECT FROM medallion.run('silver.cv_orders');
SELECT results_eq($$SELECT qty, color FROM silver.cv_orders WHERE id = 2$$, $$VALUES (3000000000::bigint, 'red')$$,
                  'the next run (same transaction) loads under version 2: a bigint, the new column');

SELECT is(medallion.alter_contract('silver.cv_orders', '{"color": null}'), 3, 'null removes a column');
SELECT hasnt_column('silver', 'cv_orders', 'color', 'its table column is dropped');
SELECT ok(NOT (SELECT definition->'columns' ? 'color' FROM medallion.pipelines WHERE name = 'silver.cv_orders'),
          'and it leaves the contract');
SELECT is(medallion.alter_contract('silver.cv_orders', '{"note": "varchar(10)"}', '{}'), 3,
          'a patch that changes nothing makes no version: the current one is returned');
SELECT is(medallion.alter_contract('silver.cv_orders', NULL, '{"description": "orders"}'), 4,
          'options are patched too: a new description is a new version');
SELECT is((SELECT definition->'options'->>'description' FROM medallion.pipelines WHERE name = 'silver.cv_orders'),
          'orders', 'the option is in the definition');
SELECT is(medallion.alter_contract('silver.cv_orders', NULL, '{"description": "orders"}'), 4,
          'the same patch again changes nothing: the version stays');
SELECT is(medallion.alter_contract('silver.cv_orders', NULL, '{"description": null}'), 5,
          'null removes an option');
SELECT is((SELECT count(*)::int FROM medallion.contract_versions WHERE pipeline = 'silver.cv_orders'), 5,
          'one version per change, none for a patch that changes nothing');

-- a contract written as an array keeps its order
SELECT FROM medallion.create_silver('cv_array', 'bronze.cv_shop',
    '[{"name": "id", "type": "bigint"}, {"name": "qty", "type": "integer"}, {"name": "note", "type": "text"}]',
    ARRAY['id']);
SELECT is(medallion.alter_contract('silver.cv_array', '{"qty": "bigint", "extra": "text", "note": null}'), 2,
          'an array contract is patched');
SELECT is((SELECT definition->'columns' FROM medallion.pipelines WHERE name = 'silver.cv_array'),
          '[{"name": "id", "type": "bigint"}, {"name": "qty", "type": "bigint"}, {"name": "extra", "type": "text"}]'::jsonb,
          'in place, with new columns last');

-- A version rolled back is forgotten by this backend's cache: the number is taken again
-- by another contract.
SELECT FROM medallion.create_silver('cv_sp', 'bronze.cv_shop', '{"id": "bigint"}', ARRAY['id']);
SAVEPOINT before_v2;
SELECT FROM medallion.alter_contract('silver.cv_sp', '{"qty": "bigint"}');
SELECT FROM medallion.run('silver.cv_sp');
ROLLBACK TO SAVEPOINT before_v2;
SELECT is(medallion.alter_contract('silver.cv_sp', '{"note": "text"}'), 2, 'after a rollback, version 2 is another contract');
SELECT FROM medallion.ingest('bronze.cv_shop', '[{"id": 9, "qty": 1, "note": "nine"}]');
SELECT is((SELECT status FROM tap.run_row('silver.cv_sp')), 'succeeded', 'a run in the same backend uses it');
SELECT is((SELECT note FROM silver.cv_sp WHERE id = 9), 'nine', 'and loads its column');

-- Refusals ------------------------------------------------------------------------------

SELECT throws_ok($$SELECT medallion.alter_contract(NULL, '{}')$$, '22004', NULL, 'the pipeline must not be NULL (22004)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '[]')$$, '22023', NULL,
                 'columns must be an object (22023)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', NULL, '[1]')$$, '22023', NULL,
                 'options must be an object (22023)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '{"qty": 5}')$$, '22023', NULL,
                 'a column''s patch is a contract or null (22023)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '{"nope": null}')$$, '42703', NULL,
                 'removing a column the contract does not have (42703)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.nope', '{}')$$, '42704', NULL,
                 'an unknown pipeline (42704)');
SELECT throws_ok($$SELECT medallion.alter_contract('bronze.cv_shop', '{}')$$, '42809', NULL,
                 'a bronze pipeline has no contract (42809)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '{"x": "no_such_type"}')$$, '42704', NULL,
                 'the new contract is validated as create_silver validates: an unknown type (42704)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '{"x": {"type": "text", "colour": 1}}')$$,
                 '22023', NULL, 'an unknown key of a column (22023)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', NULL, '{"speed": 1}')$$, '22023', NULL,
                 'an unknown option (22023)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '{"x": {"type": "text", "expr": "no_such_column"}}')$$,
                 '42703', NULL, 'an expression is planned as the owner: an unknown column in it (42703)');
SELECT is(pg_temp.cols('silver.cv_orders'), 'id bigint not null, qty bigint, note character varying(10), status text',
          'a refused change leaves the table as it was (the column it added is gone)');
SELECT is((SELECT definition_version FROM medallion.pipelines WHERE name = 'silver.cv_orders'), 5,
          'and the version');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '{"x": {"type": "bigint", "references": "silver.nope.id"}}')$$,
                 '42P01', NULL, 'a reference to a missing table (42P01)');

SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', NULL, '{"unique_key": ["qty"]}')$$, 'MD041', NULL,
                 'the unique key cannot change in place (MD041)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', NULL, '{"order_by": "qty"}')$$, 'MD041', NULL,
                 'nor the order_by column (MD041)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '{"id": null}')$$, 'MD041', NULL,
                 'a unique_key column cannot be removed (MD041)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '{"id": "numeric"}', NULL, true)$$, 'MD041', NULL,
                 'nor retyped, even with force (MD041)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '{"note": {"type": "varchar(10)", "pii": "hash"}}')$$,
                 'MD041', NULL, 'a column''s pii treatment cannot change in place (MD041)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', NULL, '{"delete_when": "true"}')$$, 'MD041', NULL,
                 'nor delete_when (MD041)');

-- a column another contract references, or a view reads, stays
SELECT FROM medallion.create_silver('cv_parent', 'bronze.cv_shop', '{"id": "bigint", "code": "text"}', ARRAY['id']);
SELECT FROM medallion.create_silver('cv_child', 'bronze.cv_shop',
    '{"id": "bigint", "code": {"type": "text", "references": "silver.cv_parent.code"}}', ARRAY['id']);
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_parent', '{"code": null}')$$),
          '2BP01: The contract of pipeline "silver.cv_child" references silver.cv_parent.code.',
          'removing a column another pipeline''s contract references is refused (2BP01)');
CREATE VIEW public.cv_parent_codes AS SELECT code FROM silver.cv_parent;
SELECT FROM medallion.alter_contract('silver.cv_child', '{"code": "text"}', NULL, true);
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_parent', '{"code": null}')$$, '2BP01', NULL,
                 'so is one a view reads (2BP01, from ALTER TABLE)');
SELECT is((SELECT definition_version FROM medallion.pipelines WHERE name = 'silver.cv_parent'), 1,
          'and the contract stays at its version');

-- an expectation must still plan over the new columns
SELECT FROM medallion.expect('silver.cv_orders', 'note_set', 'note IS NOT NULL', 'warn');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '{"note": null}')$$, '42703', NULL,
                 'removing a column an expectation reads is refused (42703)');
SELECT has_column('silver', 'cv_orders', 'note', 'and the column stays');
DELETE FROM medallion.expectations WHERE pipeline = 'silver.cv_orders';

-- Compatibility: backward (the default) -----------------------------------------------

SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_orders', '{"size": {"type": "integer", "required": true}}')$$),
          'MD040: column "size" is new and required without a default, and version 5 accepted payloads without it.',
          'backward: a new required column without a default is refused (MD040), the rule in the detail');
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_orders', '{"qty": {"type": "bigint", "required": true}}')$$),
          'MD040: column "qty" is now required without a default, and version 5 accepted payloads without it.',
          'backward: an optional column made required is refused');
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_orders', '{"note": "varchar(5)"}')$$),
          'MD040: the type of column "note" changes from varchar(10) in version 5 to varchar(5), which is not a widening.',
          'backward: a narrowed type is refused');
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_orders', '{"status": {"type": "text", "accepted": ["new"]}}')$$),
          'MD040: column "status" no longer accepts "paid", which version 5 accepted.',
          'backward: fewer accepted values are refused');
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_orders', '{"note": {"type": "varchar(10)", "accepted": ["a"]}}')$$),
          'MD040: column "note" gets a list of accepted values, and version 5 accepted any value.',
          'backward: a new accepted list is refused');
SELECT FROM medallion.create_silver('cv_ref', 'bronze.cv_shop', '{"id": "bigint"}', ARRAY['id']);
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_orders', '{"qty": {"type": "bigint", "path": "id", "references": "silver.cv_ref.id"}}')$$),
          'MD040: column "qty" gets a reference to silver.cv_ref.id that version 5 did not check.',
          'backward: a new reference is refused');
SELECT is(medallion.alter_contract('silver.cv_orders', '{"size": {"type": "integer", "required": true, "default": 1}}'), 6,
          'backward: a new required column with a default is accepted');
SELECT results_eq($$SELECT id, size FROM silver.cv_orders ORDER BY id$$, $$VALUES (1::bigint, 1), (2, 1)$$,
                  'existing rows take the default of a new required column (NOT NULL holds)');
SELECT is(pg_temp.cols('silver.cv_orders'),
          'id bigint not null, qty bigint, note character varying(10), status text, size integer not null',
          'the new required column is NOT NULL, without a table default');
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_orders', '{"size": {"type": "integer", "required": true}}')$$),
          'MD040: required column "size" loses the default or expression that filled it, and version 6 accepted payloads without it.',
          'backward: a required column that loses its default is refused');
SELECT is(medallion.alter_contract('silver.cv_orders', '{"status": null}'), 7,
          'backward: dropping a column is accepted (payloads still load)');
SELECT is((SELECT classification FROM medallion.schema_changes WHERE pipeline = 'silver.cv_orders'
           AND (detail->>'to_version')::int = 7), 'breaking',
          'but the record calls a drop breaking: readers of the table lose the column');

-- force
SELECT is(medallion.alter_contract('silver.cv_orders', '{"note": "varchar(5)"}', force => true), 8,
          'force makes a refused change');
SELECT results_eq($$SELECT forced FROM medallion.contract_versions WHERE pipeline = 'silver.cv_orders' AND version = 8$$,
                  $$VALUES (true)$$, 'the version is marked forced');
SELECT results_eq($$SELECT change, classification, relation, (detail->>'forced')::boolean, detail->'broken'->>0
                    FROM medallion.schema_changes WHERE pipeline = 'silver.cv_orders' AND (detail->>'to_version')::int = 8$$,
                  $$VALUES ('contract_changed', 'breaking', 'silver.cv_orders', true,
                            'the type of column "note" changes from varchar(10) in version 7 to varchar(5), which is not a widening')$$,
                  'and recorded in schema_changes: contract_changed, breaking, the rule');
SELECT col_type_is('silver', 'cv_orders', 'note', 'character varying(5)', 'the column is narrowed');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_orders', '{"note": "varchar(2)"}', force => true)$$, '22001', NULL,
                 'a forced narrowing that stored values do not fit fails (22001), changing nothing');
SELECT col_type_is('silver', 'cv_orders', 'note', 'character varying(5)', 'the column keeps its type');

-- Compatibility: forward, full, none --------------------------------------------------

SELECT FROM medallion.create_silver('cv_fwd', 'bronze.cv_shop', '{"id": "bigint", "a": "integer", "b": "text"}',
    ARRAY['id'], NULL, '{"compatibility": "forward"}');
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_fwd', '{"b": null}')$$),
          'MD040: column "b" of version 1 is dropped, and readers of the silver table read it.',
          'forward: a dropped column is refused');
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_fwd', '{"b": null, "bee": {"path": "b", "type": "text"}}')$$),
          'MD040: column "b" of version 1 is renamed to "bee", and readers of the silver table read "b".',
          'forward: a rename (the same path and type under another name) is refused as one');
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_fwd', '{"a": "text"}')$$),
          'MD040: the type of column "a" changes from integer in version 1 to text, which is not a widening.',
          'forward: a changed type is refused');
SELECT is(medallion.alter_contract('silver.cv_fwd', '{"c": {"type": "text", "required": true}}'), 2,
          'forward: a new required column is accepted (readers of the old table are unaffected)');

SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_full', '{"b": {"type": "text", "required": true}}')$$),
          'MD040: column "b" is new and required without a default, and version 1 accepted payloads without it.',
          'full: what backward refuses');
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_full', '{"a": null}')$$),
          'MD040: column "a" of version 1 is dropped, and readers of the silver table read it.',
          'full: and what forward refuses');
SELECT is(medallion.alter_contract('silver.cv_full', '{"a": "bigint", "b": "text"}'), 2,
          'full: a widening and a new optional column are accepted');

SELECT FROM medallion.create_silver('cv_none', 'bronze.cv_shop', '{"id": "bigint", "a": "integer"}',
    ARRAY['id'], NULL, '{"compatibility": "none"}');
SELECT is(medallion.alter_contract('silver.cv_none', '{"a": null, "b": {"type": "text", "required": true}}'), 2,
          'none: any change is accepted');
SELECT results_eq($$SELECT forced FROM medallion.contract_versions WHERE pipeline = 'silver.cv_none' AND version = 2$$,
                  $$VALUES (false)$$, 'and is not forced');

-- Transitive modes: against every earlier version -------------------------------------

-- v1 has c; v2 (checked under none) drops it and sets the mode; v3 adds an optional column
SELECT FROM medallion.create_silver('cv_ft', 'bronze.cv_shop', '{"id": "bigint", "c": "text"}',
    ARRAY['id'], NULL, '{"compatibility": "none"}');
SELECT FROM medallion.create_silver('cv_f', 'bronze.cv_shop', '{"id": "bigint", "c": "text"}',
    ARRAY['id'], NULL, '{"compatibility": "none"}');
SELECT FROM medallion.alter_contract('silver.cv_ft', '{"c": null}', '{"compatibility": "forward_transitive"}');
SELECT FROM medallion.alter_contract('silver.cv_f', '{"c": null}', '{"compatibility": "forward"}');
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_ft', '{"d": "text"}')$$),
          'MD040: column "c" of version 1 is dropped, and readers of the silver table read it.',
          'forward_transitive: a change compatible with the last version but not with version 1 is refused');
SELECT is(medallion.alter_contract('silver.cv_f', '{"d": "text"}'), 3,
          'forward (not transitive) accepts it');

-- v1 accepts a and b; v2 (none) only a; v3 a and c: fine against v2, not against v1
SELECT FROM medallion.create_silver('cv_bt', 'bronze.cv_shop',
    '{"id": "bigint", "s": {"type": "text", "accepted": ["a", "b"]}}', ARRAY['id'], NULL, '{"compatibility": "none"}');
SELECT FROM medallion.alter_contract('silver.cv_bt', '{"s": {"type": "text", "accepted": ["a"]}}',
                                     '{"compatibility": "backward_transitive"}');
SELECT is(pg_temp.err($$SELECT medallion.alter_contract('silver.cv_bt', '{"s": {"type": "text", "accepted": ["a", "c"]}}')$$),
          'MD040: column "s" no longer accepts "b", which version 1 accepted.',
          'backward_transitive: checked against version 1 too');
SELECT is(medallion.alter_contract('silver.cv_bt', '{"s": {"type": "text", "accepted": ["a", "c"]}}', force => true), 3,
          'forced, it passes');

-- forced in every mode: made, marked and recorded
SELECT is(medallion.alter_contract('silver.cv_fwd', '{"b": null}', force => true), 3, 'forward: forced, a drop is made');
SELECT is(medallion.alter_contract('silver.cv_full', '{"a": null}', force => true), 3, 'full: forced, a drop is made');
SELECT is(medallion.alter_contract('silver.cv_ft', '{"d": "text"}', force => true), 3,
          'forward_transitive: forced, the change is made');
SELECT results_eq(
    $$SELECT v.pipeline, v.version, v.forced, s.classification, (s.detail->>'forced')::boolean
      FROM medallion.contract_versions v
      JOIN medallion.schema_changes s ON s.pipeline = v.pipeline AND (s.detail->>'to_version')::int = v.version
      WHERE v.pipeline IN ('silver.cv_fwd', 'silver.cv_full', 'silver.cv_ft', 'silver.cv_bt') AND v.forced
      ORDER BY 1$$,
    $$VALUES ('silver.cv_bt', 3, true, 'breaking', true), ('silver.cv_ft', 3, true, 'breaking', true),
             ('silver.cv_full', 3, true, 'breaking', true), ('silver.cv_fwd', 3, true, 'breaking', true)$$,
    'each forced version is marked, and recorded as breaking (also when only an earlier version is broken)');
SELECT hasnt_column('silver', 'cv_fwd', 'b', 'the forced drop dropped the column');

-- delete_when pipelines keep their table of deleted keys
SELECT FROM medallion.create_silver('cv_del', 'bronze.cv_shop', '{"id": "bigint", "v": "text"}',
    ARRAY['id'], NULL, '{"delete_when": "_raw->>''op'' = ''D''"}');
SELECT FROM medallion.alter_contract('silver.cv_del', '{"w": "text"}');
SELECT FROM medallion.ingest('bronze.cv_shop', '[{"id": 7, "v": "x", "w": "y"}, {"id": 1, "op": "D"}]');
SELECT FROM medallion.run('silver.cv_del');
SELECT results_eq($$SELECT id, v, w FROM silver.cv_del ORDER BY id$$,
                  $$VALUES (2::bigint, NULL::text, NULL::text), (7, 'x', 'y'), (9, NULL, NULL)$$,
                  'a pipeline with delete_when runs under its new version: the new column, the delete applied');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_array', '{"qty": {"name": "other", "type": "bigint"}}')$$,
                 '22023', NULL, 'in an array contract, a patch cannot rename through "name" (22023)');
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_del', NULL, '{"compatibility": "strict"}')$$,
                 '22023', NULL, 'an unknown compatibility mode is refused by alter_contract too (22023)');

-- Privileges ----------------------------------------------------------------------------

CREATE ROLE medallion_cv_owner NOLOGIN;
CREATE ROLE medallion_cv_stranger NOLOGIN;
CREATE ROLE medallion_cv_team NOLOGIN;
GRANT medallion_cv_owner TO medallion_cv_team;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_cv_owner;
SET ROLE medallion_cv_owner;
SELECT FROM medallion.create_bronze('cv_own', 'app');
SELECT FROM medallion.create_silver('cv_own', 'bronze.cv_own', '{"id": "bigint"}', ARRAY['id']);
RESET ROLE;
SET ROLE medallion_cv_stranger;
SELECT throws_ok($$SELECT medallion.alter_contract('silver.cv_own', '{"x": "text"}')$$, '42501', NULL,
                 'a role that does not own the pipeline cannot alter its contract (42501)');
RESET ROLE;
SET ROLE medallion_cv_team;
SELECT is(medallion.alter_contract('silver.cv_own', '{"x": "text"}'), 2, 'a member of the owner role can');
RESET ROLE;
SELECT results_eq($$SELECT created_by FROM medallion.contract_versions WHERE pipeline = 'silver.cv_own' ORDER BY version$$,
                  $$VALUES ('medallion_cv_owner'), ('medallion_cv_team')$$, 'created_by names who made each version');
SELECT is((SELECT tableowner::text FROM pg_tables WHERE schemaname = 'silver' AND tablename = 'cv_own'),
          'medallion_cv_owner', 'the table stays its owner''s (the DDL ran as the owner)');
SELECT ok(NOT has_function_privilege('public', 'medallion.contract_cache_invalidate()', 'EXECUTE'),
          'PUBLIC cannot execute the cache trigger function');
SELECT ok(has_function_privilege('public', 'medallion.alter_contract(text, jsonb, jsonb, boolean)', 'EXECUTE'),
          'PUBLIC can execute alter_contract (it checks ownership itself)');
SELECT ok(NOT has_table_privilege('public', 'medallion.contract_versions', 'INSERT'),
          'PUBLIC cannot write contract versions');

SELECT * FROM finish();
ROLLBACK;
