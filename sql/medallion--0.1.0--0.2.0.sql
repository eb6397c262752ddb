/* medallion--0.1.0--0.2.0.sql: from 0.1.0 (frozen, released) to 0.2.0 */

\echo Use "ALTER EXTENSION medallion UPDATE TO '0.2.0'" to load this file. \quit

-- The full 0.2.0 install script is built from medallion--0.1.0.sql followed by
-- this file (see the Makefile), so a fresh install and an update run the same
-- statements: everything below must work both on an empty catalog and on one
-- with pipelines and data in place.  Qualify every name: the script runs with
-- search_path = medallion, pg_temp... as ALTER EXTENSION sets it, and objects
-- a user made could otherwise be picked.

------------------------------------------------------------------------------
-- Catalog gateway and qualification (trust §1)
------------------------------------------------------------------------------



------------------------------------------------------------------------------
-- Bronze: partitions, retention, redaction (trust §2, §5)
------------------------------------------------------------------------------

-- 0.1.0 wrote the partition CHECK medallion_bound with bare >= and <, bound
-- to whatever those names resolved to for the creator: a look-alike then ran
-- for every later writer.  Re-create, with qualified operators and casts,
-- each such CHECK that depends on an operator, function or type outside
-- pg_catalog (those bound to pg_catalog already mean what the new text says).
DO $$
DECLARE
    r record;
    lo pg_catalog.text;
    hi pg_catalog.text;
BEGIN
    FOR r IN
        SELECT con.conrelid, part.relname AS partname, parent.relname AS parentname,
               pg_catalog.format('%I.%I', ns.nspname, part.relname) AS qpart
        FROM medallion.pipelines p
        JOIN pg_catalog.pg_class parent
          ON parent.relname OPERATOR(pg_catalog.=) p.relname
         AND parent.relnamespace OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.regnamespace
        JOIN pg_catalog.pg_inherits i ON i.inhparent OPERATOR(pg_catalog.=) parent.oid
        JOIN pg_catalog.pg_class part ON part.oid OPERATOR(pg_catalog.=) i.inhrelid
        JOIN pg_catalog.pg_namespace ns ON ns.oid OPERATOR(pg_catalog.=) part.relnamespace
        JOIN pg_catalog.pg_constraint con
          ON con.conrelid OPERATOR(pg_catalog.=) part.oid
         AND con.conname OPERATOR(pg_catalog.=) 'medallion_bound'::pg_catalog.name
        WHERE p.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text
          AND EXISTS (
              SELECT FROM pg_catalog.pg_depend d
              LEFT JOIN pg_catalog.pg_operator o
                ON d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_operator'::pg_catalog.regclass
               AND o.oid OPERATOR(pg_catalog.=) d.refobjid
              LEFT JOIN pg_catalog.pg_proc f
                ON d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND f.oid OPERATOR(pg_catalog.=) d.refobjid
              LEFT JOIN pg_catalog.pg_type t
                ON d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
               AND t.oid OPERATOR(pg_catalog.=) d.refobjid
              WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass
                AND d.objid OPERATOR(pg_catalog.=) con.oid
                AND COALESCE(o.oprnamespace, f.pronamespace, t.typnamespace)
                    OPERATOR(pg_catalog.<>) 'pg_catalog'::pg_catalog.regnamespace)
    LOOP
        -- The day from the name "<table>_pYYYYMMDD", as create_bronze made it.
        IF pg_catalog.length(r.partname::pg_catalog.text) OPERATOR(pg_catalog.<>)
               (pg_catalog.length(r.parentname::pg_catalog.text) OPERATOR(pg_catalog.+) 10)
           OR pg_catalog.right(r.partname::pg_catalog.text, 8) OPERATOR(pg_catalog.!~) '^[0-9]{8}$'::pg_catalog.text THEN
            -- Not one of ours: drop the CHECK (the partition bound still holds).
            EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT medallion_bound', r.qpart);
            CONTINUE;
        END IF;
        lo := pg_catalog.to_char(pg_catalog.to_date(pg_catalog.right(r.partname::pg_catalog.text, 8),
                                                    'YYYYMMDD'::pg_catalog.text), 'YYYY-MM-DD'::pg_catalog.text);
        hi := pg_catalog.to_char(pg_catalog.to_date(pg_catalog.right(r.partname::pg_catalog.text, 8),
                                                    'YYYYMMDD'::pg_catalog.text) OPERATOR(pg_catalog.+) 1,
                                 'YYYY-MM-DD'::pg_catalog.text);
        EXECUTE pg_catalog.format(
            'ALTER TABLE %s DROP CONSTRAINT medallion_bound, ADD CONSTRAINT medallion_bound CHECK '
            '(_ingested_at OPERATOR(pg_catalog.>=) %L::pg_catalog.timestamptz '
            'AND _ingested_at OPERATOR(pg_catalog.<) %L::pg_catalog.timestamptz)',
            r.qpart, lo OPERATOR(pg_catalog.||) ' 00:00:00+00', hi OPERATOR(pg_catalog.||) ' 00:00:00+00');
    END LOOP;
END $$;

-- redact_mode "hash" is now keyed (HMAC-SHA256, see the pseudonymisation
-- section); 0.1.0's unkeyed SHA-256 is "hash_v1".  Tables made under 0.1.0
-- with "hash" go on producing the same values: their redact triggers and
-- stored options become "hash_v1".
DO $$
DECLARE
    r record;
    args pg_catalog.text[];
    rest pg_catalog.bytea;
    cut pg_catalog.int4;
    quoted pg_catalog.text;
BEGIN
    FOR r IN
        SELECT t.tgrelid, t.tgargs
        FROM pg_catalog.pg_trigger t
        WHERE t.tgfoid OPERATOR(pg_catalog.=) 'medallion.bronze_redact()'::pg_catalog.regprocedure
          AND t.tgname OPERATOR(pg_catalog.=) 'medallion_redact'::pg_catalog.name
          AND t.tgparentid OPERATOR(pg_catalog.=) 0::pg_catalog.oid
          AND pg_catalog.substr(t.tgargs, 1, 5) OPERATOR(pg_catalog.=) '\x6861736800'::pg_catalog.bytea
    LOOP
        -- tgargs: each argument followed by a zero byte.
        args := '{}';
        rest := r.tgargs;
        LOOP
            cut := pg_catalog."position"(rest, '\x00'::pg_catalog.bytea);
            EXIT WHEN cut OPERATOR(pg_catalog.=) 0;
            args := args OPERATOR(pg_catalog.||)
                    pg_catalog.convert_from(pg_catalog.substr(rest, 1, cut OPERATOR(pg_catalog.-) 1),
                                            pg_catalog.getdatabaseencoding()::pg_catalog.name);
            rest := pg_catalog.substr(rest, cut OPERATOR(pg_catalog.+) 1);
        END LOOP;
        args[1] := 'hash_v1';
        SELECT pg_catalog.string_agg(pg_catalog.quote_literal(a), ', ' ORDER BY n)
        INTO quoted FROM pg_catalog.unnest(args) WITH ORDINALITY AS u(a, n);
        EXECUTE pg_catalog.format('DROP TRIGGER medallion_redact ON %s', r.tgrelid::pg_catalog.regclass);
        EXECUTE pg_catalog.format('CREATE TRIGGER medallion_redact BEFORE INSERT ON %s '
                                  'FOR EACH ROW EXECUTE FUNCTION medallion.bronze_redact(%s)',
                                  r.tgrelid::pg_catalog.regclass, quoted);
    END LOOP;
END $$;
UPDATE medallion.pipelines
SET options = pg_catalog.jsonb_set(options, '{redact_mode}'::pg_catalog.text[], '"hash_v1"'::pg_catalog.jsonb)
WHERE layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text
  AND options OPERATOR(pg_catalog.->>) 'redact_mode'::pg_catalog.text OPERATOR(pg_catalog.=) 'hash'::pg_catalog.text;

------------------------------------------------------------------------------
-- Capture registry and trigger checks (trust §3)
------------------------------------------------------------------------------

