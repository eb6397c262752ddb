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



------------------------------------------------------------------------------
-- Pseudonymisation keys (trust §5)
------------------------------------------------------------------------------



------------------------------------------------------------------------------
-- What PUBLIC may execute (trust §4); keep last
------------------------------------------------------------------------------


-- Reviewed function by function.  PUBLIC keeps EXECUTE on:
--   * the API, which checks for itself who may do what: create_bronze (CREATE on
--     schema bronze), ingest, ingest_text (INSERT on the target), ingest_file
--     (pg_read_server_files), capture, create_silver, expect, run, run_all,
--     replay_dlq, pause, resume, schedule, unschedule, trigger, alter_pipeline
--     (the pipeline's owner), apply_retention (the caller's tables only),
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
