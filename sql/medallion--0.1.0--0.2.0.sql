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



------------------------------------------------------------------------------
-- Capture registry and trigger checks (trust §3)
------------------------------------------------------------------------------



------------------------------------------------------------------------------
-- Ingestion of hostile input (trust §6)
------------------------------------------------------------------------------



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



------------------------------------------------------------------------------
-- Pseudonymisation keys (trust §5)
------------------------------------------------------------------------------



------------------------------------------------------------------------------
-- What PUBLIC may execute (trust §4); keep last
------------------------------------------------------------------------------

