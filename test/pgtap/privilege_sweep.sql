-- The privilege sweep: every function and view of the extension, listed from the catalog,
-- is classified in one table below (one row per object). The test fails when an object is
-- not classified (a new function must be added here), when PUBLIC's EXECUTE/SELECT differs
-- from its class, and when a call built from the table is allowed to the wrong role:
--   public    anyone may call it; it checks for itself (CREATE on a schema, INSERT, ...)
--   reader    a view everyone reads; rows and columns filtered to what the caller may see
--   owner     redefines a pipeline: its owner (or a member) only
--   operator  runs it: its owner and the roles granted operator on it
--   admin     not granted to PUBLIC: the extension owner (or whom it grants) only
--   internal  revoked from PUBLIC, or refusing outside a run / a trigger
-- Real roles: an owner with a bronze, silver, gold, HTTP source and export pipeline, an
-- operator granted by grant_operator, a stranger, and a reader (SELECT on the silver table).
-- Each owner/operator call is first checked to be a call the owner may make (so a refusal
-- below is the privilege check, not a broken call), then made by the stranger and the reader
-- (42501, and the catalog unchanged), then by the operator (operator class allowed, owner
-- class 42501). Then what each role reads (RLS, secrets), dead letter ids of another
-- pipeline, a table name taken over, and the same calls with look-alikes of every pg_catalog
-- operator and function first on the caller's path and of the common types in pg_temp.
-- A new function: add its row to the table below (the lead classifies what lands at merge).
BEGIN;
SELECT plan(42);

-- The classification ------------------------------------------------------------------------
-- fn: the function's regprocedure text, or the view's name. layers: for a pipeline-scoped
-- call, the pipelines it is made on (%1$L in call is the pipeline, %2$s a dead letter id of
-- it); NULL for a call made once. stranger: the SQLSTATE a role without grants gets from call
-- ('00000': it works, and changes nothing the catalog digest covers); for owner and operator
-- rows it is 42501 by definition.
CREATE TEMP TABLE sweep (
    fn        text PRIMARY KEY,
    class     text NOT NULL CHECK (class IN ('public', 'reader', 'owner', 'operator', 'admin', 'internal')),
    public_ok boolean NOT NULL,      -- PUBLIC has EXECUTE (SELECT for a view)
    layers    text[],
    call      text,
    stranger  text,
    why       text
);
INSERT INTO sweep VALUES
-- bronze
('medallion.create_bronze(text,text,interval,text[],jsonb)', 'public', true, NULL,
 $$SELECT medallion.create_bronze('sw_intruder', 'x')$$, '42501', 'CREATE on schema bronze'),
('medallion.ingest(regclass,jsonb,text,text)', 'public', true, NULL,
 $$SELECT medallion.ingest('bronze.sw_raw', '{"id": 99}')$$, '42501', 'INSERT on the bronze table'),
('medallion.ingest_text(regclass,text,text,text,text)', 'public', true, NULL,
 $$SELECT medallion.ingest_text('bronze.sw_raw', '{"id": 99}')$$, '42501', 'INSERT on the bronze table'),
('medallion.ingest_file(regclass,text,text,text)', 'public', true, NULL,
 $$SELECT medallion.ingest_file('bronze.sw_raw', '/etc/hostname')$$, '42501', 'INSERT and pg_read_server_files'),
('medallion.apply_retention()', 'public', true, NULL,
 $$SELECT medallion.apply_retention()$$, '00000', 'trims the caller''s own tables only'),
('medallion.capture(regclass,text)', 'public', true, NULL,
 $$SELECT medallion.capture('silver.sw_orders')$$, '42501', 'ownership of the captured table'),
('medallion.pseudonymize(text)', 'public', true, NULL,
 $$SELECT medallion.pseudonymize('x')$$, '42501', 'the catalog owner, or CREATE on bronze or silver'),
-- silver, gold and the graph
('medallion.create_silver(text,regclass,jsonb,text[],text,jsonb)', 'public', true, NULL,
 $$SELECT medallion.create_silver('sw_intruder', 'bronze.sw_raw', '{"id": "int"}', '{id}')$$, '42501',
 'CREATE on schema silver and SELECT on the source'),
('medallion.create_gold(text,text,text,jsonb)', 'public', true, NULL,
 $$SELECT medallion.create_gold('sw_intruder', 'SELECT 1 AS one')$$, '42501', 'CREATE on schema gold'),
('medallion.run_all()', 'public', true, NULL,
 $$SELECT medallion.run_all()$$, '00000', 'runs only the pipelines the caller operates'),
('medallion.lineage_graph(text)', 'public', true, NULL,
 $$SELECT medallion.lineage_graph()$$, '00000', 'names and counts, like medallion.lineage'),
('medallion.checklist(text)', 'public', true, NULL,
 $$SELECT count(*) FROM medallion.checklist('gold.sw_daily')$$, '00000', 'counts and states, like medallion.status'),
('medallion.pipeline_lag(text)', 'public', true, NULL,
 $$SELECT medallion.pipeline_lag('silver.sw_orders')$$, '00000', 'an interval, behind medallion.freshness'),
('medallion.schedule_job_state(text)', 'public', true, NULL,
 $$SELECT count(*) FROM medallion.schedule_job_state('gold.sw_daily')$$, '00000', 'security invoker'),
('medallion.restore_schedules()', 'public', true, NULL,
 $$SELECT count(*) FROM medallion.restore_schedules()$$, '00000', 're-creates jobs through schedule(), with its checks'),
('medallion.progress_slots()', 'public', true, NULL,
 $$SELECT count(*) FROM medallion.progress_slots()$$, '00000', 'behind medallion.progress'),
('medallion.owns_pipeline(text)', 'public', true, NULL,
 $$SELECT medallion.owns_pipeline('silver.sw_orders')$$, '00000', 'answers for the caller only'),