-- The tables medallion.capture() captures, and the bronze table each feeds.
-- capture_change() captures only for a registered table (or a partition of
-- one): anyone can attach the trigger function to a table of their own.
-- regclass columns are dumped as names, so the registry survives a restore.
CREATE TABLE medallion.captures (
    source     regclass PRIMARY KEY,
    bronze     regclass NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE medallion.captures IS
'tables captured by medallion.capture(), with the bronze table each feeds';
SELECT pg_catalog.pg_extension_config_dump('medallion.captures', '');
GRANT SELECT ON medallion.captures TO PUBLIC;

-- Captures made by 0.1.0: their triggers name the bronze table.  Without a
-- row here every write to a captured table would fail after the update.
-- A trigger whose table's owner may not write that bronze table was not
-- made by capture(): it is left out (and capture_change() checks this too).
INSERT INTO medallion.captures (source, bronze)
SELECT t.tgrelid, b.oid
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_class src ON src.oid OPERATOR(pg_catalog.=) t.tgrelid
JOIN pg_catalog.pg_class b
  ON b.relnamespace OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.regnamespace
 AND b.relname OPERATOR(pg_catalog.=) pg_catalog.convert_from(
         pg_catalog.substr(t.tgargs, 1, pg_catalog.length(t.tgargs) OPERATOR(pg_catalog.-) 1),
         pg_catalog.getdatabaseencoding()::pg_catalog.name)::pg_catalog.name
JOIN medallion.pipelines p
  ON p.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text
 AND p.relname OPERATOR(pg_catalog.=) b.relname::pg_catalog.text
WHERE t.tgfoid OPERATOR(pg_catalog.=) 'medallion.capture_change()'::pg_catalog.regprocedure
  AND t.tgname OPERATOR(pg_catalog.=) 'medallion_capture'::pg_catalog.name
  AND t.tgparentid OPERATOR(pg_catalog.=) 0::pg_catalog.oid
  AND t.tgnargs OPERATOR(pg_catalog.=) 1::pg_catalog.int2
  AND NOT src.relispartition
  AND src.relpersistence OPERATOR(pg_catalog.<>) 't'::pg_catalog."char"
  AND pg_catalog.has_table_privilege(src.relowner, b.oid, 'INSERT'::pg_catalog.text)
ON CONFLICT (source) DO NOTHING;

------------------------------------------------------------------------------
-- Ingestion of hostile input (trust §6)
------------------------------------------------------------------------------

-- Ingestion's DLQ rows tell the record's length in bytes: a record longer
-- than medallion.max_record_size keeps only its first 64 kB, and a record of
-- a bronze table with redact_keys keeps no payload at all.
ALTER TABLE medallion.dlq ADD COLUMN original_length bigint;
COMMENT ON COLUMN medallion.dlq.original_length IS
'length in bytes of the record as it came (ingestion); original_payload may hold only its first 64 kB, or nothing when the bronze table redacts';



------------------------------------------------------------------------------
-- Silver: contracts, active-run guard, stalls (trust §4, §6, §9)
------------------------------------------------------------------------------

-- A run's SQL reads date/time columns through this: an input naming the
-- current time (now, today, tomorrow, yesterday) is a data error, as
-- silver_check() says, so a rerun or a replay gives the same row.
CREATE FUNCTION medallion.check_datetime(value text, field text)
RETURNS text
AS 'MODULE_PATHNAME', 'medallion_check_datetime'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION medallion.check_datetime(text, text) IS
'internal: value, or the data error of a date/time input that names the current time';

-- The conditions of a run's window keep (nearly) every row of its xid range:
-- their planner support says so, instead of the default selectivity of a
-- third each that made the planner hash a large window into its MERGE.
CREATE FUNCTION medallion.window_support(internal)
RETURNS internal
AS 'MODULE_PATHNAME', 'medallion_window_support'
LANGUAGE C STRICT;
COMMENT ON FUNCTION medallion.window_support(internal) IS
'internal: planner support of the conditions of a silver run''s window';
ALTER FUNCTION medallion.count_read() SUPPORT medallion.window_support;
CREATE FUNCTION medallion.in_window(xid pg_catalog.xid8, snapshot pg_catalog.pg_snapshot)
RETURNS boolean
AS 'MODULE_PATHNAME', 'medallion_in_window'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
SUPPORT medallion.window_support;
COMMENT ON FUNCTION medallion.in_window(pg_catalog.xid8, pg_catalog.pg_snapshot) IS
'internal: whether a bronze row''s transaction is visible in a run''s target snapshot';

-- Quarantine takes a source row once, like the DLQ: the guard's index.
CREATE INDEX IF NOT EXISTS quarantine_pipeline_source_seq_idx
    ON medallion.quarantine (pipeline, source_seq) WHERE NOT reprocessed;

COMMENT ON FUNCTION medallion.create_silver(text, regclass, jsonb, text[], text, jsonb) IS
'creates a silver table and its pipeline from a column contract (columns: an object of column contracts, in jsonb''s key order, or an array of them with "name", in the written order)';

-- options.settings takes an allow-list (TimeZone, DateStyle, IntervalStyle,
-- extra_float_digits, lc_*, work_mem, jit): a setting outside it (search_path)
-- is removed from existing pipelines, with a WARNING; a run refuses one.
DO $medallion$
DECLARE
    p record;
    bad text;
BEGIN
    FOR p IN
        SELECT pl.name, pl.definition
          FROM medallion.pipelines pl
         WHERE pl.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text
           AND pg_catalog.jsonb_typeof(pl.definition OPERATOR(pg_catalog.#>) '{options,settings}'::pg_catalog.text[])
               OPERATOR(pg_catalog.=) 'object'::pg_catalog.text
    LOOP
        SELECT pg_catalog.string_agg(s.key, ', '::pg_catalog.text ORDER BY s.key) INTO bad
          FROM pg_catalog.jsonb_object_keys(p.definition OPERATOR(pg_catalog.#>) '{options,settings}'::pg_catalog.text[]) s(key)
         WHERE NOT (pg_catalog.lower(s.key) OPERATOR(pg_catalog.=) ANY (ARRAY['timezone', 'datestyle', 'intervalstyle',
                        'extra_float_digits', 'work_mem', 'jit']::pg_catalog.text[])
                    OR pg_catalog.lower(s.key) OPERATOR(pg_catalog.~~) 'lc\_%'::pg_catalog.text);
        CONTINUE WHEN bad IS NULL;
        RAISE WARNING 'settings % of pipeline "%" are no longer allowed and are removed', bad, p.name
            USING DETAIL = 'Option settings may set TimeZone, DateStyle, IntervalStyle, extra_float_digits, lc_*, work_mem and jit.';
        UPDATE medallion.pipelines pl
           SET definition = pg_catalog.jsonb_set(pl.definition, '{options,settings}'::pg_catalog.text[],
                   COALESCE((SELECT pg_catalog.jsonb_object_agg(e.key, e.value)
                               FROM pg_catalog.jsonb_each(pl.definition OPERATOR(pg_catalog.#>) '{options,settings}'::pg_catalog.text[]) e
                              WHERE NOT e.key OPERATOR(pg_catalog.=) ANY (pg_catalog.string_to_array(bad, ', '::pg_catalog.text))),
                            '{}'::pg_catalog.jsonb)),
               options = CASE WHEN pg_catalog.jsonb_typeof(pl.options OPERATOR(pg_catalog.->) 'settings'::pg_catalog.text)
                                   OPERATOR(pg_catalog.=) 'object'::pg_catalog.text
                         THEN pg_catalog.jsonb_set(pl.options, '{settings}'::pg_catalog.text[],
                                  COALESCE((SELECT pg_catalog.jsonb_object_agg(e.key, e.value)
                                              FROM pg_catalog.jsonb_each(pl.options OPERATOR(pg_catalog.->) 'settings'::pg_catalog.text) e
                                             WHERE NOT e.key OPERATOR(pg_catalog.=) ANY (pg_catalog.string_to_array(bad, ', '::pg_catalog.text))),
                                           '{}'::pg_catalog.jsonb))
                         ELSE pl.options END
         WHERE pl.name OPERATOR(pg_catalog.=) p.name;
    END LOOP;
END
$medallion$;

-- Required columns (required: true, the unique key, order_by) are NOT NULL in
-- silver tables; tables made by 0.1.0 get it here, unless they hold NULLs.
DO $medallion$
DECLARE
    p record;
    col record;
    rel regclass;
    has_null boolean;
BEGIN
    FOR p IN
        SELECT pl.name, pl.relname, pl.definition
          FROM medallion.pipelines pl
         WHERE pl.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text
           AND pl.definition IS NOT NULL
    LOOP
        SELECT c.oid::pg_catalog.regclass INTO rel
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
         WHERE n.nspname OPERATOR(pg_catalog.=) 'silver'::pg_catalog.name
           AND c.relname OPERATOR(pg_catalog.=) p.relname::pg_catalog.name
           AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog."char"[]);
        CONTINUE WHEN rel IS NULL;
        FOR col IN
            SELECT k.key AS name
              FROM pg_catalog.jsonb_each(
                       CASE WHEN pg_catalog.jsonb_typeof(p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text)
                                 OPERATOR(pg_catalog.=) 'object'::pg_catalog.text
                            THEN p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text
                            ELSE '{}'::pg_catalog.jsonb END) k
             WHERE ((k.value OPERATOR(pg_catalog.->) 'required'::pg_catalog.text)
                        OPERATOR(pg_catalog.=) 'true'::pg_catalog.jsonb
                    OR k.key OPERATOR(pg_catalog.=) (p.definition OPERATOR(pg_catalog.->>) 'order_by'::pg_catalog.text))
               AND (k.value OPERATOR(pg_catalog.->>) 'pii'::pg_catalog.text) IS DISTINCT FROM 'drop'::pg_catalog.text
        LOOP
            CONTINUE WHEN NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid OPERATOR(pg_catalog.=) rel
                   AND a.attname OPERATOR(pg_catalog.=) col.name::pg_catalog.name
                   AND NOT a.attisdropped AND NOT a.attnotnull);
            EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I IS NULL)', rel, col.name)
               INTO has_null;
            IF has_null THEN
                RAISE WARNING 'required column "%" of % holds NULLs and is left nullable', col.name, rel
                    USING HINT = 'Fix or delete those rows, then run ALTER TABLE ... ALTER COLUMN ... SET NOT NULL.';
            ELSE
                EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', rel, col.name);
            END IF;
        END LOOP;
    END LOOP;
END
$medallion$;



------------------------------------------------------------------------------
-- Operations: owners, runs, alerts, schedules, workers (trust §4, §5, §7, §9)
------------------------------------------------------------------------------

-- Pipeline owners are stored by name, not as regrole: a dump restored into a
-- cluster without the role keeps every pipeline (a regrole value of a missing
-- role fails the whole table).  Each run resolves the name; a missing role
-- refuses the run and halts the pipeline.  The RLS policies name the column,
-- so they are recreated around the change, and they look the role up in
-- pg_roles: pg_has_role(name) would fail for a missing role.  (The default
-- collation, not name's "C": owner::text compares like any other text.  The
-- name is unquoted, unlike regrole's output; a role already gone becomes
-- "unknown (OID=n)", which no role is named: its runs are refused.)
DROP POLICY IF EXISTS dlq_pipeline_owner ON medallion.dlq;
DROP POLICY IF EXISTS quarantine_pipeline_owner ON medallion.quarantine;
ALTER TABLE medallion.pipelines
    ALTER COLUMN owner TYPE pg_catalog.name COLLATE pg_catalog."default"
    USING pg_catalog.pg_get_userbyid(owner::pg_catalog.oid);
COMMENT ON COLUMN medallion.pipelines.owner IS
'the role that owns the pipeline, by name; its runs execute as that role';

CREATE FUNCTION medallion.owns_pipeline(pipeline text)
RETURNS boolean
LANGUAGE sql STABLE
RETURN EXISTS (SELECT 1 FROM medallion.pipelines p
               JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) p.owner
               WHERE p.name OPERATOR(pg_catalog.=) owns_pipeline.pipeline
                 AND pg_catalog.pg_has_role(r.oid, 'USAGE'));
COMMENT ON FUNCTION medallion.owns_pipeline(text) IS
'whether the current role is (a member of) the owner of a pipeline';

CREATE POLICY dlq_pipeline_owner ON medallion.dlq FOR SELECT
    USING (medallion.owns_pipeline(dlq.pipeline));
CREATE POLICY quarantine_pipeline_owner ON medallion.quarantine FOR SELECT
    USING (medallion.owns_pipeline(quarantine.pipeline));

-- Alerts are bounded: at most one open alert per pipeline and kind, raised
-- again in place (occurrences counts them); resolved ones are trimmed like
-- run history.
ALTER TABLE medallion.alerts
    ADD COLUMN occurrences integer NOT NULL DEFAULT 1,
    ADD COLUMN last_raised_at timestamptz;
UPDATE medallion.alerts a SET resolved_at = pg_catalog.now()
WHERE a.resolved_at IS NULL
  AND EXISTS (SELECT 1 FROM medallion.alerts b
              WHERE b.pipeline OPERATOR(pg_catalog.=) a.pipeline
                AND b.kind OPERATOR(pg_catalog.=) a.kind
                AND b.resolved_at IS NULL AND b.id OPERATOR(pg_catalog.>) a.id);
DROP INDEX IF EXISTS medallion.alerts_pipeline_kind_idx;
CREATE UNIQUE INDEX alerts_open_key ON medallion.alerts (pipeline, kind) WHERE resolved_at IS NULL;
CREATE INDEX alerts_resolved_idx ON medallion.alerts (resolved_at) WHERE resolved_at IS NOT NULL;
COMMENT ON COLUMN medallion.alerts.occurrences IS 'how many times the alert was raised while open';

-- Messages quote data values (a cast error quotes the value): stored capped
-- at 1 kB, and shown only to the pipeline's owner.  PUBLIC keeps SELECT on
-- every other column of runs and alerts; run_details and alert_details show
-- every row with the message of the caller's own pipelines.
UPDATE medallion.runs SET error_message = pg_catalog.left(error_message, 1024)
WHERE pg_catalog.octet_length(error_message) OPERATOR(pg_catalog.>) 1024;
UPDATE medallion.alerts SET message = pg_catalog.left(message, 1024)
WHERE pg_catalog.octet_length(message) OPERATOR(pg_catalog.>) 1024;
REVOKE SELECT ON medallion.runs, medallion.alerts FROM PUBLIC;
GRANT SELECT (run_id, pipeline, kind, status, attempt, started_at, finished_at, rows_read,
              rows_inserted, rows_updated, rows_unchanged, rows_dlq, rows_quarantined,
              rows_dropped, rows_warned, error_class, sqlstate, worker_pid)
    ON medallion.runs TO PUBLIC;
GRANT SELECT (id, pipeline, kind, raised_at, resolved_at, occurrences, last_raised_at)
    ON medallion.alerts TO PUBLIC;

CREATE VIEW medallion.run_details WITH (security_barrier) AS
SELECT r.run_id, r.pipeline, r.kind, r.status, r.attempt, r.started_at, r.finished_at,
       r.rows_read, r.rows_inserted, r.rows_updated, r.rows_unchanged, r.rows_dlq,
       r.rows_quarantined, r.rows_dropped, r.rows_warned, r.error_class,
       CASE WHEN medallion.owns_pipeline(r.pipeline) THEN r.error_message END AS error_message,
       r.sqlstate, r.worker_pid
FROM medallion.runs r;
COMMENT ON VIEW medallion.run_details IS
'medallion.runs with error_message, shown for the pipelines the current role owns (NULL for others)';

CREATE VIEW medallion.alert_details WITH (security_barrier) AS
SELECT a.id, a.pipeline, a.kind,
       CASE WHEN medallion.owns_pipeline(a.pipeline) THEN a.message END AS message,
       a.raised_at, a.resolved_at, a.occurrences, a.last_raised_at
FROM medallion.alerts a;
COMMENT ON VIEW medallion.alert_details IS
'medallion.alerts with message, shown for the pipelines the current role owns (NULL for others)';
GRANT SELECT ON medallion.run_details, medallion.alert_details TO PUBLIC;

-- pause() must not wait behind a running run's row lock: when the row is
-- locked it leaves a request here, which every run and the scheduler read as
-- 'paused', and which the next run that takes the lock folds into the state.
CREATE TABLE medallion.pause_requests (
    pipeline     text PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE medallion.pause_requests IS
'pipelines paused while a run held them: paused for every new run, folded into pipelines.state later';
SELECT pg_catalog.pg_extension_config_dump('medallion.pause_requests', '');
GRANT SELECT ON medallion.pause_requests TO PUBLIC;

-- pg_cron jobs run as the pipeline's owner (0.1.0 made them as the catalog
-- owner, so trigger() and the run ran as a superuser).
DO $do$
BEGIN
    IF pg_catalog.to_regclass('cron.job') IS NOT NULL THEN
        UPDATE cron.job j SET username = p.owner
        FROM medallion.pipelines p
        WHERE j.jobname OPERATOR(pg_catalog.=) ('medallion:' OPERATOR(pg_catalog.||) p.name)
          AND j.database OPERATOR(pg_catalog.=) pg_catalog.current_database();
    END IF;
END
$do$;

-- The freshness view computes each pipeline's lag once per row (0.1.0's
-- called pipeline_lag twice: for lag and again for status).  Same columns.
CREATE OR REPLACE VIEW medallion.freshness AS
SELECT f.pipeline, f.last_success_at, f.lag, f.sla,
       CASE WHEN f.sla IS NULL THEN 'no_sla'
            WHEN f.lag OPERATOR(pg_catalog.>) f.sla THEN 'breached'
            ELSE 'fresh' END AS status
FROM (SELECT p.name AS pipeline,
             p.last_success_at,
             medallion.pipeline_lag(p.name) AS lag,
             (p.options OPERATOR(pg_catalog.->>) 'freshness_sla')::pg_catalog.interval AS sla
      FROM medallion.pipelines p
      WHERE p.layer OPERATOR(pg_catalog.=) 'silver'
      OFFSET 0) f;


------------------------------------------------------------------------------
-- Pseudonymisation keys (trust §5)
------------------------------------------------------------------------------

-- One secret key per database for the keyed pseudonyms of bronze's
-- redact_mode "hash" and silver's pii "hash" (HMAC-SHA256).  Only the
-- extension's owner reads it; pg_dump keeps it.  The oldest row is the key:
-- a restore brings the original key back next to the younger one that
-- CREATE EXTENSION made, and the original wins.
CREATE TABLE medallion.pseudonym_keys (
    key        bytea NOT NULL
               CHECK (pg_catalog.octet_length(key) OPERATOR(pg_catalog.=) 32),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
COMMENT ON TABLE medallion.pseudonym_keys IS
'the secret key of keyed pseudonyms (HMAC-SHA256): the oldest row is the key';
REVOKE ALL ON medallion.pseudonym_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('medallion.pseudonym_keys', '');

CREATE FUNCTION medallion.pseudonym_new_key()
RETURNS bytea
AS 'MODULE_PATHNAME', 'medallion_pseudonym_new_key'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION medallion.pseudonym_new_key() IS
'internal: 32 random bytes from the server''s strong random source, for a pseudonymisation key';
REVOKE ALL ON FUNCTION medallion.pseudonym_new_key() FROM PUBLIC;

INSERT INTO medallion.pseudonym_keys (key) VALUES (medallion.pseudonym_new_key());

-- STABLE, not IMMUTABLE: it reads the key.
CREATE FUNCTION medallion.pseudonymize(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'medallion_pseudonymize'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION medallion.pseudonymize(text) IS
'the keyed pseudonym (hex HMAC-SHA256 under the database''s key) of a value, as pii "hash" and redact_mode "hash" store it';

-- Silver columns made under 0.1.0 with pii "hash" keep their unkeyed SHA-256
-- values: their stored contracts say "hash_v1" from now on.
UPDATE medallion.pipelines p
SET definition = pg_catalog.jsonb_set(p.definition, '{columns}'::pg_catalog.text[], (
        SELECT pg_catalog.jsonb_object_agg(c.key,
                   CASE WHEN c.value OPERATOR(pg_catalog.->>) 'pii'::pg_catalog.text
                             OPERATOR(pg_catalog.=) 'hash'::pg_catalog.text
                        THEN pg_catalog.jsonb_set(c.value, '{pii}'::pg_catalog.text[],
                                                  '"hash_v1"'::pg_catalog.jsonb)
                        ELSE c.value END)
        FROM pg_catalog.jsonb_each(p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text) c))
WHERE p.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text
  AND pg_catalog.jsonb_typeof(p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text)
      OPERATOR(pg_catalog.=) 'object'::pg_catalog.text
  AND EXISTS (SELECT FROM pg_catalog.jsonb_each(p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text) c
              WHERE c.value OPERATOR(pg_catalog.->>) 'pii'::pg_catalog.text
                    OPERATOR(pg_catalog.=) 'hash'::pg_catalog.text);

------------------------------------------------------------------------------
-- The wave's shared catalog: layers, run detail, the graph, schema changes
------------------------------------------------------------------------------

-- Layers a pipeline can be: gold models, HTTP sources (which feed bronze)
-- and exports (which read silver or gold) join bronze and silver.
ALTER TABLE medallion.pipelines DROP CONSTRAINT pipelines_layer_check;
ALTER TABLE medallion.pipelines ADD CONSTRAINT pipelines_layer_check
    CHECK (layer OPERATOR(pg_catalog.=) ANY
           (ARRAY['bronze', 'silver', 'gold', 'source', 'export']::pg_catalog.text[]));

-- What a run did beyond its counts: a gold refresh's mode and partitions, a
-- backfill's strategy and range, an HTTP pull's pages.
ALTER TABLE medallion.runs ADD COLUMN detail pg_catalog.jsonb;
GRANT SELECT (detail) ON medallion.runs TO PUBLIC;

-- The pipeline graph: one row per edge, upstream -> pipeline, found from
-- definitions (a silver source, a contract's references, a gold query's range
-- table, an HTTP source feeding bronze, an export's source), never declared
-- by hand.  partition_column: the upstream column a gold model's partitions
-- map through (NULL: a change refreshes the whole model).
CREATE TABLE medallion.dependencies (
    pipeline         text NOT NULL REFERENCES medallion.pipelines (name)
                     ON DELETE CASCADE ON UPDATE CASCADE,
    upstream         text NOT NULL REFERENCES medallion.pipelines (name)
                     ON DELETE CASCADE ON UPDATE CASCADE,
    kind             text NOT NULL
                     CHECK (kind OPERATOR(pg_catalog.=) ANY
                            (ARRAY['source', 'reference', 'query', 'feed', 'export']::pg_catalog.text[])),
    partition_column text,
    PRIMARY KEY (pipeline, upstream, kind)
);
CREATE INDEX ON medallion.dependencies (upstream);
COMMENT ON TABLE medallion.dependencies IS
'the pipeline graph: upstream feeds pipeline (kind: source, reference, query, feed, export)';
SELECT pg_catalog.pg_extension_config_dump('medallion.dependencies', '');
GRANT SELECT ON medallion.dependencies TO PUBLIC;

-- Schema changes seen: payload drift in bronze, contract changes, DDL on the
-- relations pipelines read or write.
CREATE TABLE medallion.schema_changes (
    id             bigserial PRIMARY KEY,
    detected_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    pipeline       text,
    relation       text,
    path           text,
    change         text NOT NULL
                   CHECK (change OPERATOR(pg_catalog.=) ANY
                          (ARRAY['key_added', 'key_missing', 'type_changed', 'column_added',
                                 'column_dropped', 'column_renamed', 'column_retyped',
                                 'table_dropped', 'table_renamed',
                                 'contract_changed']::pg_catalog.text[])),
    classification text NOT NULL
                   CHECK (classification OPERATOR(pg_catalog.=) ANY
                          (ARRAY['safe', 'warning', 'breaking']::pg_catalog.text[])),
    command_tag    text,
    run_id         bigint,
    detail         pg_catalog.jsonb
);
CREATE INDEX ON medallion.schema_changes (pipeline, id);
COMMENT ON TABLE medallion.schema_changes IS
'schema changes detected: payload drift, contract versions, DDL on tracked relations, classified safe, warning or breaking';
SELECT pg_catalog.pg_extension_config_dump('medallion.schema_changes', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.schema_changes_id_seq', '');
GRANT SELECT ON medallion.schema_changes TO PUBLIC;

-- Every version of each silver contract (a schema registry): version 1 is
-- create_silver's, pipelines.definition is the newest.  Contracts made before
-- 0.2.0 become version 1 here.
CREATE TABLE medallion.contract_versions (
    pipeline      text NOT NULL REFERENCES medallion.pipelines (name)
                  ON DELETE CASCADE ON UPDATE CASCADE,
    version       integer NOT NULL CHECK (version OPERATOR(pg_catalog.>=) 1),
    definition    pg_catalog.jsonb NOT NULL,
    compatibility text NOT NULL DEFAULT 'backward',
    forced        boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    created_by    text NOT NULL DEFAULT CURRENT_USER,
    PRIMARY KEY (pipeline, version)
);
COMMENT ON TABLE medallion.contract_versions IS
'every version of each silver contract and gold query (alter_contract, alter_pipeline); pipelines.definition is the newest';
SELECT pg_catalog.pg_extension_config_dump('medallion.contract_versions', '');
GRANT SELECT ON medallion.contract_versions TO PUBLIC;
INSERT INTO medallion.contract_versions (pipeline, version, definition, created_at, created_by)
SELECT p.name, 1, p.definition, p.created_at, p.owner::pg_catalog.text
FROM medallion.pipelines p
WHERE p.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text
  AND p.definition IS NOT NULL;


------------------------------------------------------------------------------
-- Gold models, partition swaps, change records (issue 9)
------------------------------------------------------------------------------

-- Change records: for each run of a silver (or gold) pipeline that some gold
-- model reads, and that changed rows, the day buckets of the old and new
-- values of the columns those models map their partitions through, as
-- {"column": ["YYYY-MM-DD", ...]}.  A column missing from buckets means the
-- run could not tell (a whole refresh for the models mapping through it).
-- Stamped with the writing transaction (xid8) and consumed by each model
-- with a snapshot watermark in medallion.watermarks: run ids are not commit
-- order.  Dumped like every catalog table; restored into another cluster,
-- the models' watermarks are reset (watermark.c), so their first run
-- refreshes them whole and the old records only cost a refresh at most.
-- The buckets tell which days of data changed: the catalog owner's only.
CREATE TABLE medallion.changes (
    id          bigserial PRIMARY KEY,
    pipeline    text NOT NULL REFERENCES medallion.pipelines (name)
                ON DELETE CASCADE ON UPDATE CASCADE,
    xid         pg_catalog.xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    run_id      bigint,
    recorded_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    buckets     pg_catalog.jsonb NOT NULL DEFAULT '{}'::pg_catalog.jsonb
);
CREATE INDEX changes_pipeline_xid_idx ON medallion.changes (pipeline, xid);
COMMENT ON TABLE medallion.changes IS
'change records: the day buckets of the old and new values a run changed, for the gold models that read its table';
SELECT pg_catalog.pg_extension_config_dump('medallion.changes', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.changes_id_seq', '');
REVOKE ALL ON medallion.changes FROM PUBLIC;

CREATE FUNCTION medallion.create_gold(name text, query text, partition_by text DEFAULT NULL,
                                      options jsonb DEFAULT '{}')
RETURNS regclass
AS 'MODULE_PATHNAME', 'medallion_create_gold'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.create_gold(text, text, text, jsonb) IS
'creates gold.<name> with exactly the columns of query (a SELECT over silver and gold tables), partitioned by day or month on partition_by, and registers pipeline gold.<name>';

-- Called by a silver run's MERGE for each row it writes, with the old and
-- new value of a column some gold model maps through; returns the new one.
-- Stays executable by PUBLIC (pipeline owners run it): it refuses to work
-- outside a run of the current user's own pipeline.
CREATE FUNCTION medallion.change_note(slot integer, old_value anyelement, new_value anyelement)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'medallion_change_note'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.change_note(integer, anyelement, anyelement) IS
'internal: records the day buckets of a row a run changes, for the gold models reading its table';

-- Freshness covers gold models: their lag is the age of the oldest change
-- of their upstreams they have not consumed.  Same columns.
CREATE OR REPLACE VIEW medallion.freshness AS
SELECT f.pipeline, f.last_success_at, f.lag, f.sla,
       CASE WHEN f.sla IS NULL THEN 'no_sla'
            WHEN f.lag OPERATOR(pg_catalog.>) f.sla THEN 'breached'
            ELSE 'fresh' END AS status
FROM (SELECT p.name AS pipeline,
             p.last_success_at,
             medallion.pipeline_lag(p.name) AS lag,
             (p.options OPERATOR(pg_catalog.->>) 'freshness_sla')::pg_catalog.interval AS sla
      FROM medallion.pipelines p
      WHERE p.layer OPERATOR(pg_catalog.=) ANY (ARRAY['silver', 'gold']::pg_catalog.text[])
      OFFSET 0) f;


------------------------------------------------------------------------------
-- The pipeline graph: run_all order, lineage (issue 9)
------------------------------------------------------------------------------

-- The graph has no loop: run_all() could not order one, and a pipeline that
-- feeds itself means nothing.  Checked here, on every write whoever makes it
-- (create_silver, gold models, contract changes); each written edge's
-- pipeline must not reach itself.  Writers take turns on the table (SHARE ROW
-- EXCLUSIVE conflicts with itself and with writes, not with reads), so two
-- transactions cannot each add half of a loop: the second waits for the
-- first to end, then sees its edges.  medallion's own writer takes the lock
-- before it writes; a writer that did not waits here, or is chosen as a
-- deadlock victim, rather than let a loop through.
CREATE FUNCTION medallion.dependencies_acyclic()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    closing pg_catalog.text;
BEGIN
    LOCK TABLE medallion.dependencies IN SHARE ROW EXCLUSIVE MODE;
    -- UNION, not UNION ALL: each (via, node) pair once, so it ends on a loop
    WITH RECURSIVE up (via, node) AS (
        SELECT d.upstream, d.upstream FROM medallion.dependencies d
        WHERE d.pipeline OPERATOR(pg_catalog.=) NEW.pipeline
        UNION
        SELECT up.via, d.upstream FROM up
        JOIN medallion.dependencies d ON d.pipeline OPERATOR(pg_catalog.=) up.node
    )
    SELECT up.via INTO closing FROM up
    WHERE up.node OPERATOR(pg_catalog.=) NEW.pipeline
    ORDER BY up.via LIMIT 1;
    IF closing IS NOT NULL THEN
        RAISE EXCEPTION 'pipeline "%" cannot depend on itself', NEW.pipeline
            USING ERRCODE = 'MD020',
                  DETAIL = pg_catalog.format('Pipeline "%s" reads pipeline "%s", which depends on "%s" in turn.',
                                             NEW.pipeline, closing, NEW.pipeline),
                  HINT = 'Pipelines form a graph without loops: remove the reference or the query that closes it.';
    END IF;
    RETURN NULL;
END
$function$;
COMMENT ON FUNCTION medallion.dependencies_acyclic() IS
'trigger: refuses an edge of medallion.dependencies that closes a loop (MD020)';
REVOKE EXECUTE ON FUNCTION medallion.dependencies_acyclic() FROM PUBLIC;
CREATE TRIGGER dependencies_acyclic
    AFTER INSERT OR UPDATE ON medallion.dependencies
    FOR EACH ROW EXECUTE FUNCTION medallion.dependencies_acyclic();

-- The edges of silver pipelines made before 0.2.0 (create_silver records
-- them from now on): the bronze source, and every pipeline whose table a
-- contract column references ("layer.table.column").  0.1.0 only let a
-- contract reference a table that existed, so no loop can come out of this.
INSERT INTO medallion.dependencies (pipeline, upstream, kind)
SELECT p.name, u.name, 'source'
FROM medallion.pipelines p
JOIN medallion.pipelines u ON u.name OPERATOR(pg_catalog.=) p.source
WHERE p.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text
  AND u.name OPERATOR(pg_catalog.<>) p.name
ON CONFLICT (pipeline, upstream, kind) DO NOTHING;

INSERT INTO medallion.dependencies (pipeline, upstream, kind)
SELECT DISTINCT p.name, u.name, 'reference'
FROM medallion.pipelines p
CROSS JOIN LATERAL (
    SELECT c.value AS col
    FROM pg_catalog.jsonb_each(
             CASE WHEN pg_catalog.jsonb_typeof(p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text)
                       OPERATOR(pg_catalog.=) 'object'::pg_catalog.text
                  THEN p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text
                  ELSE '{}'::pg_catalog.jsonb END) c
    UNION ALL
    SELECT a.value
    FROM pg_catalog.jsonb_array_elements(
             CASE WHEN pg_catalog.jsonb_typeof(p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text)
                       OPERATOR(pg_catalog.=) 'array'::pg_catalog.text
                  THEN p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text
                  ELSE '[]'::pg_catalog.jsonb END) a
) cols
JOIN medallion.pipelines u
  ON (u.layer OPERATOR(pg_catalog.||) '.'::pg_catalog.text OPERATOR(pg_catalog.||) u.relname)
     OPERATOR(pg_catalog.=)
     pg_catalog.regexp_replace(cols.col OPERATOR(pg_catalog.->>) 'references'::pg_catalog.text,
                               '\.[^.]*$'::pg_catalog.text, ''::pg_catalog.text)
WHERE p.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text
  AND pg_catalog.jsonb_typeof(cols.col) OPERATOR(pg_catalog.=) 'object'::pg_catalog.text
  AND u.name OPERATOR(pg_catalog.<>) p.name
ON CONFLICT (pipeline, upstream, kind) DO NOTHING;

COMMENT ON FUNCTION medallion.run_all() IS
'runs every active pipeline the caller may run once, upstream first (medallion.dependencies); a pipeline whose upstream failed in the round is recorded skipped; returns the run ids';

-- One row per edge of the graph, with what an operator asks about the
-- downstream pipeline: its last run, its DLQ and quarantine backlog, who owns
-- and looks after it.  Captures join in (a captured table feeds its bronze
-- table; the table is named as its pipeline when it is one).  The view reads
-- as its owner, so the backlogs count every pipeline's rows; it shows no
-- payload and no message (run_details shows messages to their owners).
-- column_descriptions: the downstream table's column comments, which
-- create_silver, alter_contract, create_gold and alter_pipeline keep equal
-- to the descriptions given (the table found by schema = layer and name in
-- pg_class, not through search_path).
CREATE VIEW medallion.lineage AS
SELECT e.upstream,
       u.layer AS upstream_layer,
       e.pipeline,
       p.layer AS pipeline_layer,
       e.kind,
       lr.run_id AS last_run_id,
       lr.status AS last_run_status,
       lr.finished_at AS last_run_finished_at,
       lr.rows_read,
       lr.rows_inserted,
       lr.rows_updated,
       lr.rows_dlq,
       lr.rows_quarantined,
       (SELECT pg_catalog.count(*) FROM medallion.dlq q
        WHERE q.pipeline OPERATOR(pg_catalog.=) e.pipeline AND NOT q.reprocessed) AS dlq_backlog,
       (SELECT pg_catalog.count(*) FROM medallion.quarantine q
        WHERE q.pipeline OPERATOR(pg_catalog.=) e.pipeline AND NOT q.reprocessed) AS quarantine_backlog,
       p.owner,
       p.steward,
       p.description,
       (SELECT pg_catalog.jsonb_object_agg(a.attname, cd.description)
          FROM pg_catalog.pg_namespace s
          JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) s.oid
          JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid
                                        AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
          JOIN pg_catalog.pg_description cd
            ON cd.objoid OPERATOR(pg_catalog.=) c.oid
           AND cd.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND cd.objsubid OPERATOR(pg_catalog.=) a.attnum
         WHERE s.nspname OPERATOR(pg_catalog.=) p.layer::pg_catalog.name
           AND c.relname OPERATOR(pg_catalog.=) p.relname::pg_catalog.name) AS column_descriptions
FROM (SELECT d.upstream, d.pipeline, d.kind
      FROM medallion.dependencies d
      UNION ALL
      -- (format() of two names would carry their "C" collation against text's)
      SELECT COALESCE(sp.name, pg_catalog.format('%I.%I'::pg_catalog.text, sn.nspname, sc.relname)
                               COLLATE pg_catalog."default"),
             bp.name, 'capture'::pg_catalog.text
      FROM medallion.captures c
      JOIN pg_catalog.pg_class sc ON sc.oid OPERATOR(pg_catalog.=) c.source::pg_catalog.oid
      JOIN pg_catalog.pg_namespace sn ON sn.oid OPERATOR(pg_catalog.=) sc.relnamespace
      JOIN pg_catalog.pg_class bc ON bc.oid OPERATOR(pg_catalog.=) c.bronze::pg_catalog.oid
      JOIN medallion.pipelines bp
        ON bp.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text
       AND bp.relname OPERATOR(pg_catalog.=) bc.relname::pg_catalog.text
      LEFT JOIN medallion.pipelines sp
        ON sp.layer OPERATOR(pg_catalog.=) sn.nspname::pg_catalog.text
       AND sp.relname OPERATOR(pg_catalog.=) sc.relname::pg_catalog.text) e
JOIN medallion.pipelines p ON p.name OPERATOR(pg_catalog.=) e.pipeline
LEFT JOIN medallion.pipelines u ON u.name OPERATOR(pg_catalog.=) e.upstream
LEFT JOIN LATERAL (SELECT r.run_id, r.status, r.finished_at, r.rows_read, r.rows_inserted,
                          r.rows_updated, r.rows_dlq, r.rows_quarantined
                   FROM medallion.runs r
                   WHERE r.pipeline OPERATOR(pg_catalog.=) e.pipeline
                   ORDER BY r.run_id DESC LIMIT 1) lr ON true;
COMMENT ON VIEW medallion.lineage IS
'one row per edge of the pipeline graph (upstream feeds pipeline: source, reference, query, feed, export, capture), with the downstream''s last run, DLQ and quarantine backlog, owner, steward and description, and the downstream table''s column descriptions (column_descriptions: column -> comment)';
GRANT SELECT ON medallion.lineage TO PUBLIC;

CREATE FUNCTION medallion.lineage_graph(format text DEFAULT 'mermaid')
RETURNS text
AS 'MODULE_PATHNAME', 'medallion_lineage_graph'
LANGUAGE C STABLE CALLED ON NULL INPUT;
COMMENT ON FUNCTION medallion.lineage_graph(text) IS
'the lineage graph as a diagram: ''mermaid'' (a flowchart) or ''dot'' (Graphviz); nodes are pipelines and captured tables, edges carry the last run''s counts';


------------------------------------------------------------------------------
-- Schema evolution: DDL event triggers (issue 10)
------------------------------------------------------------------------------

-- DDL on the relations pipelines read or write is classified against a
-- stored snapshot of their columns: safe (a nullable column added), warning
-- (widening), breaking (a column dropped, renamed, narrowed or retyped, the
-- table dropped or renamed).  Every change is a medallion.schema_changes row
-- with its command tag; a breaking one halts the pipelines that read or
-- write the relation and raises their schema_change alert.

-- Which relations each pipeline tracks, from the catalog alone: its own
-- table (bronze, silver, gold), a silver pipeline's tombstone table, the
-- tables of its upstream pipelines (a silver source, the graph's edges),
-- the tables its contract references, and, for a bronze table fed by
-- capture(), the captured table (by OID, from medallion.captures, the
-- registry its medallion_capture trigger obeys: the source_system text goes
-- stale on a rename).
CREATE FUNCTION medallion.tracked_relations()
RETURNS TABLE (pipeline text, relid oid, role text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
WITH own AS (
    SELECT p.name, c.oid AS relid
    FROM medallion.pipelines p
    JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) p.layer
    JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid
                              AND c.relname OPERATOR(pg_catalog.=) p.relname
),
refs AS (
    SELECT p.name, pg_catalog.regexp_match(r.ref, '^([^.]+)\.(.+)\.([^.]+)$'::pg_catalog.text) AS part
    FROM medallion.pipelines p
    CROSS JOIN LATERAL (
        SELECT j OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[] AS ref
        FROM pg_catalog.jsonb_path_query(p.definition, 'lax $.columns.*.references'::pg_catalog.jsonpath) j
        UNION
        SELECT j OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[]
        FROM pg_catalog.jsonb_path_query(p.definition, 'lax $.columns[*].references'::pg_catalog.jsonpath) j) r
    WHERE p.definition IS NOT NULL
)
SELECT o.name, o.relid, 'target'::pg_catalog.text FROM own o
UNION
SELECT p.name, c.oid, 'tombstone'::pg_catalog.text
FROM medallion.pipelines p
JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) 'silver'::pg_catalog.name
JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid
 AND c.relname OPERATOR(pg_catalog.=)
     ('_'::pg_catalog.text OPERATOR(pg_catalog.||) p.relname OPERATOR(pg_catalog.||) '_deleted'::pg_catalog.text)::pg_catalog.name
WHERE p.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text
UNION
SELECT p.name, u.relid, 'source'::pg_catalog.text
FROM medallion.pipelines p JOIN own u ON u.name OPERATOR(pg_catalog.=) p.source
UNION
SELECT d.pipeline, u.relid, d.kind
FROM medallion.dependencies d JOIN own u ON u.name OPERATOR(pg_catalog.=) d.upstream
UNION
SELECT r.name, c.oid, 'reference'::pg_catalog.text
FROM refs r
JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) (r.part[1])::pg_catalog.name
JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid
                          AND c.relname OPERATOR(pg_catalog.=) (r.part[2])::pg_catalog.name
UNION
SELECT p.name, cap.source::pg_catalog.oid, 'capture'::pg_catalog.text
FROM medallion.captures cap
JOIN pg_catalog.pg_class b ON b.oid OPERATOR(pg_catalog.=) cap.bronze::pg_catalog.oid
JOIN pg_catalog.pg_namespace bn ON bn.oid OPERATOR(pg_catalog.=) b.relnamespace
                               AND bn.nspname OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.name
JOIN medallion.pipelines p ON p.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text
                          AND p.relname OPERATOR(pg_catalog.=) b.relname::pg_catalog.text
$$;
COMMENT ON FUNCTION medallion.tracked_relations() IS
'the relations each pipeline reads or writes, whose DDL the event triggers watch (role: target, tombstone, source, reference, capture, or a dependency kind)';
REVOKE ALL ON FUNCTION medallion.tracked_relations() FROM PUBLIC;

-- The columns of a relation as the snapshot keeps them (attnum order,
-- dropped columns included: a name re-added at a new attnum is told apart
-- from a column that merely moved in a restore).
CREATE FUNCTION medallion.column_snapshot(relid oid)
RETURNS pg_catalog.jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'attnum', a.attnum,
           'name', a.attname,
           'type', a.atttypid,
           'typname', pg_catalog.quote_ident(tn.nspname) OPERATOR(pg_catalog.||) '.'::pg_catalog.text
                      OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.typname),
           'format', CASE WHEN a.attisdropped THEN NULL
                          ELSE pg_catalog.format_type(a.atttypid, a.atttypmod) END,
           'typmod', a.atttypmod,
           'notnull', a.attnotnull,
           'hasdef', a.atthasdef,
           'dropped', a.attisdropped) ORDER BY a.attnum), '[]'::pg_catalog.jsonb)
FROM pg_catalog.pg_attribute a
LEFT JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.typnamespace
WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.>) 0
$$;
COMMENT ON FUNCTION medallion.column_snapshot(oid) IS
'internal: the columns of a relation (name, type, typmod, not null, default, dropped) as the DDL watch stores them';
REVOKE ALL ON FUNCTION medallion.column_snapshot(oid) FROM PUBLIC;

-- One row per tracked relation: the pipelines tracking it and its columns
-- when last seen.  Derived state keyed by OID, which a restore changes: it is
-- registered with pg_dump but none of its rows are dumped ('WHERE false'); it
-- is rebuilt from the restored catalog (the statement triggers below fire as
-- the catalog's rows are loaded).
CREATE TABLE medallion.column_snapshots (
    relid     oid PRIMARY KEY,
    relation  text NOT NULL,
    pipelines text[] NOT NULL,
    columns   pg_catalog.jsonb NOT NULL,
    taken_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
COMMENT ON TABLE medallion.column_snapshots IS
'the columns of every tracked relation as last seen, which DDL on it is classified against';
SELECT pg_catalog.pg_extension_config_dump('medallion.column_snapshots', 'WHERE false');
GRANT SELECT ON medallion.column_snapshots TO PUBLIC;

-- Brings the snapshots in line with the catalog: relations newly tracked
-- are snapshotted, untracked ones forgotten, medallion's own DDL absorbed.
-- Returns how many rows changed.  It locks only the rows it changes: it runs
-- whenever medallion made DDL (a partition made by an ingest, say), and a
-- writer must not wait for another's transaction over nothing.
CREATE FUNCTION medallion.column_snapshots_sync()
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
WITH t AS (
    SELECT r.relid, pg_catalog.array_agg(DISTINCT r.pipeline ORDER BY r.pipeline) AS pipelines
    FROM medallion.tracked_relations() r GROUP BY r.relid
),
cur AS (
    SELECT t.relid, pg_catalog.format('%I.%I'::pg_catalog.text, n.nspname, c.relname) AS relation,
           t.pipelines, medallion.column_snapshot(t.relid) AS columns
    FROM t
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
),
gone AS (
    DELETE FROM medallion.column_snapshots s
    WHERE NOT EXISTS (SELECT FROM t WHERE t.relid OPERATOR(pg_catalog.=) s.relid)
    RETURNING 1
),
changed AS (
    UPDATE medallion.column_snapshots s
    SET relation = c.relation, pipelines = c.pipelines, columns = c.columns,
        taken_at = pg_catalog.clock_timestamp()
    FROM cur c
    WHERE s.relid OPERATOR(pg_catalog.=) c.relid
      AND NOT (s.relation OPERATOR(pg_catalog.=) c.relation
               AND s.pipelines OPERATOR(pg_catalog.=) c.pipelines
               AND s.columns OPERATOR(pg_catalog.=) c.columns)
    RETURNING 1
),
added AS (
    INSERT INTO medallion.column_snapshots (relid, relation, pipelines, columns)
    SELECT c.relid, c.relation, c.pipelines, c.columns FROM cur c
    WHERE NOT EXISTS (SELECT FROM medallion.column_snapshots s
                      WHERE s.relid OPERATOR(pg_catalog.=) c.relid)
    ON CONFLICT (relid) DO NOTHING
    RETURNING 1
)
SELECT (SELECT pg_catalog.count(*) FROM gone) OPERATOR(pg_catalog.+)
       (SELECT pg_catalog.count(*) FROM changed) OPERATOR(pg_catalog.+)
       (SELECT pg_catalog.count(*) FROM added)
$$;
COMMENT ON FUNCTION medallion.column_snapshots_sync() IS
'internal: snapshots the relations newly tracked, forgets the untracked ones; returns the rows changed';
REVOKE ALL ON FUNCTION medallion.column_snapshots_sync() FROM PUBLIC;

-- The C side of the sync: runs it as the catalog owner and tells every
-- backend's cache of tracked relations.  Fired by statement triggers on the
-- catalog tables the tracked set is read from, so a pipeline of any layer
-- (gold included) is tracked from its creation without its code knowing.
CREATE FUNCTION medallion.column_snapshots_track()
RETURNS trigger
AS 'MODULE_PATHNAME', 'medallion_column_snapshots_track'
LANGUAGE C;
COMMENT ON FUNCTION medallion.column_snapshots_track() IS
'internal: statement trigger on medallion.pipelines, dependencies and captures; refreshes medallion.column_snapshots';
REVOKE ALL ON FUNCTION medallion.column_snapshots_track() FROM PUBLIC;

CREATE TRIGGER medallion_track AFTER INSERT OR DELETE OR UPDATE OF layer, relname, source, definition
    ON medallion.pipelines FOR EACH STATEMENT EXECUTE FUNCTION medallion.column_snapshots_track();
CREATE TRIGGER medallion_track AFTER INSERT OR DELETE OR UPDATE
    ON medallion.dependencies FOR EACH STATEMENT EXECUTE FUNCTION medallion.column_snapshots_track();
CREATE TRIGGER medallion_track AFTER INSERT OR DELETE OR UPDATE
    ON medallion.captures FOR EACH STATEMENT EXECUTE FUNCTION medallion.column_snapshots_track();

-- The event trigger functions: C, revoked from PUBLIC (an event trigger calls
-- its function without an EXECUTE check; only superusers make event triggers).
CREATE FUNCTION medallion.ddl_watch_command_end()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'medallion_ddl_watch_command_end'
LANGUAGE C;
COMMENT ON FUNCTION medallion.ddl_watch_command_end() IS
'internal: ddl_command_end event trigger; classifies ALTER TABLE on tracked relations';
REVOKE ALL ON FUNCTION medallion.ddl_watch_command_end() FROM PUBLIC;

CREATE FUNCTION medallion.ddl_watch_sql_drop()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'medallion_ddl_watch_sql_drop'
LANGUAGE C;
COMMENT ON FUNCTION medallion.ddl_watch_sql_drop() IS
'internal: sql_drop event trigger; records tracked relations and columns dropped';
REVOKE ALL ON FUNCTION medallion.ddl_watch_sql_drop() FROM PUBLIC;

-- Existing pipelines (an update from 0.1.0) are tracked from now on.
SELECT medallion.column_snapshots_sync();

CREATE EVENT TRIGGER medallion_ddl_command_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'ALTER FOREIGN TABLE')
    EXECUTE FUNCTION medallion.ddl_watch_command_end();
CREATE EVENT TRIGGER medallion_sql_drop ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP FOREIGN TABLE', 'DROP SCHEMA', 'DROP OWNED',
                 'DROP TYPE', 'DROP DOMAIN')
    EXECUTE FUNCTION medallion.ddl_watch_sql_drop();


------------------------------------------------------------------------------
-- Schema evolution: contract versions, alter_contract (issue 10)
------------------------------------------------------------------------------

-- The version (in medallion.contract_versions) that pipelines.definition is:
-- each backend keeps parsed contracts keyed on (pipeline, version).
ALTER TABLE medallion.pipelines ADD COLUMN definition_version integer;
COMMENT ON COLUMN medallion.pipelines.definition_version IS
'the version of definition in medallion.contract_versions (silver pipelines)';
UPDATE medallion.pipelines
SET definition_version = 1
WHERE layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text
  AND definition IS NOT NULL;

-- Plain DML sends no cache invalidation: a statement trigger on the rows a
-- parsed contract comes from tells every backend (at commit) and this one
-- (at once) to drop its parsed contracts.  Not for PUBLIC: only this
-- trigger, which fires as the catalog owner's writes, needs it.
CREATE FUNCTION medallion.contract_cache_invalidate()
RETURNS trigger
AS 'MODULE_PATHNAME', 'medallion_contract_cache_invalidate'
LANGUAGE C;
COMMENT ON FUNCTION medallion.contract_cache_invalidate() IS
'internal: trigger on medallion.pipelines that drops every backend''s parsed contracts';
REVOKE ALL ON FUNCTION medallion.contract_cache_invalidate() FROM PUBLIC;
CREATE TRIGGER contract_cache_invalidate
    AFTER INSERT OR UPDATE OF definition, definition_version OR DELETE OR TRUNCATE
    ON medallion.pipelines
    FOR EACH STATEMENT EXECUTE FUNCTION medallion.contract_cache_invalidate();

-- A new version of a silver contract: columns patch it (an object adds or
-- replaces a column, null removes one), options patch its options the same
-- way.  Checked against the pipeline's compatibility mode; the pipeline's
-- owner only (checked in C).
CREATE FUNCTION medallion.alter_contract(pipeline text, columns jsonb,
                                         options jsonb DEFAULT NULL,
                                         force boolean DEFAULT false)
RETURNS integer
AS 'MODULE_PATHNAME', 'medallion_alter_contract'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.alter_contract(text, jsonb, jsonb, boolean) IS
'patches a silver contract (columns: object adds or replaces, null removes; options likewise), alters silver.<name> to match and records the new version, which it returns; an incompatible change needs force';


------------------------------------------------------------------------------
-- Schema evolution: payload drift registry and halts (issue 10)
------------------------------------------------------------------------------

-- The keys (dotted paths, two levels of objects deep) and JSON types the rows
-- of each bronze table carry: written once per batch by ingest*, and by silver
-- runs for rows that came without a batch (capture, plain INSERT or COPY).
-- last_seen moves at most once a minute per key.  No unique key, on purpose:
-- an ingest must never wait for another one's transaction (a unique index
-- makes the second inserter of a new key wait, and fail in REPEATABLE READ);
-- batches that meet a new key at the same time may each add a row for it.
CREATE TABLE medallion.payload_keys (
    pipeline   text NOT NULL REFERENCES medallion.pipelines (name)
               ON DELETE CASCADE ON UPDATE CASCADE,
    path       text NOT NULL,
    json_type  text NOT NULL
               CHECK (json_type OPERATOR(pg_catalog.=) ANY
                      (ARRAY['object', 'array', 'string', 'number', 'boolean', 'null']::pg_catalog.text[])),
    first_seen timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_seen  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX payload_keys_key ON medallion.payload_keys (pipeline, path, json_type);
COMMENT ON TABLE medallion.payload_keys IS
'payload keys seen per bronze table: dotted path, JSON type, first and last seen (to the minute)';
SELECT pg_catalog.pg_extension_config_dump('medallion.payload_keys', '');
GRANT SELECT ON medallion.payload_keys TO PUBLIC;

-- A run's SQL calls it on the rows of its window that came without a batch:
-- it adds their keys to the run's registry batch.  Refuses outside a run of
-- the caller's own pipeline, like count_read(), so PUBLIC keeps EXECUTE (the
-- pipeline owners' runs call it).
CREATE FUNCTION medallion.payload_keys_note(payload pg_catalog.jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'medallion_payload_keys_note'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION medallion.payload_keys_note(pg_catalog.jsonb) IS
'internal: notes the keys of a payload in the registry batch of the current silver run (runs only)';


------------------------------------------------------------------------------
-- Network: HTTP sources (issue 12)
------------------------------------------------------------------------------

-- What an HTTP source keeps besides its definition (pipelines.definition,
-- which anyone may read): its request headers, which often carry
-- credentials, and the validators (ETag, Last-Modified) of its last
-- response, for conditional requests.  Only the source's owner and the
-- extension's owner read it.
CREATE TABLE medallion.http_sources (
    pipeline      text PRIMARY KEY REFERENCES medallion.pipelines (name)
                  ON DELETE CASCADE ON UPDATE CASCADE,
    headers       pg_catalog.jsonb NOT NULL DEFAULT '{}',
    etag          text,
    last_modified text
);
COMMENT ON TABLE medallion.http_sources IS
'secret request headers of HTTP sources and exports, and the validators of a source''s last response; readable by each pipeline''s owner';
SELECT pg_catalog.pg_extension_config_dump('medallion.http_sources', '');
REVOKE ALL ON medallion.http_sources FROM PUBLIC;
ALTER TABLE medallion.http_sources ENABLE ROW LEVEL SECURITY;
CREATE POLICY http_sources_owner ON medallion.http_sources FOR SELECT
    USING (medallion.owns_pipeline(http_sources.pipeline));
GRANT SELECT ON medallion.http_sources TO PUBLIC;

CREATE FUNCTION medallion.create_http_source(target regclass, url text,
                                             options pg_catalog.jsonb DEFAULT '{}',
                                             name text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'medallion_create_http_source'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.create_http_source(regclass, text, pg_catalog.jsonb, text) IS
'registers an HTTP source (pipeline source.<name>) whose pages land in a bronze table when it runs; options: method, headers (secret), body, records, next, format, timeout, max_pages';
-- Whoever may create a source makes the server fetch URLs: an
-- administrator grants it (medallion.http_allowed_hosts bounds where to).
REVOKE EXECUTE ON FUNCTION medallion.create_http_source(regclass, text, pg_catalog.jsonb, text) FROM PUBLIC;


------------------------------------------------------------------------------
-- Network: webhook alerts and exports (issue 12)
------------------------------------------------------------------------------

-- Webhooks that alerts are sent to.  An administrator's setting: PUBLIC
-- neither reads it (headers hold credentials) nor adds to it.
CREATE TABLE medallion.webhooks (
    id         bigserial PRIMARY KEY,
    url        text NOT NULL,
    pipelines  text[],
    kinds      text[],
    format     text NOT NULL DEFAULT 'slack'
               CHECK (format OPERATOR(pg_catalog.=) ANY (ARRAY['slack', 'json']::pg_catalog.text[])),
    headers    pg_catalog.jsonb NOT NULL DEFAULT '{}',
    created_by text NOT NULL DEFAULT CURRENT_USER,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE medallion.webhooks IS
'webhooks alerts are sent to: pipelines and kinds filter (NULL: all; pipelines may use *), format slack or json, secret headers';
SELECT pg_catalog.pg_extension_config_dump('medallion.webhooks', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.webhooks_id_seq', '');
REVOKE ALL ON medallion.webhooks FROM PUBLIC;

-- The outbox: one row per message (an alert raised or resolved, for one
-- webhook), queued by the transaction that raised or resolved the alert and
-- sent after it commits by the delivery worker, with retries.  The message's
-- content is kept here: trimming old alerts loses no message.
CREATE TABLE medallion.alert_deliveries (
    id              bigserial PRIMARY KEY,
    alert_id        bigint NOT NULL,
    webhook_id      bigint NOT NULL REFERENCES medallion.webhooks (id) ON DELETE CASCADE,
    event           text NOT NULL
                    CHECK (event OPERATOR(pg_catalog.=) ANY (ARRAY['raised', 'resolved']::pg_catalog.text[])),
    pipeline        text NOT NULL,
    kind            text NOT NULL,
    message         text,
    event_at        timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz DEFAULT pg_catalog.now(),
    delivered_at    timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (alert_id, webhook_id, event)
);
CREATE INDEX ON medallion.alert_deliveries (next_attempt_at) WHERE delivered_at IS NULL;
COMMENT ON TABLE medallion.alert_deliveries IS
'webhook outbox: each alert raised or resolved, per matching webhook; next_attempt_at NULL once given up';
SELECT pg_catalog.pg_extension_config_dump('medallion.alert_deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.alert_deliveries_id_seq', '');
REVOKE ALL ON medallion.alert_deliveries FROM PUBLIC;

CREATE FUNCTION medallion.add_webhook(url text, options pg_catalog.jsonb DEFAULT '{}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'medallion_add_webhook'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.add_webhook(text, pg_catalog.jsonb) IS
'sends alerts (raised and resolved) to a URL; options: pipelines, kinds, format (slack or json), headers';
REVOKE EXECUTE ON FUNCTION medallion.add_webhook(text, pg_catalog.jsonb) FROM PUBLIC;

CREATE FUNCTION medallion.remove_webhook(id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_remove_webhook'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION medallion.remove_webhook(bigint) IS
'removes a webhook, and its messages not delivered yet';
REVOKE EXECUTE ON FUNCTION medallion.remove_webhook(bigint) FROM PUBLIC;

-- Exports (pipelines export.<name>): the runs of the source silver pipeline
-- whose rows an export has sent.  A set, not a watermark: run ids are not
-- commit order.  An export's secret headers are kept in
-- medallion.http_sources, like a source's.  An export of a gold table
-- tracks nothing here: it consumes the model's change records
-- (medallion.changes) with a snapshot watermark of its own, as a gold model
-- reading it does.
CREATE TABLE medallion.export_runs (
    export      text NOT NULL REFERENCES medallion.pipelines (name)
                ON DELETE CASCADE ON UPDATE CASCADE,
    run_id      bigint NOT NULL,
    exported_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (export, run_id)
);
COMMENT ON TABLE medallion.export_runs IS
'the source runs whose rows (and deletes) each export has sent';
SELECT pg_catalog.pg_extension_config_dump('medallion.export_runs', '');
GRANT SELECT ON medallion.export_runs TO PUBLIC;

CREATE FUNCTION medallion.create_export(source regclass, url text,
                                        options pg_catalog.jsonb DEFAULT '{}',
                                        name text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'medallion_create_export'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.create_export(regclass, text, pg_catalog.jsonb, text) IS
'registers an export (pipeline export.<name>) that POSTs as JSON batches with an Idempotency-Key the changed rows of a silver table, or the partitions of a gold table refreshed since the last export (each a replace-set); options: batch_size, timeout, headers (secret)';
REVOKE EXECUTE ON FUNCTION medallion.create_export(regclass, text, pg_catalog.jsonb, text) FROM PUBLIC;


------------------------------------------------------------------------------
-- Backfills (issue 11)
------------------------------------------------------------------------------

-- Reprocessing a date range (or the whole history) of a silver or gold
-- pipeline, as a run of kind 'backfill' (src/backfill/).  Callable by
-- anyone: the function checks that the caller may act as the owner.
CREATE FUNCTION medallion.backfill(pipeline text, from_date date, to_date date,
                                   strategy text DEFAULT 'partition',
                                   dry_run boolean DEFAULT false,
                                   options pg_catalog.jsonb DEFAULT '{}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'medallion_backfill'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.backfill(text, date, date, text, boolean, pg_catalog.jsonb) IS
'reprocesses the days from_date..to_date (NULL: the whole history) of a silver or gold pipeline; silver ranges are ingestion days, or event-time days with the contract option event_time; full rebuilds the table aside and swaps it in (same OID; the silver watermark becomes the snapshot it read); returns the run id (NULL for a dry run)';

CREATE FUNCTION medallion.backfill_plan(pipeline text, from_date date, to_date date,
                                        strategy text DEFAULT 'partition')
RETURNS TABLE (day date, est_rows bigint, action text)
AS 'MODULE_PATHNAME', 'medallion_backfill_plan'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.backfill_plan(text, date, date, text) IS
'the days a backfill would process, the rows each holds (bronze partition statistics; with event_time, the silver rows of that event day, as bronze cannot prune by event time) and what it would do with each';

-- The versions blue-green backfills replaced, kept for rollback() until
-- kept_until (then dropped by the scheduler's housekeeping), with the
-- watermark the pipeline had at the swap.
CREATE TABLE medallion.backfill_versions (
    pipeline   text NOT NULL REFERENCES medallion.pipelines (name)
               ON DELETE CASCADE ON UPDATE CASCADE,
    run_id     bigint NOT NULL,
    kept_table pg_catalog.regclass NOT NULL,
    watermark  pg_catalog.jsonb,
    kept_until timestamptz NOT NULL,
    -- the contract or query version the kept rows were built with:
    -- rollback() makes it the pipeline's definition again
    definition_version integer,
    PRIMARY KEY (pipeline, run_id)
);
COMMENT ON COLUMN medallion.backfill_versions.definition_version IS
'the definition version (medallion.contract_versions) the kept rows were built with; rollback() restores it';
COMMENT ON TABLE medallion.backfill_versions IS
'versions replaced by blue-green backfills, kept for rollback() until kept_until';
SELECT pg_catalog.pg_extension_config_dump('medallion.backfill_versions', '');
REVOKE ALL ON medallion.backfill_versions FROM PUBLIC;
GRANT SELECT ON medallion.backfill_versions TO PUBLIC;

-- The days of asynchronous backfills (options.async): a background worker
-- processes them in order, one transaction each, and marks them done, so an
-- interrupted backfill resumes at its first day not done.
CREATE TABLE medallion.backfills (
    run_id    bigint NOT NULL,
    pipeline  text NOT NULL REFERENCES medallion.pipelines (name)
              ON DELETE CASCADE ON UPDATE CASCADE,
    day       date NOT NULL,
    done_at   timestamptz,
    rows_read bigint,
    PRIMARY KEY (run_id, day)
);
CREATE INDEX ON medallion.backfills (run_id) WHERE done_at IS NULL;
COMMENT ON TABLE medallion.backfills IS
'the days of asynchronous backfills, and when each was done';
SELECT pg_catalog.pg_extension_config_dump('medallion.backfills', '');
REVOKE ALL ON medallion.backfills FROM PUBLIC;
GRANT SELECT ON medallion.backfills TO PUBLIC;

CREATE FUNCTION medallion.rollback(pipeline text)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_rollback'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.rollback(text) IS
'swaps back the version the last blue-green backfill of a silver or gold pipeline replaced, with the watermark and the definition version it had, while it is kept';


------------------------------------------------------------------------------
-- Operability (issue 13)
------------------------------------------------------------------------------

-- The end of a pipeline (src/ops/lifecycle.c).
CREATE FUNCTION medallion.drop_pipeline(pipeline text, drop_table boolean DEFAULT false,
                                        "cascade" boolean DEFAULT false)
RETURNS text[]
AS 'MODULE_PATHNAME', 'medallion_drop_pipeline'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.drop_pipeline(text, boolean, boolean) IS
'removes a pipeline (schedule, pg_cron job, watermark, expectations, batches, dead letters, quarantine, graph edges) and, with drop_table, its table; cascade drops the pipelines that read it first; returns the names dropped';

-- Operators of a pipeline (src/ops/operators.c): roles that may run,
-- trigger, pause, resume and replay it, not redefine it.  Roles by name,
-- like pipelines.owner: a dump restores without them.
CREATE TABLE medallion.operators (
    pipeline   text NOT NULL REFERENCES medallion.pipelines (name)
               ON DELETE CASCADE ON UPDATE CASCADE,
    role       pg_catalog.name NOT NULL,
    granted_by pg_catalog.name NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (pipeline, role)
);
COMMENT ON TABLE medallion.operators IS
'roles that may run, trigger, pause, resume and replay a pipeline without owning it';
SELECT pg_catalog.pg_extension_config_dump('medallion.operators', '');
GRANT SELECT ON medallion.operators TO PUBLIC;

CREATE FUNCTION medallion.grant_operator(pipeline text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_grant_operator'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.grant_operator(text, regrole) IS
'lets a role (and its members) run, trigger, pause, resume and replay a pipeline the caller owns; runs still execute as the owner';

CREATE FUNCTION medallion.revoke_operator(pipeline text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_revoke_operator'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.revoke_operator(text, regrole) IS
'withdraws grant_operator';

-- DLQ triage by the pipeline's owner (src/ops/dlq_triage.c).  A correction
-- keeps the payload as it first came; a discard settles the row (a replay
-- skips it) and says who and why.
ALTER TABLE medallion.dlq
    ADD COLUMN first_payload  text,
    ADD COLUMN corrected_at   timestamptz,
    ADD COLUMN corrected_by   text,
    ADD COLUMN discarded_at   timestamptz,
    ADD COLUMN discarded_by   text,
    ADD COLUMN discard_reason text;
COMMENT ON COLUMN medallion.dlq.first_payload IS
'the payload as it first came, when dlq_correct() replaced it';
-- A silver run that reads a source row again (the first run after a restore
-- re-reads its whole source) skips it when it already has a dead letter,
-- settled or not: this index answers that for settled rows too.
CREATE INDEX dlq_pipeline_source_seq_all ON medallion.dlq (pipeline, source_seq);

CREATE FUNCTION medallion.dlq_correct(id bigint, payload text)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_dlq_correct'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.dlq_correct(bigint, text) IS
'replaces the payload of a pending dead letter of a pipeline the caller owns (the first payload is kept); replay_dlq() then loads it';

CREATE FUNCTION medallion.dlq_discard(pipeline text, ids bigint[] DEFAULT NULL,
                                      reason text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'medallion_dlq_discard'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.dlq_discard(text, bigint[], text) IS
'settles pending dead letters of a pipeline the caller owns without loading them (all, or the ids given), recording who and why (reason is required); returns how many';

-- The owner's pending dead letters, grouped by what went wrong.
CREATE VIEW medallion.dlq_summary WITH (security_barrier) AS
SELECT d.pipeline, d.error_type, d.sqlstate, d.field,
       pg_catalog.count(*) AS rows,
       pg_catalog.min(d.failed_at) AS first_seen,
       pg_catalog.max(d.failed_at) AS last_seen,
       (pg_catalog.array_agg(d.original_payload ORDER BY d.id))[1] AS sample_payload
FROM medallion.dlq d
WHERE NOT d.reprocessed AND medallion.owns_pipeline(d.pipeline)
GROUP BY d.pipeline, d.error_type, d.sqlstate, d.field;
COMMENT ON VIEW medallion.dlq_summary IS
'pending dead letters of the pipelines the current role owns, per pipeline, error type, SQLSTATE and field: count, first and last seen, a sample payload';
GRANT SELECT ON medallion.dlq_summary TO PUBLIC;

-- One row per pipeline: the query a DBA runs first.  Counts only (no
-- payloads, no messages): PUBLIC reads it like medallion.runs.
CREATE VIEW medallion.status AS
SELECT p.name AS pipeline, p.layer, p.state, p.schedule, p.schedule_kind,
       CASE WHEN p.state OPERATOR(pg_catalog.=) ANY ('{paused,halted}'::pg_catalog.text[]) THEN NULL
            WHEN p.state OPERATOR(pg_catalog.=) 'circuit_open'::pg_catalog.text
              THEN p.circuit_opened_at OPERATOR(pg_catalog.+)
                   COALESCE((p.options OPERATOR(pg_catalog.->>) 'breaker_cooldown'::pg_catalog.text)::pg_catalog.interval,
                            '5 minutes'::pg_catalog.interval)
            WHEN p.retry_at IS NOT NULL THEN p.retry_at
            WHEN p.trigger_requested THEN pg_catalog.now()
            WHEN p.schedule_kind OPERATOR(pg_catalog.=) 'interval'::pg_catalog.text
              THEN COALESCE(GREATEST(r.started_at, p.last_checked_at), pg_catalog.now())
                   OPERATOR(pg_catalog.+) p.schedule::pg_catalog.interval
       END AS next_run_due,
       r.run_id AS last_run_id, r.status AS last_run_status, r.started_at AS last_run_at,
       r.finished_at OPERATOR(pg_catalog.-) r.started_at AS last_run_duration,
       r.rows_read AS last_rows_read, r.rows_inserted AS last_rows_inserted,
       r.rows_updated AS last_rows_updated, r.rows_dlq AS last_rows_dlq,
       p.last_success_at, f.lag, f.sla, f.status AS freshness,
       (SELECT pg_catalog.count(*) FROM medallion.dlq d
        WHERE d.pipeline OPERATOR(pg_catalog.=) p.name AND NOT d.reprocessed) AS dlq_backlog,
       (SELECT pg_catalog.count(*) FROM medallion.quarantine q
        WHERE q.pipeline OPERATOR(pg_catalog.=) p.name AND NOT q.reprocessed) AS quarantine_backlog,
       (SELECT pg_catalog.array_agg(a.kind ORDER BY a.kind) FROM medallion.alerts a
        WHERE a.pipeline OPERATOR(pg_catalog.=) p.name AND a.resolved_at IS NULL) AS open_alerts,
       p.owner, p.steward
FROM medallion.pipelines p
LEFT JOIN LATERAL (SELECT x.run_id, x.status, x.started_at, x.finished_at, x.rows_read,
                          x.rows_inserted, x.rows_updated, x.rows_dlq
                   FROM medallion.runs x
                   WHERE x.pipeline OPERATOR(pg_catalog.=) p.name
                     AND x.status OPERATOR(pg_catalog.<>) 'skipped'::pg_catalog.text
                   ORDER BY x.run_id DESC LIMIT 1) r ON true
LEFT JOIN medallion.freshness f ON f.pipeline OPERATOR(pg_catalog.=) p.name;
COMMENT ON VIEW medallion.status IS
'one row per pipeline: layer, state, schedule and next run due, last run, freshness, DLQ and quarantine backlog, open alerts, owner and steward';
GRANT SELECT ON medallion.status TO PUBLIC;

-- The pipeline-design checklist, evaluated from the catalog.  Items a
-- feature of a later section reads (schema policy, alert delivery) are
-- judged from what the pipeline's definition and options say.
CREATE FUNCTION medallion.checklist(pipeline text)
RETURNS TABLE(item text, ok boolean, detail text, hint text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
    p        medallion.pipelines;
    st       medallion.status;
    opts     pg_catalog.jsonb;
    copts    pg_catalog.jsonb;
    n        pg_catalog.int8;
    bad      pg_catalog.text;
    cron_status pg_catalog.text;
    cron_action pg_catalog.text;
    up_ret   pg_catalog.interval;
    up_name  pg_catalog.text;
    cols     pg_catalog.jsonb;
    ndesc    pg_catalog.int8;
    ncols    pg_catalog.int8;
BEGIN
    SELECT * INTO p FROM medallion.pipelines x WHERE x.name OPERATOR(pg_catalog.=) checklist.pipeline;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = pg_catalog.format('pipeline "%s" does not exist', checklist.pipeline),
            HINT = 'Pipelines are listed in medallion.pipelines.';
    END IF;
    SELECT * INTO st FROM medallion.status x WHERE x.pipeline OPERATOR(pg_catalog.=) p.name;
    opts := p.options;
    copts := COALESCE(p.definition OPERATOR(pg_catalog.->) 'options'::pg_catalog.text, '{}'::pg_catalog.jsonb);

    item := 'idempotent';
    IF p.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text THEN
        ok := p.definition OPERATOR(pg_catalog.?) 'unique_key'::pg_catalog.text;
        detail := pg_catalog.format('MERGE on unique key %s, newest wins on %s',
                                    p.definition OPERATOR(pg_catalog.->) 'unique_key'::pg_catalog.text,
                                    COALESCE(p.definition OPERATOR(pg_catalog.->>) 'order_by'::pg_catalog.text, 'arrival order'));
        hint := NULL;
    ELSIF p.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text THEN
        ok := true; detail := 'a batch id lands once (medallion.batches)'; hint := NULL;
    ELSE
        ok := true; detail := pg_catalog.format('%s runs are recorded and replace what they compute', p.layer); hint := NULL;
    END IF;
    RETURN NEXT;

    item := 'medallion layers';
    SELECT pg_catalog.string_agg(d.upstream OPERATOR(pg_catalog.||) ' -> ' OPERATOR(pg_catalog.||) d.pipeline, ', ')
      INTO bad
      FROM medallion.dependencies d
      JOIN medallion.pipelines u ON u.name OPERATOR(pg_catalog.=) d.upstream
     WHERE d.pipeline OPERATOR(pg_catalog.=) p.name
       AND pg_catalog.array_position('{source,bronze,silver,gold,export}'::pg_catalog.text[], u.layer)
           OPERATOR(pg_catalog.>)
           pg_catalog.array_position('{source,bronze,silver,gold,export}'::pg_catalog.text[], p.layer);
    ok := bad IS NULL;
    detail := COALESCE('reads a later layer: ' OPERATOR(pg_catalog.||) bad, 'upstreams are in earlier layers');
    hint := CASE WHEN bad IS NOT NULL THEN 'Read raw data through bronze and cleaned data through silver.' END;
    RETURN NEXT;

    item := 'schema-change policy';
    IF p.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text THEN
        ok := copts OPERATOR(pg_catalog.?) 'schema_policy'::pg_catalog.text;
        detail := pg_catalog.format('schema_policy %s, compatibility %s',
                                    COALESCE(copts OPERATOR(pg_catalog.->>) 'schema_policy'::pg_catalog.text, 'ignore (default)'),
                                    COALESCE(copts OPERATOR(pg_catalog.->>) 'compatibility'::pg_catalog.text, 'backward (default)'));
        hint := CASE WHEN NOT ok THEN 'Choose how new payload keys are handled: the contract option schema_policy (ignore, evolve, strict).' END;
    ELSE
        ok := true; detail := 'bronze accepts any payload; drift is recorded'; hint := NULL;
    END IF;
    RETURN NEXT;

    item := 'error handling and DLQ';
    ok := COALESCE(st.dlq_backlog, 0) OPERATOR(pg_catalog.=) 0
          AND COALESCE(st.quarantine_backlog, 0) OPERATOR(pg_catalog.=) 0
          AND st.open_alerts IS NULL;
    detail := pg_catalog.format('%s pending dead letters, %s quarantined rows, open alerts: %s',
                                COALESCE(st.dlq_backlog, 0), COALESCE(st.quarantine_backlog, 0),
                                COALESCE(pg_catalog.array_to_string(st.open_alerts, ', '), 'none'));
    hint := CASE WHEN NOT ok THEN 'Triage with medallion.dlq_summary, dlq_correct, replay_dlq or dlq_discard; resolve alerts with resume().' END;
    RETURN NEXT;

    item := 'backfill-able';
    IF p.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text THEN
        SELECT u.name, u.retention INTO up_name, up_ret
          FROM medallion.pipelines u WHERE u.name OPERATOR(pg_catalog.=) p.source;
        ok := up_ret IS NULL OR up_ret OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) p.created_at);
        detail := pg_catalog.format('%s keeps %s of history; the pipeline is %s old',
                                    COALESCE(up_name, 'its source'), COALESCE(up_ret::pg_catalog.text, 'all'),
                                    pg_catalog.date_trunc('second', pg_catalog.now() OPERATOR(pg_catalog.-) p.created_at));
        hint := CASE WHEN NOT ok THEN 'A rebuild cannot reach rows bronze no longer holds: lengthen the bronze retention.' END;
    ELSIF p.layer OPERATOR(pg_catalog.=) 'gold'::pg_catalog.text THEN
        ok := p.definition OPERATOR(pg_catalog.->>) 'partition_by'::pg_catalog.text IS NOT NULL;
        detail := CASE WHEN ok THEN 'partitioned: a date range is recomputed partition by partition' ELSE 'not partitioned: every backfill is a full refresh' END;
        hint := CASE WHEN NOT ok THEN 'Give create_gold a partition_by column.' END;
    ELSE
        ok := true; detail := pg_catalog.format('retention %s', COALESCE(p.retention::pg_catalog.text, 'none (kept forever)')); hint := NULL;
    END IF;
    RETURN NEXT;

    item := 'tests at the layer boundary';
    SELECT pg_catalog.count(*) INTO n FROM medallion.expectations e WHERE e.pipeline OPERATOR(pg_catalog.=) p.name;
    IF p.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text THEN
        SELECT n OPERATOR(pg_catalog.+) pg_catalog.count(*) INTO n
          FROM pg_catalog.jsonb_each(COALESCE(p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text, '{}'::pg_catalog.jsonb)) c
         WHERE pg_catalog.jsonb_typeof(c.value) OPERATOR(pg_catalog.=) 'object'::pg_catalog.text
           AND (c.value OPERATOR(pg_catalog.?|) '{required,accepted,references}'::pg_catalog.text[]);
    END IF;
    ok := p.layer OPERATOR(pg_catalog.=) ANY ('{bronze,source}'::pg_catalog.text[]) OR n OPERATOR(pg_catalog.>) 0;
    detail := pg_catalog.format('%s checks (required, accepted, references, expectations)', n);
    hint := CASE WHEN NOT ok THEN 'Add required/accepted/references to the contract, or medallion.expect() rules.' END;
    RETURN NEXT;

    item := 'freshness SLA';
    ok := opts OPERATOR(pg_catalog.?) 'freshness_sla'::pg_catalog.text OR p.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text;
    detail := COALESCE('freshness_sla ' OPERATOR(pg_catalog.||) (opts OPERATOR(pg_catalog.->>) 'freshness_sla'::pg_catalog.text)
                       OPERATOR(pg_catalog.||) ', now ' OPERATOR(pg_catalog.||) COALESCE(st.freshness, 'unknown'), 'no SLA');
    hint := CASE WHEN NOT ok THEN 'alter_pipeline(p, ''{"freshness_sla": "1 hour"}'')' END;
    RETURN NEXT;

    item := 'cost budget';
    ok := p.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text
          OR opts OPERATOR(pg_catalog.?|) '{time_budget,max_rows_per_run}'::pg_catalog.text[]
          OR copts OPERATOR(pg_catalog.?) 'max_rows_per_run'::pg_catalog.text;
    detail := pg_catalog.format('time_budget %s, max_rows_per_run %s',
                                COALESCE(opts OPERATOR(pg_catalog.->>) 'time_budget'::pg_catalog.text, 'none'),
                                COALESCE(copts OPERATOR(pg_catalog.->>) 'max_rows_per_run'::pg_catalog.text,
                                         opts OPERATOR(pg_catalog.->>) 'max_rows_per_run'::pg_catalog.text, 'none'));
    hint := CASE WHEN NOT ok THEN 'alter_pipeline(p, ''{"time_budget": "5 minutes"}'')' END;
    RETURN NEXT;

    item := 'documented';
    ok := p.steward IS NOT NULL AND p.description IS NOT NULL;
    detail := pg_catalog.format('steward %s, description %s', COALESCE(p.steward, 'missing'),
                                CASE WHEN p.description IS NULL THEN 'missing' ELSE 'set' END);
    IF p.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text THEN
        -- the contract's column descriptions, which are the table's column comments
        cols := COALESCE(p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text, '{}'::pg_catalog.jsonb);
        SELECT pg_catalog.count(*) FILTER (WHERE pg_catalog.jsonb_typeof(x.c) OPERATOR(pg_catalog.=) 'object'::pg_catalog.text
                                             AND x.c OPERATOR(pg_catalog.?) 'description'::pg_catalog.text),
               pg_catalog.count(*)
          INTO ndesc, ncols
          FROM (SELECT e.value AS c
                  FROM pg_catalog.jsonb_each(CASE WHEN pg_catalog.jsonb_typeof(cols) OPERATOR(pg_catalog.=) 'object'::pg_catalog.text
                                                  THEN cols ELSE '{}'::pg_catalog.jsonb END) e
                UNION ALL
                SELECT a.value
                  FROM pg_catalog.jsonb_array_elements(CASE WHEN pg_catalog.jsonb_typeof(cols) OPERATOR(pg_catalog.=) 'array'::pg_catalog.text
                                                            THEN cols ELSE '[]'::pg_catalog.jsonb END) a) x;
        detail := detail OPERATOR(pg_catalog.||) pg_catalog.format(', %s of %s columns described', ndesc, ncols);
    ELSIF p.layer OPERATOR(pg_catalog.=) 'gold'::pg_catalog.text THEN
        -- a model's output columns and their comments (option columns)
        SELECT pg_catalog.count(d.description), pg_catalog.count(*)
          INTO ndesc, ncols
          FROM pg_catalog.pg_namespace s
          JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) s.oid
          JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid
                                        AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
          LEFT JOIN pg_catalog.pg_description d
                 ON d.objoid OPERATOR(pg_catalog.=) c.oid
                AND d.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                AND d.objsubid OPERATOR(pg_catalog.=) a.attnum
         WHERE s.nspname OPERATOR(pg_catalog.=) 'gold'::pg_catalog.name
           AND c.relname OPERATOR(pg_catalog.=) p.relname::pg_catalog.name;
        detail := detail OPERATOR(pg_catalog.||) pg_catalog.format(', %s of %s columns described', ndesc, ncols);
    END IF;
    hint := CASE WHEN NOT ok THEN 'alter_pipeline(p, ''{"steward": "team", "description": "…"}''); column descriptions: the contract key description (silver), option columns (gold)' END;
    RETURN NEXT;

    item := 'lineage known';
    SELECT pg_catalog.count(*) INTO n FROM medallion.dependencies d WHERE d.pipeline OPERATOR(pg_catalog.=) p.name;
    ok := n OPERATOR(pg_catalog.>) 0 OR p.layer OPERATOR(pg_catalog.=) ANY ('{bronze,source}'::pg_catalog.text[]);
    detail := CASE WHEN p.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text
                   THEN 'source system ' OPERATOR(pg_catalog.||) COALESCE(p.source_system, 'unknown')
                   ELSE pg_catalog.format('%s upstream edges in medallion.dependencies', n) END;
    hint := CASE WHEN NOT ok THEN 'Upstreams are found from the definition; re-create the pipeline if it has none.' END;
    RETURN NEXT;

    item := 'scheduled';
    ok := p.schedule IS NOT NULL OR p.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text;
    detail := COALESCE('schedule ' OPERATOR(pg_catalog.||) p.schedule, 'no schedule');
    hint := CASE WHEN NOT ok THEN 'medallion.schedule(p, ''5 minutes'' | cron | ''on_change'')' END;
    -- a cron schedule needs its pg_cron job, which a restore may have left behind
    IF ok AND p.schedule_kind OPERATOR(pg_catalog.=) 'cron'::pg_catalog.text THEN
        SELECT r.status, r.action INTO cron_status, cron_action
        FROM medallion.schedule_job_state(p.name) r;
        ok := cron_status OPERATOR(pg_catalog.=) 'ok'::pg_catalog.text;
        IF NOT ok THEN
            detail := detail OPERATOR(pg_catalog.||) ', its pg_cron job is missing';
            hint := 'Run SELECT * FROM medallion.restore_schedules(), or: ' OPERATOR(pg_catalog.||) cron_action;
        END IF;
    END IF;
    RETURN NEXT;
END
$fn$;
COMMENT ON FUNCTION medallion.checklist(text) IS
'the pipeline-design checklist for one pipeline, evaluated from the catalog: item, ok, detail, hint';

-- Ownership follows the table: after ALTER TABLE ... OWNER TO, a bronze,
-- silver or gold pipeline's owner is its table's owner again (runs execute
-- as the owner).  Only the relations the command touched are looked at.
-- REASSIGN OWNED, which fires no event trigger, is handled by the
-- ProcessUtility hook (src/ops/ownership.c), as are DROP ROLE and DROP
-- OWNED for the pipelines without a table.  A halted pipeline keeps its
-- owner: the DDL watch halts a pipeline whose table was renamed or dropped,
-- and a table another role then creates under that name must not hand the
-- pipeline (its definition, its dead letters) over to that role.  It only
-- copies what pg_class says, so it is safe as security definer for whoever
-- issued the command.
CREATE FUNCTION medallion.owner_follows_table()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE medallion.pipelines p
    SET owner = pg_catalog.pg_get_userbyid(c.relowner)
    FROM pg_catalog.pg_event_trigger_ddl_commands() cmd
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) cmd.objid
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    WHERE cmd.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
      AND n.nspname OPERATOR(pg_catalog.=) ANY ('{bronze,silver,gold}'::pg_catalog.name[])
      AND p.layer OPERATOR(pg_catalog.=) n.nspname::pg_catalog.text
      AND p.relname OPERATOR(pg_catalog.=) c.relname::pg_catalog.text
      AND p.state OPERATOR(pg_catalog.<>) 'halted'::pg_catalog.text
      AND p.owner::pg_catalog.text OPERATOR(pg_catalog.<>) pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text;
END
$fn$;
COMMENT ON FUNCTION medallion.owner_follows_table() IS
'internal: ddl_command_end event trigger; a pipeline''s owner follows its table''s owner (ALTER TABLE OWNER TO)';
REVOKE ALL ON FUNCTION medallion.owner_follows_table() FROM PUBLIC;
CREATE EVENT TRIGGER medallion_owner_follows_table ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION medallion.owner_follows_table();

-- Schedules after a restore into another cluster.  Interval and on_change
-- schedules live in medallion.pipelines and come back with it (the new
-- cluster's scheduler runs them); a cron schedule's pg_cron job lives in
-- cron.job, which a dump of this database holds only when pg_cron lives
-- here too.  schedule_job_state() tells (ok or missing, and the exact call
-- to run); restore_schedules() re-creates what it can.  Security invoker:
-- a job is re-created through medallion.schedule(), with its checks.
-- cron.database_name is a superuser-only setting (current_setting() raises
-- for it even with missing_ok): another role is told that pg_cron lives in
-- another database, without its name.
CREATE FUNCTION medallion.schedule_job_state(pipeline text)
RETURNS TABLE(status text, action text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    p record;
    cron_db text;
    cron_db_hidden boolean := false;
    call text;
BEGIN
    SELECT q.name, q.schedule, q.schedule_kind, q.owner::pg_catalog.text AS owner INTO p
    FROM medallion.pipelines q WHERE q.name OPERATOR(pg_catalog.=) schedule_job_state.pipeline;
    IF NOT FOUND OR p.schedule IS NULL OR p.schedule_kind OPERATOR(pg_catalog.<>) 'cron'::pg_catalog.text THEN
        status := 'ok';
        RETURN NEXT;
        RETURN;
    END IF;
    call := pg_catalog.format('SELECT medallion.schedule(%L, %L)', p.name, p.schedule);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
               WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron'::pg_catalog.name) THEN
        status := CASE WHEN EXISTS (
                      SELECT 1 FROM cron.job j
                      WHERE j.jobname OPERATOR(pg_catalog.=) ('medallion:'::pg_catalog.text OPERATOR(pg_catalog.||) p.name)
                        AND j.database OPERATOR(pg_catalog.=) pg_catalog.current_database()::pg_catalog.text)
                  THEN 'ok' ELSE 'missing' END;
        action := CASE WHEN status OPERATOR(pg_catalog.=) 'missing'::pg_catalog.text THEN call END;
        RETURN NEXT;
        RETURN;
    END IF;
    BEGIN
        cron_db := NULLIF(pg_catalog.current_setting('cron.database_name', true), ''::pg_catalog.text);
    EXCEPTION WHEN insufficient_privilege THEN
        -- pg_cron is loaded (its setting exists), in a database this role is not told
        cron_db_hidden := true;
    END;
    status := 'missing';
    IF cron_db_hidden OR (cron_db IS NOT NULL AND cron_db OPERATOR(pg_catalog.<>) pg_catalog.current_database()::pg_catalog.text) THEN
        -- pg_cron lives in another database: its jobs cannot be seen from here
        action := pg_catalog.format('connected to %s, run: SELECT cron.schedule_in_database(%L, %L, %L, %L, %L)',
                                    CASE WHEN cron_db_hidden THEN 'the database cron.database_name names'
                                         ELSE pg_catalog.quote_ident(cron_db) END,
                                    'medallion:' OPERATOR(pg_catalog.||) p.name OPERATOR(pg_catalog.||) '@'
                                        OPERATOR(pg_catalog.||) pg_catalog.current_database(),
                                    p.schedule,
                                    pg_catalog.format('SELECT medallion.trigger(%L)', p.name),
                                    pg_catalog.current_database(), p.owner);
    ELSE
        action := 'CREATE EXTENSION pg_cron; ' OPERATOR(pg_catalog.||) call;
    END IF;
    RETURN NEXT;
END
$fn$;
COMMENT ON FUNCTION medallion.schedule_job_state(text) IS
'whether a pipeline''s schedule can fire in this cluster: ok, or missing (a cron schedule without its pg_cron job) with the exact call to run';

CREATE FUNCTION medallion.restore_schedules()
RETURNS TABLE(pipeline text, schedule text, status text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT q.name, q.schedule, q.schedule_kind, s.status, s.action
             FROM medallion.pipelines q, medallion.schedule_job_state(q.name) s
             WHERE q.schedule IS NOT NULL ORDER BY q.name
    LOOP
        pipeline := p.name;
        schedule := p.schedule;
        status := p.status;
        action := p.action;
        IF p.status OPERATOR(pg_catalog.=) 'missing'::pg_catalog.text
           AND p.action OPERATOR(pg_catalog.^@) 'SELECT medallion.schedule('::pg_catalog.text THEN
            BEGIN
                PERFORM medallion.schedule(p.name, p.schedule);
                status := 'recreated';
            EXCEPTION WHEN OTHERS THEN
                action := p.action OPERATOR(pg_catalog.||) ' (it failed: '::pg_catalog.text
                          OPERATOR(pg_catalog.||) SQLERRM OPERATOR(pg_catalog.||) ')'::pg_catalog.text;
            END;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION medallion.restore_schedules() IS
'after a restore: checks every scheduled pipeline, re-creates the pg_cron job of a cron schedule where pg_cron lives in this database, and otherwise returns the exact call to run (status ok, recreated or missing)';

-- What a run cost: its buffer and WAL usage (the backend's counters before
-- and after the run's work, parallel workers included).  NULL: not measured
-- (a run that did not happen, a scheduled run that failed).  Counts, like
-- rows_read: PUBLIC reads them.
ALTER TABLE medallion.runs
    ADD COLUMN shared_blks_hit  pg_catalog.int8,
    ADD COLUMN shared_blks_read pg_catalog.int8,
    ADD COLUMN wal_bytes        pg_catalog.int8;
COMMENT ON COLUMN medallion.runs.shared_blks_hit IS
'shared buffer hits of the run''s work';
COMMENT ON COLUMN medallion.runs.shared_blks_read IS
'shared blocks the run''s work read from the kernel (not in shared buffers)';
COMMENT ON COLUMN medallion.runs.wal_bytes IS
'WAL the run''s work generated, in bytes (a failed run''s too, though rolled back)';
GRANT SELECT (shared_blks_hit, shared_blks_read, wal_bytes) ON medallion.runs TO PUBLIC;

-- Runs in progress, from the slots the running processes write (src/bgw/
-- progress.c): live, not at commit.  Empty unless medallion is in
-- shared_preload_libraries.  What it shows is what medallion.runs shows
-- (pipeline, run id, worker pid, counts): PUBLIC reads it.
CREATE FUNCTION medallion.progress_slots(
    OUT pipeline text, OUT run_id bigint, OUT pid integer, OUT phase text,
    OUT rows_done bigint, OUT rows_total bigint,
    OUT started_at timestamptz, OUT phase_started_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'medallion_progress'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.progress_slots() IS
'the runs in progress in this database, as their processes report them (behind medallion.progress)';

CREATE VIEW medallion.progress AS
SELECT s.pipeline, s.run_id, s.pid, s.phase, s.rows_done, s.rows_total,
       s.started_at, pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) s.started_at AS running_for,
       s.phase_started_at
FROM medallion.progress_slots() s;
COMMENT ON VIEW medallion.progress IS
'each run in progress: pipeline, run id, pid, phase (window, merge, typing, dlq, refresh, fetch, export, record), rows done of rows to do (NULL: not known), fed live by the running process';
GRANT SELECT ON medallion.progress TO PUBLIC;



------------------------------------------------------------------------------
-- Replays and the bounded rebase (issue 13)
------------------------------------------------------------------------------

-- The first silver run after a restore into another cluster re-reads the
-- whole source (the old cluster's xids mean nothing here), by _seq and at
-- most max_rows_per_run rows per run: while it is in progress its watermark
-- keeps the rebase's target snapshot, its cursor (resume_seq) and its end,
-- the last _seq there was when it began (src/silver/silver_run.c).
ALTER TABLE medallion.watermarks ADD COLUMN rebase_until bigint;
COMMENT ON COLUMN medallion.watermarks.rebase_until IS
'a rebase after a restore is in progress: the source rows up to this _seq are being re-read, resume_seq is how far it went';

-- A dead letter's fate at a glance, and what replayed it: a bronze record
-- lands under a batch of its own (replay_batch_id), a silver one in a run
-- (replay_run_id); replayed_by is who asked.
ALTER TABLE medallion.dlq
    ADD COLUMN replay_batch_id text,
    ADD COLUMN replay_run_id   bigint,
    ADD COLUMN replayed_by     text,
    ADD COLUMN status          text GENERATED ALWAYS AS (
        CASE WHEN discarded_at IS NOT NULL THEN 'discarded'
             WHEN reprocessed THEN 'replayed'
             ELSE 'pending' END) STORED;
COMMENT ON COLUMN medallion.dlq.status IS
'pending, replayed (reprocessed by a replay or a run) or discarded (dlq_discard)';
COMMENT ON COLUMN medallion.dlq.replay_batch_id IS
'a bronze dead letter that replay_dlq() landed: the batch it landed in';

-- A quarantined row settled by replay_quarantine(): who, and which run
-- (reprocessed_at says when).
ALTER TABLE medallion.quarantine
    ADD COLUMN replay_run_id bigint,
    ADD COLUMN replayed_by   text;

-- replay_dlq() replays a bronze pipeline's unparseable records too.
COMMENT ON FUNCTION medallion.replay_dlq(text, bigint[]) IS
're-attempts a pipeline''s pending dead letters (all, or the given ids) from their (possibly corrected) payloads: a silver pipeline''s through a run, a bronze pipeline''s parsed again and landed under a new batch; returns the rows now loaded';

-- After a rule was fixed (alter_contract, expect): quarantined rows
-- re-evaluated under the current contract.  A run of kind 'replay' (the
-- pipeline's lock: a concurrent run waits for it); the owner and its
-- operators only, checked by the function, so PUBLIC keeps EXECUTE.
CREATE FUNCTION medallion.replay_quarantine(pipeline text, ids bigint[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'medallion_replay_quarantine'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.replay_quarantine(text, bigint[]) IS
're-evaluates a silver pipeline''s quarantined rows (all, or the given ids) under its current contract and expectations: those that pass are merged (newest wins) and settled, the others stay; returns the rows now loaded';

-- Freshness does not say "fresh" while a rebase is in progress: its status
-- is 'rebasing' (or 'breached', by the lag of the rows not re-read yet).
-- Same columns.
CREATE OR REPLACE VIEW medallion.freshness AS
SELECT f.pipeline, f.last_success_at, f.lag, f.sla,
       CASE WHEN f.lag OPERATOR(pg_catalog.>) f.sla THEN 'breached'
            WHEN f.rebasing THEN 'rebasing'
            WHEN f.sla IS NULL THEN 'no_sla'
            ELSE 'fresh' END AS status
FROM (SELECT p.name AS pipeline,
             p.last_success_at,
             medallion.pipeline_lag(p.name) AS lag,
             (p.options OPERATOR(pg_catalog.->>) 'freshness_sla')::pg_catalog.interval AS sla,
             EXISTS (SELECT 1 FROM medallion.watermarks w
                     WHERE w.pipeline OPERATOR(pg_catalog.=) p.name
                       AND w.rebase_until IS NOT NULL) AS rebasing
      FROM medallion.pipelines p
      WHERE p.layer OPERATOR(pg_catalog.=) ANY (ARRAY['silver', 'gold']::pg_catalog.text[])
      OFFSET 0) f;


------------------------------------------------------------------------------
-- Lifecycle and ownership: rename, owner, dropped roles (issue 13)
------------------------------------------------------------------------------

-- One column's spec: its "references" with the new pipeline name.
CREATE FUNCTION medallion.rename_reference(spec pg_catalog.jsonb, old_name text, new_name text)
RETURNS pg_catalog.jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT CASE
    WHEN pg_catalog.jsonb_typeof(spec) OPERATOR(pg_catalog.=) 'object'::pg_catalog.text
     AND (spec OPERATOR(pg_catalog.->>) 'references'::pg_catalog.text)
         OPERATOR(pg_catalog.^@) (old_name OPERATOR(pg_catalog.||) '.'::pg_catalog.text)
     AND pg_catalog.strpos(pg_catalog.substr(spec OPERATOR(pg_catalog.->>) 'references'::pg_catalog.text,
                                             pg_catalog.length(old_name) OPERATOR(pg_catalog.+) 2), '.')
         OPERATOR(pg_catalog.=) 0
    THEN pg_catalog.jsonb_set(spec, '{references}'::pg_catalog.text[],
             pg_catalog.to_jsonb(new_name OPERATOR(pg_catalog.||)
                 pg_catalog.substr(spec OPERATOR(pg_catalog.->>) 'references'::pg_catalog.text,
                                   pg_catalog.length(old_name) OPERATOR(pg_catalog.+) 1)))
    ELSE spec
END
$fn$;

-- A contract's "references" ("layer.table.column") naming a renamed
-- pipeline: the new name, in the object and the array form of columns.
-- Internal to rename_pipeline() (src/ops/rename.c).
CREATE FUNCTION medallion.rename_references(definition pg_catalog.jsonb, old_name text, new_name text)
RETURNS pg_catalog.jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT CASE
    WHEN pg_catalog.jsonb_typeof(definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text)
         OPERATOR(pg_catalog.=) 'object'::pg_catalog.text THEN
        pg_catalog.jsonb_set(definition, '{columns}'::pg_catalog.text[],
            (SELECT pg_catalog.jsonb_object_agg(c.key, medallion.rename_reference(c.value, old_name, new_name))
             FROM pg_catalog.jsonb_each(definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text) c))
    WHEN pg_catalog.jsonb_typeof(definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text)
         OPERATOR(pg_catalog.=) 'array'::pg_catalog.text THEN
        pg_catalog.jsonb_set(definition, '{columns}'::pg_catalog.text[],
            COALESCE((SELECT pg_catalog.jsonb_agg(medallion.rename_reference(c.value, old_name, new_name) ORDER BY c.n)
                      FROM pg_catalog.jsonb_array_elements(definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text)
                           WITH ORDINALITY c(value, n)), '[]'::pg_catalog.jsonb))
    ELSE definition
END
$fn$;

COMMENT ON FUNCTION medallion.rename_reference(pg_catalog.jsonb, text, text) IS
'internal: a contract column''s spec with its references renamed (rename_pipeline)';
COMMENT ON FUNCTION medallion.rename_references(pg_catalog.jsonb, text, text) IS
'internal: a contract with the references to a renamed pipeline renamed (rename_pipeline)';
REVOKE ALL ON FUNCTION medallion.rename_reference(pg_catalog.jsonb, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION medallion.rename_references(pg_catalog.jsonb, text, text) FROM PUBLIC;

-- Renames a pipeline, its table and everything that names it
-- (src/ops/rename.c).  PUBLIC may execute: it checks the caller owns the
-- pipeline.
CREATE FUNCTION medallion.rename_pipeline(pipeline text, new_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_rename_pipeline'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.rename_pipeline(text, text) IS
'renames a pipeline the caller owns (same layer: ''silver.a'' to ''silver.b''), with its table, partitions and tombstone table, its catalog rows, run history, pg_cron job, and the references of the pipelines that read it (a gold model''s query is rewritten); a running run finishes first';


-- alter_pipeline's options grew with every room (src/ops/schedule.c and the
-- net room's list): its comment says which.
COMMENT ON FUNCTION medallion.alter_pipeline(text, pg_catalog.jsonb) IS
'sets pipeline options: freshness_sla, time_budget, max_retries, retry_base, retry_cap, breaker_threshold, breaker_cooldown, max_bad_ratio, drift_min_rows, backfill_max_days, backfill_max_rows, steward, description, owner; max_rows_per_run (silver); query and columns (gold); an HTTP source''s or export''s own options';

------------------------------------------------------------------------------
-- What PUBLIC may execute (trust §4); keep last
------------------------------------------------------------------------------


-- Reviewed function by function.  PUBLIC keeps EXECUTE on:
--   * the API, which checks for itself who may do what: create_bronze (CREATE on
--     schema bronze), ingest, ingest_text (INSERT on the target), ingest_file
--     (pg_read_server_files), capture, create_silver, expect, run, run_all,
--     replay_dlq, pause, resume, schedule, unschedule, trigger, alter_pipeline,
--     drop_pipeline, dlq_correct, dlq_discard, grant_operator, revoke_operator
--     (the pipeline's owner; run, trigger, pause, resume and replay_dlq also
--     its operators), checklist, lineage_graph and the status views (counts
--     only), schedule_job_state and restore_schedules (security invoker: a
--     job is re-made through schedule(), with its checks), create_gold and
--     alter_contract (CREATE on the layer's schema, the pipeline's owner);
--   * not PUBLIC, granted by an administrator: create_http_source,
--     add_webhook, remove_webhook, create_export (network section); apply_retention (the caller's tables only),
--     pipeline_lag (behind medallion.freshness, which PUBLIC reads);
--   * what a run's generated SQL calls as the pipeline's owner: silver_check,
--     silver_keep, contract_violation, check_required, check_accepted,
--     check_reference, count_read, count_insert (they refuse to work outside
--     the caller's own run);
--   * the trigger functions (bronze_append_only, bronze_redact, capture_change,
--     bronze_landed): CREATE TRIGGER needs EXECUTE, they refuse to run outside a
--     trigger and check the table they fire on.
-- Not PUBLIC: extension_changed(), which made the launcher look at every
-- database (a process started in each) at every call.
REVOKE EXECUTE ON FUNCTION medallion.extension_changed() FROM PUBLIC;

-- At commit the launcher, and this database's scheduler, learn of the update:
-- a scheduler idling on the 0.1.0 catalog resumes at once.
SELECT medallion.extension_changed();
