-- DDL event triggers on the relations pipelines read or write: every ALTER TABLE or DROP on
-- a tracked relation (a pipeline's own table, a silver tombstone table, a silver source, a
-- contract's references target, a captured table) is classified against a snapshot of its
-- columns (safe, warning, breaking) and recorded in medallion.schema_changes with its command
-- tag; a breaking change halts the pipelines that read or write the relation and raises one
-- schema_change alert per pipeline. medallion's own DDL, rolled-back DDL and DDL on
-- untracked relations leave no trace. docs/architecture.md, "The DDL watch".
BEGIN;
SELECT plan(54);

CREATE FUNCTION pg_temp.error_of(sql text, OUT state text, OUT message text, OUT hint text) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END $$;
-- the changes recorded since the mark, as (pipeline, path, change, classification, tag)
CREATE TEMP TABLE mark AS SELECT coalesce(max(id), 0) AS id FROM medallion.schema_changes;
CREATE FUNCTION pg_temp.changes() RETURNS TABLE (pipeline text, path text, change text, class text, tag text)
LANGUAGE sql AS $$
    SELECT c.pipeline, c.path, c.change, c.classification, c.command_tag
    FROM medallion.schema_changes c WHERE c.id > (SELECT id FROM mark) ORDER BY c.id
$$;
CREATE FUNCTION pg_temp.next() RETURNS void LANGUAGE sql AS $$
    UPDATE mark SET id = (SELECT coalesce(max(id), 0) FROM medallion.schema_changes);
$$;

CREATE SCHEMA ddlw;
CREATE TABLE ddlw.customers (customer_id bigint PRIMARY KEY, name text);
CREATE TABLE ddlw.unrelated (a int);
SELECT FROM medallion.create_bronze('dw_orders', 'app');
SELECT FROM medallion.create_silver('dw_orders', 'bronze.dw_orders',
    '{"id": {"type": "integer", "required": true}, "qty": "integer", "code": "varchar(5)",
      "amount": "numeric(8,2)", "note": "text", "small": "smallint",
      "label": {"type": "text", "required": true},
      "customer_id": {"type": "bigint", "references": "ddlw.customers.customer_id"}}',
    ARRAY['id'], NULL, $${"delete_when": "_raw->>'op' = 'D'"}$$);
SELECT FROM medallion.ingest('bronze.dw_orders', '[{"id": 1, "qty": 2, "code": "ab", "label": "x"}]');
SELECT FROM medallion.run('silver.dw_orders');

-- What is tracked ------------------------------------------------------------------------------

SELECT set_eq($$SELECT relation, pipelines FROM medallion.column_snapshots
               WHERE 'silver.dw_orders' = ANY (pipelines) OR 'bronze.dw_orders' = ANY (pipelines)$$,
              $$VALUES ('bronze.dw_orders', '{bronze.dw_orders,silver.dw_orders}'::text[]),
                       ('silver.dw_orders', '{silver.dw_orders}'),
                       ('silver._dw_orders_deleted', '{silver.dw_orders}'),
                       ('ddlw.customers', '{silver.dw_orders}')$$,
              'the bronze table, the silver table, its tombstone table and the referenced table are tracked');
SELECT is((SELECT count(*)::int FROM pg_temp.changes()), 0, 'creating pipelines (medallion''s own DDL) records nothing');

-- Safe and warning ------------------------------------------------------------------------------

ALTER TABLE silver.dw_orders ADD COLUMN extra text;
SELECT results_eq($$SELECT * FROM pg_temp.changes()$$,
                  $$VALUES ('silver.dw_orders', 'extra', 'column_added', 'safe', 'ALTER TABLE')$$,
                  'a nullable column added is safe, recorded with the command tag');
SELECT pg_temp.next();
ALTER TABLE silver.dw_orders ADD COLUMN flag boolean NOT NULL DEFAULT false;
SELECT results_eq($$SELECT change, class FROM pg_temp.changes()$$, $$VALUES ('column_added', 'safe')$$,
                  'a NOT NULL column with a default is safe');
SELECT pg_temp.next();
ALTER TABLE silver.dw_orders ALTER COLUMN qty TYPE bigint;
SELECT results_eq($$SELECT path, change, class FROM pg_temp.changes()$$,
                  $$VALUES ('qty', 'column_retyped', 'warning')$$, 'integer to bigint is a widening: warning');