-- operator: run it, not redefine it
('medallion.run(text,boolean,boolean)', 'operator', true, '{silver,gold,source,export}',
 $$SELECT medallion.run(%1$L)$$, NULL, NULL),
('medallion.trigger(text)', 'operator', true, '{silver,gold,source,export}',
 $$SELECT medallion.trigger(%1$L)$$, NULL, NULL),
('medallion.pause(text)', 'operator', true, '{silver,gold,source,export}',
 $$SELECT medallion.pause(%1$L)$$, NULL, NULL),
('medallion.resume(text)', 'operator', true, '{silver,gold,source,export}',
 $$SELECT medallion.resume(%1$L)$$, NULL, NULL),
('medallion.replay_dlq(text,bigint[])', 'operator', true, '{bronze,silver}',
 $$SELECT medallion.replay_dlq(%1$L)$$, NULL, NULL),
('medallion.replay_quarantine(text,bigint[])', 'operator', true, '{silver}',
 $$SELECT medallion.replay_quarantine(%1$L)$$, NULL, NULL),
-- owner: define, alter, backfill, roll back, drop, schedule, triage, grant
('medallion.alter_pipeline(text,jsonb)', 'owner', true, '{bronze,silver,gold,source,export}',
 $$SELECT medallion.alter_pipeline(%1$L, '{"steward": "intruder"}')$$, NULL, NULL),
('medallion.expect(text,text,text,text)', 'owner', true, '{silver}',
 $$SELECT medallion.expect(%1$L, 'intruder', 'true', 'fail')$$, NULL, NULL),
('medallion.schedule(text,text)', 'owner', true, '{silver,gold,source,export}',
 $$SELECT medallion.schedule(%1$L, '1 hour')$$, NULL, NULL),
('medallion.unschedule(text)', 'owner', true, '{silver,gold,source,export}',
 $$SELECT medallion.unschedule(%1$L)$$, NULL, NULL),
('medallion.alter_contract(text,jsonb,jsonb,boolean)', 'owner', true, '{silver}',
 $$SELECT medallion.alter_contract(%1$L, '{"note": "text"}')$$, NULL, NULL),
('medallion.backfill(text,date,date,text,boolean,jsonb)', 'owner', true, '{silver,gold}',
 $$SELECT medallion.backfill(%1$L, '2024-01-01', '2024-01-02')$$, NULL, NULL),
('medallion.backfill_plan(text,date,date,text)', 'owner', true, '{silver,gold}',
 $$SELECT count(*) FROM medallion.backfill_plan(%1$L, '2024-01-01', '2024-01-02')$$, NULL, NULL),
('medallion.rollback(text)', 'owner', true, '{silver,gold}',
 $$SELECT medallion.rollback(%1$L)$$, NULL, NULL),
('medallion.drop_pipeline(text,boolean,boolean)', 'owner', true, '{bronze,silver,gold,source,export}',
 $$SELECT medallion.drop_pipeline(%1$L, true, true)$$, NULL, NULL),
('medallion.dlq_correct(bigint,text)', 'owner', true, '{bronze,silver}',
 $$SELECT medallion.dlq_correct(%2$s, '{"id": 5, "day": "2024-01-01"}')$$, NULL, NULL),
('medallion.dlq_discard(text,bigint[],text)', 'owner', true, '{bronze,silver}',
 $$SELECT medallion.dlq_discard(%1$L, NULL, 'intruder')$$, NULL, NULL),
('medallion.rename_pipeline(text,text)', 'owner', true, '{bronze,silver,gold,source,export}',
 $$SELECT medallion.rename_pipeline(%1$L, %1$L || '_renamed')$$, NULL, NULL),
('medallion.grant_operator(text,regrole)', 'owner', true, '{bronze,silver,gold,source,export}',
 $$SELECT medallion.grant_operator(%1$L, 'medallion_tap_sw_stranger')$$, NULL, NULL),
('medallion.revoke_operator(text,regrole)', 'owner', true, '{bronze,silver,gold,source,export}',
 $$SELECT medallion.revoke_operator(%1$L, 'medallion_tap_sw_operator')$$, NULL, NULL),
-- admin: granted by the extension's owner
('medallion.create_http_source(regclass,text,jsonb,text)', 'admin', false, NULL,
 $$SELECT medallion.create_http_source('bronze.sw_raw', 'http://127.0.0.1:9/x')$$, '42501', 'makes the server fetch URLs'),
('medallion.create_export(regclass,text,jsonb,text)', 'admin', false, NULL,
 $$SELECT medallion.create_export('silver.sw_orders', 'http://127.0.0.1:9/x')$$, '42501', 'makes the server send data'),
('medallion.add_webhook(text,jsonb)', 'admin', false, NULL,
 $$SELECT medallion.add_webhook('http://127.0.0.1:9/x')$$, '42501', 'alerts of every pipeline'),
('medallion.remove_webhook(bigint)', 'admin', false, NULL,
 $$SELECT medallion.remove_webhook(1)$$, '42501', NULL),
('medallion.extension_changed()', 'admin', false, NULL,
 $$SELECT medallion.extension_changed()$$, '42501', 'wakes the launcher of every database'),
('medallion.pseudonym_new_key()', 'admin', false, NULL,
 $$SELECT medallion.pseudonym_new_key()$$, '42501', 'the pseudonym key'),
-- internal: a run's generated SQL calls these; they refuse outside the caller's own run
('medallion.silver_check(jsonb,jsonb,boolean)', 'internal', true, NULL,
 $$SELECT medallion.silver_check('{"id": 1}', '{"columns": {"id": "int"}, "unique_key": ["id"]}', false)$$, '55000', NULL),
('medallion.silver_keep(bigint,jsonb,text,text[])', 'internal', true, NULL,
 $$SELECT medallion.silver_keep(1, '{}', 'b', NULL)$$, '55000', NULL),
