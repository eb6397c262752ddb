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



------------------------------------------------------------------------------
-- What PUBLIC may execute (trust §4); keep last
------------------------------------------------------------------------------

