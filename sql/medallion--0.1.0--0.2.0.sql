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


------------------------------------------------------------------------------
-- Pseudonymisation keys (trust §5)
------------------------------------------------------------------------------



------------------------------------------------------------------------------
-- What PUBLIC may execute (trust §4); keep last
------------------------------------------------------------------------------