('medallion.contract_violation(text,text,text)', 'internal', true, NULL,
 $$SELECT medallion.contract_violation('type', 'id', 'x')$$, '55000', NULL),
('medallion.check_required(anyelement,boolean,text,text)', 'internal', true, NULL,
 $$SELECT medallion.check_required(1, false, 'id', 'x')$$, '55000', NULL),
('medallion.check_accepted(anyelement,anyarray,text)', 'internal', true, NULL,
 $$SELECT medallion.check_accepted(1, ARRAY[2], 'id')$$, '55000', NULL),
('medallion.check_reference(anyelement,boolean,text,text)', 'internal', true, NULL,
 $$SELECT medallion.check_reference(1, false, 'id', 'x')$$, '55000', NULL),
('medallion.count_read()', 'internal', true, NULL,
 $$SELECT medallion.count_read()$$, '55000', NULL),
('medallion.count_insert(bigint)', 'internal', true, NULL,
 $$SELECT medallion.count_insert(1)$$, '55000', NULL),
('medallion.change_note(integer,anyelement,anyelement)', 'internal', true, NULL,
 $$SELECT medallion.change_note(0, 1, 2)$$, '55000', NULL),
('medallion.payload_keys_note(jsonb)', 'internal', true, NULL,
 $$SELECT medallion.payload_keys_note('{"a": 1}')$$, '55000', NULL),
('medallion.check_datetime(text,text)', 'internal', true, NULL,
 $$SELECT medallion.check_datetime('2024-01-01', 'day')$$, '00000', 'pure: its result depends on its arguments only'),
('medallion.in_window(xid8,pg_snapshot)', 'internal', true, NULL,
 $$SELECT medallion.in_window('1', pg_current_snapshot())$$, '00000', 'pure: its result depends on its arguments only'),
('medallion.window_support(internal)', 'internal', true, NULL, NULL, NULL, 'planner support: not callable from SQL'),
-- internal: trigger and event trigger functions (CREATE TRIGGER needs EXECUTE; they refuse
-- to run outside a trigger) and the ones revoked from PUBLIC
('medallion.bronze_append_only()', 'internal', true, NULL, $$SELECT medallion.bronze_append_only()$$, '39P01', NULL),
('medallion.bronze_redact()', 'internal', true, NULL, $$SELECT medallion.bronze_redact()$$, '39P01', NULL),
('medallion.capture_change()', 'internal', true, NULL, $$SELECT medallion.capture_change()$$, '39P01', NULL),
('medallion.bronze_landed()', 'internal', true, NULL, $$SELECT medallion.bronze_landed()$$, '39P01', NULL),
('medallion.dependencies_acyclic()', 'internal', false, NULL, $$SELECT medallion.dependencies_acyclic()$$, '42501', NULL),
('medallion.column_snapshots_track()', 'internal', false, NULL, $$SELECT medallion.column_snapshots_track()$$, '42501', NULL),
('medallion.contract_cache_invalidate()', 'internal', false, NULL, $$SELECT medallion.contract_cache_invalidate()$$, '42501', NULL),
('medallion.ddl_watch_command_end()', 'internal', false, NULL, $$SELECT medallion.ddl_watch_command_end()$$, '42501', NULL),
('medallion.ddl_watch_sql_drop()', 'internal', false, NULL, $$SELECT medallion.ddl_watch_sql_drop()$$, '42501', NULL),
('medallion.owner_follows_table()', 'internal', false, NULL, $$SELECT medallion.owner_follows_table()$$, '42501', NULL),
('medallion.tracked_relations()', 'internal', false, NULL, $$SELECT count(*) FROM medallion.tracked_relations()$$, '42501', NULL),
('medallion.column_snapshot(oid)', 'internal', false, NULL, $$SELECT medallion.column_snapshot('silver.sw_orders'::regclass)$$, '42501', NULL),
('medallion.rename_reference(jsonb,text,text)', 'internal', false, NULL, $$SELECT medallion.rename_reference('{}', 'a', 'b')$$, '42501', NULL),
('medallion.rename_references(jsonb,text,text)', 'internal', false, NULL, $$SELECT medallion.rename_references('{}', 'a', 'b')$$, '42501', NULL),
('medallion.column_snapshots_sync()', 'internal', false, NULL, $$SELECT medallion.column_snapshots_sync()$$, '42501', NULL),
-- reader: the views (PUBLIC reads them; each filters what it shows)
('medallion.freshness', 'reader', true, NULL, $$SELECT count(*) FROM medallion.freshness$$, '00000', 'lags and SLAs'),
('medallion.run_details', 'reader', true, NULL, $$SELECT count(*) FROM medallion.run_details$$, '00000', 'messages of the caller''s pipelines only'),
('medallion.alert_details', 'reader', true, NULL, $$SELECT count(*) FROM medallion.alert_details$$, '00000', 'messages of the caller''s pipelines only'),
('medallion.lineage', 'reader', true, NULL, $$SELECT count(*) FROM medallion.lineage$$, '00000', 'names and counts'),
('medallion.dlq_summary', 'reader', true, NULL, $$SELECT count(*) FROM medallion.dlq_summary$$, '00000', 'the caller''s dead letters only'),
('medallion.status', 'reader', true, NULL, $$SELECT count(*) FROM medallion.status$$, '00000', 'counts and states only'),
('medallion.progress', 'reader', true, NULL, $$SELECT count(*) FROM medallion.progress$$, '00000', 'what medallion.runs shows');
GRANT SELECT ON sweep TO PUBLIC;

-- 1. Every function and view is classified, and PUBLIC's grants match ----------------------

CREATE TEMP VIEW sweep_objects AS
SELECT p.oid::regprocedure::text AS fn, 'function' AS kind,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_ok
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'medallion'
UNION ALL
SELECT c.oid::regclass::text, 'view', has_table_privilege('public', c.oid, 'SELECT')
FROM pg_class c
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'medallion'
WHERE c.relkind IN ('v', 'm');

