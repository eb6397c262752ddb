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



------------------------------------------------------------------------------
-- Operations: owners, runs, alerts, schedules, workers (trust §4, §5, §7, §9)
------------------------------------------------------------------------------



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
-- What PUBLIC may execute (trust §4); keep last
------------------------------------------------------------------------------

