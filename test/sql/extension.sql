--
-- extension: what CREATE EXTENSION medallion installs (pg_regress loads it
-- with --load-extension), and that DROP EXTENSION never drops user data.
--

-- The three layer schemas belong to the extension, so that a user's table in
-- one of them blocks DROP EXTENSION.  (Schema medallion is made by CREATE
-- EXTENSION from the control file, and is not a member.)
SELECT n.nspname, obj_description(n.oid, 'pg_namespace') IS NOT NULL AS commented
FROM pg_depend d
JOIN pg_namespace n ON n.oid = d.objid
WHERE d.classid = 'pg_namespace'::regclass
  AND d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'medallion')
  AND d.deptype = 'e'
ORDER BY 1;

-- The catalog tables users and their tools may query, and the columns they
-- may rely on: none of them is missing.
SELECT t AS catalog_table, to_regclass(t) IS NOT NULL AS present
FROM unnest(ARRAY['medallion.pipelines', 'medallion.runs', 'medallion.batches',
                  'medallion.dlq', 'medallion.quarantine']) AS t
ORDER BY 1;

SELECT c.tbl, c.col AS missing_column
FROM (VALUES
    ('medallion.pipelines', ARRAY['name', 'layer', 'state', 'owner', 'steward', 'description', 'schedule']),
    ('medallion.runs', ARRAY['run_id', 'pipeline', 'kind', 'status', 'attempt', 'started_at',
                             'finished_at', 'rows_read', 'rows_inserted', 'rows_updated',
                             'rows_unchanged', 'rows_dlq', 'rows_quarantined', 'rows_dropped',
                             'rows_warned', 'error_class', 'error_message']),
    ('medallion.dlq', ARRAY['id', 'pipeline', 'original_payload', 'error_message', 'error_type',
                            'sqlstate', 'field', 'source_table', 'source_seq', 'pipeline_run_id',
                            'failed_at', 'reprocessed', 'reprocessed_at',
                            'batch_id', 'file_name', 'line_number']),
    ('medallion.quarantine', ARRAY['rule'])) AS t(tbl, cols),
    LATERAL (SELECT t.tbl, unnest(t.cols) AS col) c
WHERE NOT EXISTS (SELECT FROM pg_attribute a
                  WHERE a.attrelid = c.tbl::regclass AND a.attname = c.col AND NOT a.attisdropped)
ORDER BY 1, 2;

-- Registered with pg_extension_config_dump, so that pg_dump keeps their rows.
SELECT t AS dumped_table
FROM unnest(ARRAY['medallion.pipelines', 'medallion.runs', 'medallion.batches',
                  'medallion.dlq', 'medallion.quarantine']) AS t,
     pg_extension e
WHERE e.extname = 'medallion' AND t::regclass = ANY (e.extconfig)
ORDER BY 1;

-- Every table of schema medallion, and every sequence behind one of their
-- columns, is registered: none is forgotten.
SELECT c.oid::regclass AS not_dumped
FROM pg_class c, pg_extension e
WHERE e.extname = 'medallion'
  AND c.relnamespace = 'medallion'::regnamespace
  AND c.relkind IN ('r', 'p', 'S')
  AND NOT c.oid = ANY (e.extconfig)
ORDER BY 1;

-- The DLQ and the quarantine hold raw payloads: row-level security, no writes
-- by PUBLIC.
SELECT relname, relrowsecurity,
       has_table_privilege('public', oid, 'INSERT') AS public_may_insert
FROM pg_class
WHERE oid IN ('medallion.dlq'::regclass, 'medallion.quarantine'::regclass)
ORDER BY 1;

-- Every function, table and view of the extension has a comment.
SELECT p.oid::regprocedure AS function_without_comment
FROM pg_proc p
WHERE p.pronamespace = 'medallion'::regnamespace
  AND obj_description(p.oid, 'pg_proc') IS NULL
ORDER BY 1;
SELECT c.oid::regclass AS relation_without_comment
FROM pg_class c
WHERE c.relnamespace = 'medallion'::regnamespace
  AND c.relkind IN ('r', 'p', 'v', 'm')
  AND obj_description(c.oid, 'pg_class') IS NULL
ORDER BY 1;

-- The bronze API is there.
SELECT p.oid::regprocedure AS bronze_api
FROM pg_proc p
WHERE p.pronamespace = 'medallion'::regnamespace
  AND p.proname IN ('create_bronze', 'ingest', 'ingest_text', 'ingest_file', 'capture', 'apply_retention')
ORDER BY p.proname;

-- The settings of the bronze layer, and the reserved prefix.
SELECT name, setting, unit, context
FROM pg_settings
WHERE name IN ('medallion.premake_days', 'medallion.max_record_size', 'medallion.allow_bronze_changes')
ORDER BY 1;
SET medallion.no_such_setting = 1;

-- DROP EXTENSION while a bronze table exists fails, and the table survives.
SELECT medallion.create_bronze('keep_me', 'regress');
SELECT medallion.ingest('bronze.keep_me', '{"precious": true}', 'b1');
\set VERBOSITY terse
DROP EXTENSION medallion;
\set VERBOSITY default
SELECT _raw, _batch_id FROM bronze.keep_me;
SELECT name, layer FROM medallion.pipelines ORDER BY 1;

-- Without user tables it drops cleanly, and installs again.
DROP TABLE bronze.keep_me;
DROP EXTENSION medallion;
SELECT nspname FROM pg_namespace WHERE nspname IN ('medallion', 'bronze', 'silver', 'gold');
CREATE EXTENSION medallion;
SELECT count(*) AS pipelines FROM medallion.pipelines;