SELECT ok((SELECT count(*) FROM sweep_objects) > 60, 'the extension''s functions and views are listed from the catalog');
SELECT is((SELECT coalesce(string_agg(fn, ', ' ORDER BY fn), '') FROM sweep_objects o
           WHERE NOT EXISTS (SELECT 1 FROM sweep s WHERE s.fn = o.fn)),
          '', 'every function and view of the extension is classified (add new ones to the table)');
SELECT is((SELECT coalesce(string_agg(fn, ', ' ORDER BY fn), '') FROM sweep s
           WHERE NOT EXISTS (SELECT 1 FROM sweep_objects o WHERE o.fn = s.fn)),
          '', 'the table classifies nothing that does not exist');
SELECT is((SELECT coalesce(string_agg(s.fn || ' (' || s.class || ': ' || CASE WHEN s.public_ok THEN 'granted' ELSE 'revoked' END
                                       || ', is ' || CASE WHEN o.public_ok THEN 'granted' ELSE 'revoked' END || ')', ', ' ORDER BY s.fn), '')
           FROM sweep s JOIN sweep_objects o USING (fn)
           WHERE s.public_ok <> o.public_ok),
          '', 'PUBLIC''s EXECUTE (SELECT on views) is what the classification says');
SELECT is((SELECT coalesce(string_agg(fn, ', ' ORDER BY fn), '') FROM sweep
           WHERE (class IN ('public', 'reader', 'owner', 'operator') AND NOT public_ok)
              OR (class = 'admin' AND public_ok)
              OR (class IN ('owner', 'operator') AND (layers IS NULL OR call IS NULL))
              OR (class NOT IN ('owner', 'operator') AND stranger IS NULL AND call IS NOT NULL)),
          '', 'the classification is consistent (API classes granted, admin revoked, every pipeline call scoped)');

-- The catalog tables are written by medallion alone (as the catalog owner, through the gateway).
SELECT is((SELECT coalesce(string_agg(c.oid::regclass::text || ' ' || p.priv, ', ' ORDER BY 1), '')
           FROM pg_class c
           JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
           JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'medallion'
           CROSS JOIN unnest(CASE WHEN c.relkind = 'S' THEN ARRAY['USAGE', 'UPDATE']
                                  ELSE ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'] END) p(priv)
           WHERE c.relkind IN ('r', 'p', 'S')
             AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege('public', c.oid, p.priv)
                      ELSE has_table_privilege('public', c.oid, p.priv) END),
          '', 'PUBLIC may write no catalog table and use no catalog sequence');

-- The pipelines, owned by a non-superuser ----------------------------------------------------

CREATE ROLE medallion_tap_sw_owner NOLOGIN;
CREATE ROLE medallion_tap_sw_operator NOLOGIN;
CREATE ROLE medallion_tap_sw_stranger NOLOGIN;
CREATE ROLE medallion_tap_sw_reader NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver, gold TO medallion_tap_sw_owner;
-- the administrator grants the network functions to the owner
GRANT EXECUTE ON FUNCTION medallion.create_http_source(regclass, text, jsonb, text),
                          medallion.create_export(regclass, text, jsonb, text) TO medallion_tap_sw_owner;
SET LOCAL medallion.http_allowed_hosts = '127.0.0.1';

SET ROLE medallion_tap_sw_owner;
SELECT FROM medallion.create_bronze('sw_raw', 'shop');
SELECT FROM medallion.ingest_text('bronze.sw_raw', E'{"id": 1, "amount": 5, "day": "2024-01-01"}\n{"id": 2, "amount": "lots", "day": "2024-01-02"}\nnot json at all', 'ndjson', 'sw1');
SELECT FROM medallion.create_silver('sw_orders', 'bronze.sw_raw',
    '{"id": "bigint", "amount": "numeric", "day": "date"}', ARRAY['id'], NULL, '{"compatibility": "none"}');
SELECT FROM medallion.run('silver.sw_orders');
SELECT FROM medallion.create_gold('sw_daily', 'SELECT day, sum(amount) AS amount FROM silver.sw_orders GROUP BY day', 'day');
SELECT FROM medallion.run('gold.sw_daily');
SELECT FROM medallion.create_http_source('bronze.sw_raw', 'http://127.0.0.1:9/items',
    '{"headers": {"Authorization": "Bearer sw-source-secret"}}', 'sw_api');
SELECT FROM medallion.create_export('silver.sw_orders', 'http://127.0.0.1:9/hook',
    '{"headers": {"Authorization": "Bearer sw-export-secret"}}', 'sw_out');
SELECT FROM medallion.pipelines p, medallion.grant_operator(p.name, 'medallion_tap_sw_operator')
WHERE p.name LIKE '%sw\_%' ESCAPE '\';
GRANT SELECT ON silver.sw_orders TO medallion_tap_sw_reader;
SELECT FROM medallion.schedule('silver.sw_orders', '1 hour');
RESET ROLE;
-- a cron schedule whose pg_cron job lives elsewhere (pg_cron is not in this database)
UPDATE medallion.pipelines SET schedule = '*/5 * * * *', schedule_kind = 'cron' WHERE name = 'gold.sw_daily';

CREATE TEMP TABLE sweep_pipelines (layer text PRIMARY KEY, name text NOT NULL);
INSERT INTO sweep_pipelines VALUES ('bronze', 'bronze.sw_raw'), ('silver', 'silver.sw_orders'),
    ('gold', 'gold.sw_daily'), ('source', 'source.sw_api'), ('export', 'export.sw_out');
GRANT SELECT ON sweep_pipelines TO PUBLIC;
SELECT is((SELECT count(*)::int FROM medallion.pipelines p JOIN sweep_pipelines s ON s.name = p.name
           WHERE p.owner::text = 'medallion_tap_sw_owner'), 5,
          'the owner has a bronze, silver, gold, HTTP source and export pipeline');
SELECT ok((SELECT count(*) FROM medallion.dlq WHERE pipeline = 'bronze.sw_raw') > 0
          AND (SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.sw_orders') > 0,
          'with dead letters in bronze and silver');

-- Every call the table builds: one row per function and pipeline.
CREATE TEMP VIEW sweep_calls AS
SELECT s.fn, s.class, s.stranger, l.layer,
       format(s.call, p.name, (SELECT min(id) FROM medallion.dlq d WHERE d.pipeline = p.name)) AS sql
FROM sweep s
LEFT JOIN LATERAL unnest(s.layers) l(layer) ON true
LEFT JOIN sweep_pipelines p ON p.layer = l.layer
WHERE s.call IS NOT NULL;
GRANT SELECT ON sweep_calls TO PUBLIC;

-- sweep_try(role, sql, keep, path): the SQLSTATE of sql run as role ('00000' when it works),
-- with search_path set to path if given; the call's effects are kept only when keep.
CREATE FUNCTION pg_temp.sweep_try(r text, q text, keep boolean, path text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text := '00000';
BEGIN
    PERFORM set_config('sweep.caller', r, true);
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', r);
        IF path IS NOT NULL THEN
            EXECUTE 'SET LOCAL search_path = ' || path;
        END IF;
        EXECUTE q;
        IF NOT keep THEN
            RAISE EXCEPTION 'sweep: undo';
        END IF;
    EXCEPTION WHEN OTHERS THEN
        IF SQLERRM <> 'sweep: undo' THEN st := SQLSTATE; END IF;
    END;
    RESET ROLE;
    RETURN st;
END $$;

-- A digest of what a refused call must leave alone: the catalog and the pipelines' tables.
CREATE FUNCTION pg_temp.sweep_digest() RETURNS text LANGUAGE sql AS $$
SELECT md5(concat_ws('|',
    (SELECT string_agg(to_jsonb(p)::text, ',' ORDER BY name) FROM medallion.pipelines p),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY pipeline, role) FROM medallion.operators x),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY id) FROM medallion.dlq x),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY id) FROM medallion.quarantine x),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY pipeline, name) FROM medallion.expectations x),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY pipeline, version) FROM medallion.contract_versions x),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY 1) FROM medallion.dependencies x),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY 1) FROM medallion.watermarks x),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY 1) FROM medallion.http_sources x),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY 1) FROM medallion.webhooks x),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY 1) FROM medallion.backfills x),
    (SELECT count(*)::text FROM medallion.runs),
    (SELECT count(*)::text FROM medallion.batches),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY id) FROM silver.sw_orders x),
    (SELECT string_agg(to_jsonb(x)::text, ',' ORDER BY day) FROM gold.sw_daily x),
    (SELECT count(*)::text FROM bronze.sw_raw),
    (SELECT string_agg(c.oid::regclass::text, ',' ORDER BY c.oid)
       FROM pg_class c WHERE c.relnamespace IN ('bronze'::regnamespace, 'silver'::regnamespace, 'gold'::regnamespace))))