SELECT is((SELECT detail FROM medallion.schema_changes ORDER BY id DESC LIMIT 1),
          '{"to": "bigint", "from": "integer"}'::jsonb, 'the detail says from what to what');
SELECT pg_temp.next();
ALTER TABLE silver.dw_orders ALTER COLUMN code TYPE varchar(10), ALTER COLUMN amount TYPE numeric(12,3),
    ALTER COLUMN small TYPE numeric;
SELECT set_eq($$SELECT path, class FROM pg_temp.changes()$$,
                  $$VALUES ('code', 'warning'), ('amount', 'warning'), ('small', 'warning')$$,
                  'a longer varchar, more numeric digits, smallint to numeric: warnings');
SELECT pg_temp.next();
ALTER TABLE silver.dw_orders ALTER COLUMN code TYPE text;
SELECT results_eq($$SELECT path, class FROM pg_temp.changes()$$, $$VALUES ('code', 'warning')$$,
                  'varchar to text is a widening');
SELECT pg_temp.next();
ALTER TABLE silver.dw_orders ALTER COLUMN label DROP NOT NULL;
SELECT results_eq($$SELECT path, change, class FROM pg_temp.changes()$$, $$VALUES ('label', 'column_retyped', 'warning')$$,
                  'dropping NOT NULL is a widening');
SELECT pg_temp.next();
ALTER TABLE silver.dw_orders ADD CONSTRAINT qty_positive CHECK (qty > 0);
SELECT is((SELECT count(*)::int FROM pg_temp.changes()), 0, 'an ALTER TABLE that changes no column records nothing');
SELECT results_eq($$SELECT state FROM medallion.pipelines WHERE name = 'silver.dw_orders'$$, $$VALUES ('active')$$,
                  'safe and warning changes leave the pipeline active');
SELECT is((SELECT count(*)::int FROM medallion.alerts WHERE pipeline = 'silver.dw_orders' AND kind = 'schema_change'), 0,
          'and raise no alert');

-- Breaking: halts and alerts --------------------------------------------------------------------

ALTER TABLE silver.dw_orders ALTER COLUMN amount TYPE numeric(6,2);
SELECT results_eq($$SELECT path, change, class FROM pg_temp.changes()$$,
                  $$VALUES ('amount', 'column_retyped', 'breaking')$$, 'fewer numeric digits is a narrowing: breaking');
SELECT results_eq($$SELECT state FROM medallion.pipelines WHERE name = 'silver.dw_orders'$$, $$VALUES ('halted')$$,
                  'a breaking change halts the pipeline');
SELECT results_eq($$SELECT occurrences, message LIKE 'ALTER TABLE on silver.dw_orders broke the pipeline:%'
                    FROM medallion.alerts WHERE pipeline = 'silver.dw_orders' AND kind = 'schema_change'
                    AND resolved_at IS NULL$$,
                  $$VALUES (1, true)$$, 'and raises a schema_change alert');
SELECT throws_ok($$SELECT medallion.run('silver.dw_orders')$$, '55000', 'pipeline "silver.dw_orders" is halted',
                 'a halted pipeline refuses to run');
SELECT FROM medallion.resume('silver.dw_orders');
SELECT is((SELECT count(*)::int FROM medallion.alerts WHERE pipeline = 'silver.dw_orders' AND kind = 'schema_change'
           AND resolved_at IS NULL), 0, 'resume() resolves the schema_change alert');
SELECT pg_temp.next();

ALTER TABLE silver.dw_orders ALTER COLUMN qty TYPE integer;
SELECT results_eq($$SELECT path, class FROM pg_temp.changes()$$, $$VALUES ('qty', 'breaking')$$,
                  'bigint to integer is breaking');
ALTER TABLE silver.dw_orders ALTER COLUMN note TYPE integer USING NULL;
SELECT results_eq($$SELECT path, class FROM pg_temp.changes() OFFSET 1$$, $$VALUES ('note', 'breaking')$$,
                  'text to integer is breaking');
SELECT results_eq($$SELECT occurrences FROM medallion.alerts WHERE pipeline = 'silver.dw_orders'
                    AND kind = 'schema_change' AND resolved_at IS NULL$$,
                  $$VALUES (2)$$, 'one open schema_change alert per pipeline, counted');
SELECT FROM medallion.resume('silver.dw_orders');
SELECT pg_temp.next();

ALTER TABLE silver.dw_orders RENAME COLUMN extra TO extra2;
SELECT results_eq($$SELECT path, change, class FROM pg_temp.changes()$$,
                  $$VALUES ('extra', 'column_renamed', 'breaking')$$, 'a renamed column is breaking');
SELECT is((SELECT detail FROM medallion.schema_changes ORDER BY id DESC LIMIT 1),
          '{"from": "extra", "to": "extra2"}'::jsonb, 'with both names');
SELECT pg_temp.next();
ALTER TABLE silver.dw_orders ALTER COLUMN flag SET NOT NULL, ALTER COLUMN code SET NOT NULL;
SELECT results_eq($$SELECT path, class FROM pg_temp.changes()$$, $$VALUES ('code', 'breaking')$$,
                  'SET NOT NULL is a narrowing (flag was NOT NULL already)');
SELECT pg_temp.next();
ALTER TABLE silver.dw_orders DROP COLUMN extra2;
SELECT results_eq($$SELECT path, change, class FROM pg_temp.changes()$$,
                  $$VALUES ('extra2', 'column_dropped', 'breaking')$$, 'a dropped column is breaking');
SELECT pg_temp.next();
ALTER TABLE silver.dw_orders DROP COLUMN flag, ADD COLUMN flag boolean;
SELECT results_eq($$SELECT path, change, class FROM pg_temp.changes()$$,
                  $$VALUES ('flag', 'column_dropped', 'breaking'), ('flag', 'column_added', 'safe')$$,
                  'a column dropped and added again under its name is a drop, not a kept column');
SELECT pg_temp.next();
ALTER TABLE silver._dw_orders_deleted ADD COLUMN must int NOT NULL;
SELECT results_eq($$SELECT pipeline, path, change, class FROM pg_temp.changes()$$,
                  $$VALUES ('silver.dw_orders', 'must', 'column_added', 'breaking')$$,
                  'the tombstone table is tracked; a NOT NULL column without a default is breaking');
SELECT FROM medallion.resume('silver.dw_orders');
SELECT pg_temp.next();

-- Readers: the bronze source and a referenced table -------------------------------------------

ALTER TABLE bronze.dw_orders ADD COLUMN _note text;
SELECT results_eq($$SELECT pipeline, change, class FROM pg_temp.changes()$$,
                  $$VALUES ('bronze.dw_orders', 'column_added', 'safe'), ('silver.dw_orders', 'column_added', 'safe')$$,
                  'a change to a bronze table is recorded for the bronze pipeline and for its readers');
SELECT pg_temp.next();
ALTER TABLE ddlw.customers DROP COLUMN name;
SELECT results_eq($$SELECT pipeline, path, change, class FROM pg_temp.changes()$$,
                  $$VALUES ('silver.dw_orders', 'name', 'column_dropped', 'breaking')$$,
                  'the referenced table is tracked for the silver pipeline');
SELECT results_eq($$SELECT state FROM medallion.pipelines WHERE name = 'silver.dw_orders'$$, $$VALUES ('halted')$$,
                  'which halts');
SELECT FROM medallion.resume('silver.dw_orders');
SELECT pg_temp.next();

-- Untracked relations, rolled-back DDL, own DDL ---------------------------------------------------

ALTER TABLE ddlw.unrelated DROP COLUMN a;
CREATE TABLE ddlw.t2 (x int);
DROP TABLE ddlw.t2;
SELECT is((SELECT count(*)::int FROM pg_temp.changes()), 0, 'DDL on untracked relations records nothing');
SAVEPOINT before_drop;
ALTER TABLE silver.dw_orders DROP COLUMN qty;
ROLLBACK TO SAVEPOINT before_drop;
SELECT is((SELECT count(*)::int FROM pg_temp.changes()), 0, 'a rolled-back DDL leaves no schema_changes row');
SELECT results_eq($$SELECT state FROM medallion.pipelines WHERE name = 'silver.dw_orders'$$, $$VALUES ('active')$$,
                  'nor a halt');