$$;

-- 2. Each owner and operator call is one the owner may make ---------------------------------

CREATE TEMP TABLE sweep_owner AS
SELECT c.*, pg_temp.sweep_try('medallion_tap_sw_owner', c.sql, false) AS got
FROM sweep_calls c WHERE c.class IN ('owner', 'operator');
SELECT is((SELECT coalesce(string_agg(fn || ' on ' || layer || ': ' || got, ', ' ORDER BY fn, layer), '')
           FROM sweep_owner WHERE got IN ('42501', '42883', '42P01', '42704', '42601', '42703')),
          '', 'the owner may make every owner and operator call the sweep makes (each undone)');
SELECT ok((SELECT count(*) FROM sweep_owner) >= 40, 'the sweep makes more than 40 pipeline-scoped calls');

-- 3. A stranger and a reader: 42501 for every owner and operator call, the expected outcome for
--    the rest, and nothing changed ---------------------------------------------------------------

CREATE TEMP TABLE sweep_digest_before AS SELECT pg_temp.sweep_digest() AS d;
CREATE TEMP TABLE sweep_strangers AS
SELECT r.role, c.*, pg_temp.sweep_try(r.role, c.sql, true) AS got
FROM sweep_calls c,
     (VALUES ('medallion_tap_sw_stranger'), ('medallion_tap_sw_reader')) r(role)
ORDER BY c.fn, c.layer;   -- (a call wrongly allowed is kept: the calls after it show it too)
SELECT is((SELECT coalesce(string_agg(role || ': ' || fn || coalesce(' on ' || layer, '') || ' got ' || got, ', '
                                      ORDER BY role, fn, layer), '')
           FROM sweep_strangers
           WHERE class IN ('owner', 'operator') AND got <> '42501'),
          '', 'every owner and operator call is refused to a stranger and to a reader with 42501');
SELECT is((SELECT coalesce(string_agg(role || ': ' || fn || ' got ' || got || ', expected ' || stranger, ', '
                                      ORDER BY role, fn), '')
           FROM sweep_strangers
           WHERE class NOT IN ('owner', 'operator') AND got <> stranger),
          '', 'every other call gives a stranger and a reader the classified outcome');
SELECT is(pg_temp.sweep_digest(), (SELECT d FROM sweep_digest_before),
          'and nothing in the catalog or the pipelines'' tables changed');

-- 4. The operator: allowed to run, refused to redefine ----------------------------------------