ALTER TABLE silver.dw_orders ADD COLUMN after_rollback text;
SELECT results_eq($$SELECT path, change FROM pg_temp.changes()$$, $$VALUES ('after_rollback', 'column_added')$$,
                  'and the snapshot is as before: the next change is compared with the relation that exists');
SELECT pg_temp.next();

-- medallion's own DDL (here: the partition an ingest makes) is not recorded; it refreshes the
-- snapshots, as alter_contract or a gold swap need. The bronze snapshot is made stale first.
UPDATE medallion.column_snapshots SET columns = '[]' WHERE relation = 'bronze.dw_orders';
CREATE TEMP TABLE far AS SELECT 'dw_orders_p' || to_char(now() AT TIME ZONE 'UTC'
    + make_interval(days => current_setting('medallion.premake_days')::int), 'YYYYMMDD') AS part;
DO $$ BEGIN EXECUTE format('DROP TABLE bronze.%I', (SELECT part FROM far)); END $$;
SELECT FROM medallion.ingest('bronze.dw_orders', '[{"id": 2, "label": "y"}]');
SELECT ok(to_regclass('bronze.' || (SELECT part FROM far)) IS NOT NULL, 'the ingest made the missing partition');
SELECT is((SELECT columns = medallion.column_snapshot(relid) FROM medallion.column_snapshots
           WHERE relation = 'bronze.dw_orders'), true, 'medallion''s own DDL refreshes the snapshots');
SELECT is((SELECT count(*)::int FROM pg_temp.changes()), 0, 'and is not recorded as a change');

-- Captured tables ------------------------------------------------------------------------------

CREATE TABLE ddlw.accounts (id int PRIMARY KEY, owner text);
SELECT FROM medallion.capture('ddlw.accounts', 'dw_accounts');
ALTER TABLE ddlw.accounts RENAME COLUMN owner TO holder;
SELECT results_eq($$SELECT pipeline, path, change, class FROM pg_temp.changes()$$,
                  $$VALUES ('bronze.dw_accounts', 'owner', 'column_renamed', 'breaking')$$,
                  'a captured table is tracked for its bronze pipeline');
SELECT pg_temp.next();
ALTER TABLE ddlw.accounts RENAME TO accounts2;
SELECT results_eq($$SELECT change, class FROM pg_temp.changes()$$, $$VALUES ('table_renamed', 'breaking')$$,
                  'renaming a tracked table is breaking');
SELECT is((SELECT detail FROM medallion.schema_changes ORDER BY id DESC LIMIT 1),
          '{"from": "ddlw.accounts", "to": "ddlw.accounts2"}'::jsonb, 'with both names');
SELECT pg_temp.next();

-- A pipeline of another layer is tracked through the catalog alone (a gold model reading silver) -

CREATE TABLE gold.dw_daily (day date, n bigint);
INSERT INTO medallion.pipelines (name, layer, relname, owner)
VALUES ('gold.dw_daily', 'gold', 'dw_daily', current_user::text);
INSERT INTO medallion.dependencies (pipeline, upstream, kind) VALUES ('gold.dw_daily', 'silver.dw_orders', 'query');
SELECT set_eq($$SELECT relation FROM medallion.column_snapshots WHERE 'gold.dw_daily' = ANY (pipelines)$$,
              $$VALUES ('gold.dw_daily'), ('silver.dw_orders')$$,
              'a gold pipeline and its upstream are tracked as soon as their catalog rows exist');
ALTER TABLE silver.dw_orders ADD COLUMN for_gold int;
SELECT set_eq($$SELECT pipeline, change FROM pg_temp.changes()$$,
              $$VALUES ('gold.dw_daily', 'column_added'), ('silver.dw_orders', 'column_added')$$,
              'a change upstream is recorded for the gold reader too');
SELECT pg_temp.next();
DELETE FROM medallion.pipelines WHERE name = 'gold.dw_daily';
SELECT is((SELECT count(*)::int FROM medallion.column_snapshots WHERE relation = 'gold.dw_daily'), 0,
          'a pipeline deleted from the catalog is no longer tracked');

-- Columns dropped by another command, tables dropped ---------------------------------------------

CREATE DOMAIN ddlw.code AS text;
ALTER TABLE silver.dw_orders ADD COLUMN dcode ddlw.code;
SELECT pg_temp.next();
DROP DOMAIN ddlw.code CASCADE;
SELECT results_eq($$SELECT path, change, class, tag FROM pg_temp.changes()$$,
                  $$VALUES ('dcode', 'column_dropped', 'breaking', 'DROP DOMAIN')$$,
                  'a column dropped by DROP DOMAIN ... CASCADE is recorded with that tag');
SELECT FROM medallion.resume('silver.dw_orders');
SELECT pg_temp.next();

DROP TABLE silver.dw_orders;
SELECT results_eq($$SELECT pipeline, path, change, class, tag FROM pg_temp.changes()$$,
                  $$VALUES ('silver.dw_orders', NULL, 'table_dropped', 'breaking', 'DROP TABLE')$$,
                  'DROP TABLE of a silver table is recorded');
SELECT results_eq($$SELECT state FROM medallion.pipelines WHERE name = 'silver.dw_orders'$$, $$VALUES ('halted')$$,
                  'and halts the pipeline');
SELECT FROM medallion.resume('silver.dw_orders');
SELECT results_eq($$SELECT e.state, e.hint FROM pg_temp.error_of($q$SELECT medallion.run('silver.dw_orders', strict => true)$q$) e$$,
                  $$VALUES ('42P01', 'Drop the pipeline with medallion.drop_pipeline(''silver.dw_orders''), or restore the table and run medallion.resume(''silver.dw_orders'').')$$,
                  'a run of a pipeline whose table is gone fails (42P01) with a hint naming drop_pipeline()');
SELECT results_eq($$SELECT status, error_class, sqlstate FROM tap.run_row('silver.dw_orders')$$,
                  $$VALUES ('failed', 'schema', '42P01')$$,
                  'not as a success with 0 rows: a manual run is recorded failed');
SELECT results_eq($$SELECT state FROM medallion.pipelines WHERE name = 'silver.dw_orders'$$, $$VALUES ('halted')$$,
                  'and halts the pipeline again');

-- Who may call what ------------------------------------------------------------------------------

SELECT ok(NOT has_function_privilege('public', 'medallion.ddl_watch_command_end()', 'EXECUTE')
          AND NOT has_function_privilege('public', 'medallion.ddl_watch_sql_drop()', 'EXECUTE')
          AND NOT has_function_privilege('public', 'medallion.column_snapshots_track()', 'EXECUTE')
          AND NOT has_function_privilege('public', 'medallion.column_snapshots_sync()', 'EXECUTE'),
          'the watch''s functions are not PUBLIC');
CREATE TRIGGER t AFTER INSERT ON ddlw.unrelated FOR EACH STATEMENT
    EXECUTE FUNCTION medallion.column_snapshots_track();
SELECT throws_ok($$INSERT INTO ddlw.unrelated DEFAULT VALUES$$,
                 '39P01', 'medallion.column_snapshots_track() fires on medallion''s catalog tables only',
                 'the snapshot trigger refuses to fire on a table of a user''s');
CREATE EVENT TRIGGER ddlw_misplaced ON ddl_command_start EXECUTE FUNCTION medallion.ddl_watch_command_end();
SELECT throws_ok($$CREATE TABLE ddlw.t3 (x int)$$, '39P03',
                 'function must be called as a ddl_command_end event trigger',
                 'an event trigger function refuses to run for another event');
DROP EVENT TRIGGER ddlw_misplaced;

-- An internal error of the watch is a WARNING, never a failed DDL ---------------------------------

SAVEPOINT broken;
UPDATE medallion.column_snapshots SET columns = '{"not": "an array"}' WHERE relation = 'bronze.dw_orders';
SELECT lives_ok($$ALTER TABLE bronze.dw_orders ADD COLUMN _broken text$$,
                'the DDL succeeds although the watch failed on a broken snapshot');
SELECT ok(EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'bronze.dw_orders'::regclass AND attname = '_broken'),
          'and took effect');
ROLLBACK TO SAVEPOINT broken;

SELECT set_eq($$SELECT evtname, evtevent FROM pg_event_trigger WHERE evtname LIKE 'medallion%' AND evtname <> 'medallion_owner_follows_table'$$,
              $$VALUES ('medallion_ddl_command_end'::name, 'ddl_command_end'::name), ('medallion_sql_drop', 'sql_drop')$$,
              'the extension installs its two event triggers');

SELECT * FROM finish();
ROLLBACK;