CREATE TEMP TABLE sweep_operator AS
SELECT c.*, pg_temp.sweep_try('medallion_tap_sw_operator', c.sql, false) AS got
FROM sweep_calls c WHERE c.class IN ('owner', 'operator');
SELECT is((SELECT coalesce(string_agg(fn || ' on ' || layer || ': ' || got, ', ' ORDER BY fn, layer), '')
           FROM sweep_operator o
           WHERE class = 'operator'
             AND got IS DISTINCT FROM (SELECT w.got FROM sweep_owner w WHERE w.sql = o.sql)),
          '', 'the operator makes every operator call as the owner does');
SELECT is((SELECT coalesce(string_agg(fn || ' on ' || layer || ': ' || got, ', ' ORDER BY fn, layer), '')
           FROM sweep_operator WHERE class = 'owner' AND got <> '42501'),
          '', 'and every owner call is refused to it with 42501');

-- 5. What a reader sees ------------------------------------------------------------------------

SET ROLE medallion_tap_sw_reader;
SELECT results_eq(
    $$SELECT (SELECT count(*)::int FROM medallion.status WHERE pipeline LIKE '%sw\_%' ESCAPE '\'),
             (SELECT count(*)::int FROM medallion.dlq WHERE pipeline LIKE '%sw\_%' ESCAPE '\'),
             (SELECT count(*)::int FROM medallion.dlq_summary),
             (SELECT count(*)::int FROM medallion.run_details WHERE pipeline LIKE '%sw\_%' ESCAPE '\' AND error_message IS NOT NULL),
             (SELECT count(*)::int FROM medallion.http_sources WHERE headers::text LIKE '%secret%')
             + (SELECT count(*)::int FROM medallion.pipelines WHERE definition::text LIKE '%sw-%-secret%'),
             (SELECT count(*)::int FROM silver.sw_orders)$$,
    $$VALUES (5, 0, 0, 0, 0, 1)$$,
    'a reader sees the pipelines'' states and its granted table, no dead letter, message or secret');
RESET ROLE;
SET ROLE medallion_tap_sw_reader;
SELECT throws_ok($$SELECT count(*) FROM medallion.webhooks$$, '42501', NULL, 'nor the webhooks (their headers)');
RESET ROLE;
SET ROLE medallion_tap_sw_operator;
SELECT results_eq(
    $$SELECT (SELECT count(*)::int FROM medallion.dlq WHERE pipeline LIKE '%sw\_%' ESCAPE '\'),
             (SELECT count(*)::int FROM medallion.http_sources),
             (SELECT count(*)::int FROM medallion.run_details WHERE pipeline LIKE '%sw\_%' ESCAPE '\' AND error_message IS NOT NULL)$$,
    $$VALUES (0, 0, 0)$$,
    'an operator runs the pipelines but reads no dead letter, secret header or message either');
RESET ROLE;
SET ROLE medallion_tap_sw_owner;
SELECT results_eq(
    $$SELECT (SELECT count(*)::int FROM medallion.dlq WHERE pipeline LIKE '%sw\_%' ESCAPE '\') > 0,
             (SELECT count(*)::int FROM medallion.dlq_summary) > 0,
             (SELECT count(*)::int FROM medallion.http_sources WHERE headers::text LIKE '%sw-%-secret%')$$,
    $$VALUES (true, true, 2)$$,
    'the owner sees its dead letters and secret headers (what the others were not shown exists)');
-- (schedule_job_state raised 42501 for every role but a superuser: cron.database_name is a
-- superuser-only setting)
SELECT results_eq($$SELECT ok, hint LIKE 'Run SELECT * FROM medallion.restore_schedules(), or: connected to %'
                    FROM medallion.checklist('gold.sw_daily') WHERE item = 'scheduled'$$,
                  $$VALUES (false, true)$$,
                  'the owner''s checklist of its cron-scheduled pipeline reports the missing pg_cron job');
SELECT results_eq($$SELECT pipeline, status FROM medallion.restore_schedules() WHERE pipeline LIKE '%sw\_%' ESCAPE '\' ORDER BY 1$$,
                  $$VALUES ('gold.sw_daily', 'missing'), ('silver.sw_orders', 'ok')$$,
                  'and so does its restore_schedules()');
RESET ROLE;
SET ROLE medallion_tap_sw_reader;
SELECT results_eq($$SELECT status, action LIKE 'connected to the database cron.database_name names, run: SELECT cron.schedule_in_database(''medallion:gold.sw_daily@%'
                    FROM medallion.schedule_job_state('gold.sw_daily')$$,
                  $$VALUES ('missing', true)$$,
                  'another role is given the call to run, without the superuser-only setting''s value');
RESET ROLE;

-- 5b. Ids of another pipeline's dead letters: an owner reaches its own rows only ------------------

SELECT FROM medallion.create_bronze('sw_admin', 'ops');
SELECT FROM medallion.ingest_text('bronze.sw_admin', E'{"id": 1}\nbroken', 'ndjson', 'a1');
CREATE TEMP TABLE sweep_foreign AS SELECT array_agg(id) AS ids FROM medallion.dlq WHERE pipeline = 'bronze.sw_admin';
GRANT SELECT ON sweep_foreign TO PUBLIC;
CREATE TEMP TABLE sweep_foreign_before AS SELECT md5(string_agg(to_jsonb(d)::text, ',' ORDER BY id)) AS d
FROM medallion.dlq d WHERE pipeline = 'bronze.sw_admin';
SET ROLE medallion_tap_sw_owner;
SELECT is(medallion.dlq_discard('bronze.sw_raw', (SELECT ids FROM sweep_foreign), 'not mine'), 0::bigint,
          'dlq_discard of its own pipeline with another pipeline''s ids settles nothing');
SELECT is(medallion.replay_dlq('silver.sw_orders', (SELECT ids FROM sweep_foreign)), 0::bigint,
          'replay_dlq with another pipeline''s ids replays nothing');
SELECT throws_ok($$SELECT medallion.dlq_correct((SELECT ids[1] FROM sweep_foreign), '{"id": 2}')$$, '42501', NULL,
                 'dlq_correct of another pipeline''s dead letter is refused');
RESET ROLE;
SELECT is((SELECT md5(string_agg(to_jsonb(d)::text, ',' ORDER BY id)) FROM medallion.dlq d WHERE pipeline = 'bronze.sw_admin'),
          (SELECT d FROM sweep_foreign_before), 'the other pipeline''s dead letters are unchanged');

-- 5b'. Credentials in a URL: a source's or export's URL is in pipelines.definition, which
-- PUBLIC reads, so a URL with a user name or password is refused (headers are the place)
SET ROLE medallion_tap_sw_owner;
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.sw_raw', 'http://me:s3cret@127.0.0.1:9/items', '{}', 'sw_leak')$$,
                 '22023', 'URL must not carry a user name or password', 'an HTTP source URL with credentials is refused');
SELECT throws_ok($$SELECT medallion.create_export('silver.sw_orders', 'http://me@127.0.0.1:9/hook', '{}', 'sw_leak')$$,
                 '22023', 'URL must not carry a user name or password', 'and so is an export''s');
SELECT throws_ok($$SELECT medallion.alter_pipeline('source.sw_api', '{"url": "http://me:s3cret@127.0.0.1:9/items"}')$$,
                 '22023', 'URL must not carry a user name or password', 'and a changed URL');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM medallion.pipelines WHERE definition::text LIKE '%s3cret%'), 0,
          'no credentials were stored');

-- 5c. A table name taken over: ownership does not follow a look-alike table ----------------------
-- (it did: once the pipeline's table was renamed away, whoever could create a table of that
-- name and ALTER it became the pipeline's owner, and read its dead letters)

SET ROLE medallion_tap_sw_owner;
SELECT FROM medallion.create_silver('sw_victim', 'bronze.sw_raw', '{"id": "bigint", "amount": "numeric"}', ARRAY['id']);
SELECT FROM medallion.run('silver.sw_victim');
SET LOCAL client_min_messages = error;
ALTER TABLE silver.sw_victim RENAME TO sw_victim_old;
RESET client_min_messages;
RESET ROLE;
GRANT CREATE ON SCHEMA silver TO medallion_tap_sw_stranger;
SET ROLE medallion_tap_sw_stranger;
CREATE TABLE silver.sw_victim (id bigint);
ALTER TABLE silver.sw_victim ADD COLUMN amount numeric;
-- shaped like a silver table, so that a run could write into it
ALTER TABLE silver.sw_victim ADD COLUMN _source_seq int8 NOT NULL, ADD COLUMN _batch_id text,
    ADD COLUMN _loaded_at timestamptz NOT NULL DEFAULT now(), ADD COLUMN _run_id int8,
    ADD COLUMN _created_run_id int8, ADD PRIMARY KEY (id);
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.sw_victim'), 0,
          'a role that takes the name of a pipeline''s table reads none of its dead letters');
RESET ROLE;
SELECT results_eq($$SELECT owner::text, state FROM medallion.pipelines WHERE name = 'silver.sw_victim'$$,
                  $$VALUES ('medallion_tap_sw_owner', 'halted')$$,
                  'the pipeline keeps its owner (and stays halted)');
SELECT ok((SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.sw_victim') > 0,
          'the dead letters it was not shown exist');
-- the stranger's table even gives the owner privileges; the owner resumes the pipeline
SET ROLE medallion_tap_sw_stranger;
GRANT ALL ON silver.sw_victim TO medallion_tap_sw_owner;
RESET ROLE;
SET ROLE medallion_tap_sw_owner;
SELECT FROM medallion.resume('silver.sw_victim');
-- a new bronze row: a run has something to write
SELECT FROM medallion.ingest('bronze.sw_raw', '[{"id": 9001, "amount": 1}]');
SELECT throws_ok($$SELECT medallion.run('silver.sw_victim')$$, '42501', NULL,
                 'a run into a table of that name that the owner does not own is refused');
SELECT throws_ok($$SELECT medallion.backfill('silver.sw_victim', NULL, NULL)$$, '42501', NULL,
                 'and so is a backfill');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM silver.sw_victim), 0, 'the look-alike table received none of the owner''s rows');
REVOKE CREATE ON SCHEMA silver FROM medallion_tap_sw_stranger;
SELECT FROM medallion.drop_pipeline('silver.sw_victim');
DROP TABLE silver.sw_victim, silver.sw_victim_old;

-- 6. The search path: look-alikes first on the caller's path and in pg_temp ---------------------
-- The stranger plants, in a schema first on the path of every caller, a copy of every
-- pg_catalog operator and plain function, and in pg_temp domains named like the common types,
-- each counting its calls; a call counts as bad when the look-alike runs as another role than
-- the one making the call (a sequence: it counts what a rollback undoes). Then the owner, the
-- operator and the stranger make every call of the sweep with that path.
CREATE SCHEMA sw_evil AUTHORIZATION medallion_tap_sw_stranger;
CREATE SEQUENCE sw_evil.live;
CREATE SEQUENCE sw_evil.bad;
GRANT USAGE ON SCHEMA sw_evil TO PUBLIC;
GRANT USAGE ON SEQUENCE sw_evil.live, sw_evil.bad TO PUBLIC;
SET LOCAL search_path = public, pg_catalog, pg_temp;   -- this script's own SQL: pg_temp last
SET ROLE medallion_tap_sw_stranger;
CREATE FUNCTION sw_evil.rec(what text) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    IF current_user::text OPERATOR(pg_catalog.<>) current_setting('sweep.caller', true) THEN
        PERFORM nextval('sw_evil.bad');
        RAISE WARNING 'look-alike % called as % by %', what, current_user, current_setting('sweep.caller', true);
    ELSE
        PERFORM nextval('sw_evil.live');
    END IF;
    RETURN true;
END $f$;
DO $do$
DECLARE
    o record; f record; n int := 0; cl text;
BEGIN
    FOR o IN SELECT op.oprname, op.oprleft, op.oprright, op.oprresult, op.oprcode
             FROM pg_catalog.pg_operator op
             WHERE op.oprnamespace = 'pg_catalog'::regnamespace AND op.oprleft <> 0
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid IN (op.oprleft, op.oprright, op.oprresult)
                               AND (t.typtype = 'p' OR t.typname IN ('internal', 'cstring')))
    LOOP
        n := n + 1;
        BEGIN
            EXECUTE format('CREATE FUNCTION sw_evil.op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql AS %L', n,
                           format_type(o.oprleft, NULL), format_type(o.oprright, NULL), format_type(o.oprresult, NULL),
                           format('BEGIN PERFORM sw_evil.rec(%L); RETURN $1 OPERATOR(pg_catalog.%s) $2; END',
                                  'operator ' || o.oprname, o.oprname));
            EXECUTE format('CREATE OPERATOR sw_evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = sw_evil.op_%s)',
                           o.oprname, format_type(o.oprleft, NULL), format_type(o.oprright, NULL), n);
        EXCEPTION WHEN others THEN NULL;
        END;
    END LOOP;
    FOR f IN SELECT p.proname, p.pronargs, pg_get_function_identity_arguments(p.oid) AS ia,
                    pg_get_function_result(p.oid) AS res
             FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f' AND NOT p.proretset
               AND p.proargmodes IS NULL AND p.pronargs BETWEEN 0 AND 4 AND p.proname !~ '^(pg_|_)|(in|out|recv|send)$'
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE (t.oid = ANY (p.proargtypes) OR t.oid = p.prorettype)
                               AND (t.typtype = 'p' OR t.typname IN ('internal', 'cstring')))
    LOOP
        SELECT string_agg('$' || i, ', ' ORDER BY i) INTO cl FROM generate_series(1, f.pronargs) i;
        BEGIN
            EXECUTE format('CREATE FUNCTION sw_evil.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L', f.proname, f.ia, f.res,
                           format('BEGIN PERFORM sw_evil.rec(%L); RETURN pg_catalog.%I(%s); END',
                                  'function ' || f.proname, f.proname, coalesce(cl, '')));
        EXCEPTION WHEN others THEN NULL;
        END;
    END LOOP;
END
$do$;
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (sw_evil.rec('type text'));
CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (sw_evil.rec('type jsonb'));
CREATE DOMAIN pg_temp.json AS pg_catalog.json CHECK (sw_evil.rec('type json'));
CREATE DOMAIN pg_temp.date AS pg_catalog.date CHECK (sw_evil.rec('type date'));
CREATE DOMAIN pg_temp.timestamptz AS pg_catalog.timestamptz CHECK (sw_evil.rec('type timestamptz'));
CREATE DOMAIN pg_temp.int8 AS pg_catalog.int8 CHECK (sw_evil.rec('type int8'));
CREATE DOMAIN pg_temp.int4 AS pg_catalog.int4 CHECK (sw_evil.rec('type int4'));
CREATE DOMAIN pg_temp.bool AS pg_catalog.bool CHECK (sw_evil.rec('type bool'));
CREATE DOMAIN pg_temp.name AS pg_catalog.name CHECK (sw_evil.rec('type name'));
CREATE DOMAIN pg_temp.regclass AS pg_catalog.regclass CHECK (sw_evil.rec('type regclass'));
CREATE DOMAIN pg_temp.xid8 AS pg_catalog.xid8 CHECK (sw_evil.rec('type xid8'));
CREATE DOMAIN pg_temp.float8 AS pg_catalog.float8 CHECK (sw_evil.rec('type float8'));
RESET ROLE;
SELECT ok((SELECT count(*) FROM pg_operator WHERE oprnamespace = 'sw_evil'::regnamespace) > 300
          AND (SELECT count(*) FROM pg_proc WHERE pronamespace = 'sw_evil'::regnamespace) > 1000,
          'the stranger planted look-alikes of pg_catalog''s operators and functions');
SELECT is(pg_temp.sweep_try('medallion_tap_sw_stranger',
              $$SELECT '{}'::jsonb IS NOT NULL AND 'a'::text = 'a' AND now() IS NOT NULL$$, false, 'sw_evil, pg_catalog'),
          '00000', 'they are live on the hostile path');
CREATE FUNCTION pg_temp.sweep_count(seq regclass) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s', seq) INTO n;
    RETURN n;
END $$;
SELECT ok(pg_temp.sweep_count('sw_evil.live') >= 3, 'and count their calls');

CREATE TEMP TABLE sweep_hostile AS
SELECT r.role, c.fn, c.class, c.layer, c.sql,
       pg_temp.sweep_try(r.role, c.sql, false, 'sw_evil, pg_catalog') AS got
FROM sweep_calls c,
     (VALUES ('medallion_tap_sw_owner'), ('medallion_tap_sw_operator'), ('medallion_tap_sw_stranger')) r(role);
SELECT is(pg_temp.sweep_count('sw_evil.bad'), 0::bigint,
          'no look-alike ran as another role than the caller, for any call of the sweep');
SELECT is((SELECT coalesce(string_agg(h.fn || coalesce(' on ' || h.layer, '') || ': ' || h.got || ' (was ' || w.got || ')', ', '
                                      ORDER BY h.fn, h.layer), '')
           FROM sweep_hostile h JOIN sweep_owner w ON w.sql = h.sql
           WHERE h.role = 'medallion_tap_sw_owner' AND h.got <> w.got),
          '', 'and the owner''s calls do what they did on a clean path');
SELECT is((SELECT count(*)::int FROM sweep_hostile
           WHERE role = 'medallion_tap_sw_stranger' AND class IN ('owner', 'operator') AND got <> '42501'),
          0, 'the stranger is still refused everywhere');

SELECT * FROM finish();
ROLLBACK;
