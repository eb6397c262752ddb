/* medallion--0.1.0.sql: catalog, API and layer schemas of the medallion extension */

\echo Use "CREATE EXTENSION medallion" to load this file. \quit

-- The layer schemas.  They belong to the extension, but the tables that
-- pipelines create in them do not: DROP EXTENSION without CASCADE then fails
-- instead of dropping user data.
CREATE SCHEMA bronze;
CREATE SCHEMA silver;
CREATE SCHEMA gold;
COMMENT ON SCHEMA bronze IS 'medallion raw layer: append-only landing tables, partitioned by day';
COMMENT ON SCHEMA silver IS 'medallion cleaned layer: typed, validated, deduplicated tables';
COMMENT ON SCHEMA gold IS 'medallion business layer: aggregates and marts';

------------------------------------------------------------------------------
-- Catalog tables
------------------------------------------------------------------------------

CREATE TABLE medallion.pipelines (
    name            text PRIMARY KEY,
    layer           text NOT NULL CHECK (layer IN ('bronze', 'silver', 'gold')),
    relname         text NOT NULL,
    state           text NOT NULL DEFAULT 'active'
                    CHECK (state IN ('active', 'paused', 'halted', 'circuit_open')),
    owner           regrole NOT NULL,
    steward         text,
    description     text,
    schedule        text,
    source_system   text,
    retention       interval,
    options         jsonb NOT NULL DEFAULT '{}',
    source          text,
    definition      jsonb,
    schedule_kind   text CHECK (schedule_kind IN ('interval', 'cron', 'on_change')),
    trigger_requested boolean NOT NULL DEFAULT false,
    consecutive_failures integer NOT NULL DEFAULT 0,
    retry_attempt   integer NOT NULL DEFAULT 0,
    retry_at        timestamptz,
    circuit_opened_at timestamptz,
    last_success_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_checked_at timestamptz,
    UNIQUE (layer, relname)
);
COMMENT ON TABLE medallion.pipelines IS 'one row per pipeline: every bronze, silver and gold table medallion manages';

COMMENT ON COLUMN medallion.pipelines.source IS 'the upstream pipeline a silver pipeline reads';
COMMENT ON COLUMN medallion.pipelines.definition IS 'a silver pipeline''s contract: columns, unique_key, order_by, options';

CREATE TABLE medallion.runs (
    run_id           bigserial PRIMARY KEY,
    pipeline         text NOT NULL,
    kind             text NOT NULL DEFAULT 'incremental'
                     CHECK (kind IN ('incremental', 'backfill', 'replay', 'full')),
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    attempt          integer NOT NULL DEFAULT 1,
    started_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at      timestamptz,
    rows_read        bigint NOT NULL DEFAULT 0,
    rows_inserted    bigint NOT NULL DEFAULT 0,
    rows_updated     bigint NOT NULL DEFAULT 0,
    rows_unchanged   bigint NOT NULL DEFAULT 0,
    rows_dlq         bigint NOT NULL DEFAULT 0,
    rows_quarantined bigint NOT NULL DEFAULT 0,
    rows_dropped     bigint NOT NULL DEFAULT 0,
    rows_warned      bigint NOT NULL DEFAULT 0,
    error_class      text,
    error_message    text,
    sqlstate         text,
    worker_pid       integer
);
CREATE INDEX ON medallion.runs (pipeline, run_id);
CREATE INDEX ON medallion.runs (status) WHERE status = 'running';
COMMENT ON TABLE medallion.runs IS 'one row per pipeline run, with its counts and outcome';

-- One row per landed batch: what makes re-ingesting a batch a no-op.
CREATE TABLE medallion.batches (
    pipeline    text NOT NULL,
    batch_id    text NOT NULL,
    file_name   text,
    rows_landed bigint NOT NULL DEFAULT 0,
    rows_dlq    bigint NOT NULL DEFAULT 0,
    landed_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (pipeline, batch_id)
);
COMMENT ON TABLE medallion.batches IS 'batches landed in bronze tables; a batch id lands once';

CREATE TABLE medallion.dlq (
    id               bigserial PRIMARY KEY,
    pipeline         text NOT NULL,
    original_payload text,
    error_message    text NOT NULL,
    error_type       text NOT NULL,
    sqlstate         text,
    field            text,
    source_table     text,
    source_seq       bigint,
    pipeline_run_id  bigint,
    batch_id         text,
    file_name        text,
    line_number      bigint,
    failed_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    reprocessed      boolean NOT NULL DEFAULT false,
    reprocessed_at   timestamptz
);
CREATE INDEX ON medallion.dlq (pipeline, id) WHERE NOT reprocessed;
CREATE INDEX ON medallion.dlq (pipeline, source_seq) WHERE NOT reprocessed;
COMMENT ON TABLE medallion.dlq IS 'dead-letter queue: one row per source record that could not be processed, kept for replay';

CREATE TABLE medallion.quarantine (
    id               bigserial PRIMARY KEY,
    pipeline         text NOT NULL,
    rule             text NOT NULL,
    original_payload text,
    error_message    text,
    source_table     text,
    source_seq       bigint,
    pipeline_run_id  bigint,
    failed_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    reprocessed      boolean NOT NULL DEFAULT false,
    reprocessed_at   timestamptz
);
COMMENT ON TABLE medallion.quarantine IS 'rows that failed a business-rule expectation, with the rule';

-- Incremental state of a pipeline: the bronze rows visible in done_snapshot
-- are processed.  A bounded run drains the window up to target_snapshot in
-- _seq (arrival) order and resume_seq says where it stopped; without a
-- target, resume_xid/resume_seq tell which rows of the last run's own
-- transaction (kept "in progress" in done_snapshot) were already processed.
CREATE TABLE medallion.watermarks (
    pipeline          text PRIMARY KEY,
    system_identifier bigint NOT NULL,
    done_snapshot     pg_snapshot,
    target_snapshot   pg_snapshot,
    resume_xid        xid8,
    resume_seq        bigint,
    updated_at        timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE medallion.watermarks IS 'snapshot watermarks of incremental pipelines';

CREATE TABLE medallion.expectations (
    pipeline  text NOT NULL,
    name      text NOT NULL,
    check_sql text NOT NULL,
    on_fail   text NOT NULL CHECK (on_fail IN ('warn', 'drop', 'quarantine', 'fail')),
    PRIMARY KEY (pipeline, name)
);
COMMENT ON TABLE medallion.expectations IS 'row-level business-rule checks of silver pipelines';

CREATE TABLE medallion.alerts (
    id          bigserial PRIMARY KEY,
    pipeline    text NOT NULL,
    kind        text NOT NULL,
    message     text NOT NULL,
    raised_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    resolved_at timestamptz
);
CREATE INDEX ON medallion.alerts (pipeline, kind) WHERE resolved_at IS NULL;
COMMENT ON TABLE medallion.alerts IS 'alerts (failures that halt or open the breaker, SLA breaches, budgets); also sent as NOTIFY medallion_alerts';

SELECT pg_catalog.pg_extension_config_dump('medallion.pipelines', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.alerts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.watermarks', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.expectations', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.runs', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.batches', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.dlq', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.dlq_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.quarantine', '');
SELECT pg_catalog.pg_extension_config_dump('medallion.quarantine_id_seq', '');

------------------------------------------------------------------------------
-- Bronze: definition and ingestion (src/bronze.c, src/ingest.c, src/capture.c)
------------------------------------------------------------------------------

CREATE FUNCTION medallion.create_bronze(name text, source_system text,
                                        retention interval DEFAULT '90 days',
                                        redact_keys text[] DEFAULT '{}',
                                        options jsonb DEFAULT '{}')
RETURNS regclass
AS 'MODULE_PATHNAME', 'medallion_create_bronze'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.create_bronze(text, text, interval, text[], jsonb) IS
'creates bronze.<name>: an append-only landing table partitioned by day, registered as a pipeline';

CREATE FUNCTION medallion.ingest(target regclass, payload jsonb,
                                 batch_id text DEFAULT NULL, file_name text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'medallion_ingest'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.ingest(regclass, jsonb, text, text) IS
'lands a JSON object, or an array of objects, in a bronze table; returns the rows landed';

CREATE FUNCTION medallion.ingest_text(target regclass, payload text, format text DEFAULT 'ndjson',
                                      batch_id text DEFAULT NULL, file_name text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'medallion_ingest_text'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.ingest_text(regclass, text, text, text, text) IS
'lands ndjson, json (array) or csv text in a bronze table; unparseable records go to medallion.dlq';

CREATE FUNCTION medallion.ingest_file(target regclass, path text, format text DEFAULT 'ndjson',
                                      batch_id text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'medallion_ingest_file'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.ingest_file(regclass, text, text, text) IS
'lands a server-side ndjson, json or csv file in a bronze table; reloading the same file is a no-op';

CREATE FUNCTION medallion.apply_retention()
RETURNS bigint
AS 'MODULE_PATHNAME', 'medallion_apply_retention'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.apply_retention() IS
'drops the bronze partitions older than their table''s retention; returns the partitions dropped';

CREATE FUNCTION medallion.capture(source regclass, name text DEFAULT NULL)
RETURNS regclass
AS 'MODULE_PATHNAME', 'medallion_capture'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.capture(regclass, text) IS
'captures INSERT, UPDATE and DELETE of a local table into a bronze table (TRUNCATE is refused)';

-- Trigger functions attached to bronze and captured tables.
CREATE FUNCTION medallion.bronze_append_only()
RETURNS trigger
AS 'MODULE_PATHNAME', 'medallion_bronze_append_only'
LANGUAGE C;
COMMENT ON FUNCTION medallion.bronze_append_only() IS
'trigger: rejects UPDATE, DELETE and TRUNCATE on bronze tables';

CREATE FUNCTION medallion.bronze_redact()
RETURNS trigger
AS 'MODULE_PATHNAME', 'medallion_bronze_redact'
LANGUAGE C;
COMMENT ON FUNCTION medallion.bronze_redact() IS
'trigger: removes or hashes the redacted keys of a bronze row before it is stored';

CREATE FUNCTION medallion.capture_change()
RETURNS trigger
AS 'MODULE_PATHNAME', 'medallion_capture_change'
LANGUAGE C;
COMMENT ON FUNCTION medallion.capture_change() IS
'trigger: records a captured table''s row change in its bronze table';

------------------------------------------------------------------------------
-- Silver and runs (src/contract.c, src/silver.c, src/run.c)
------------------------------------------------------------------------------

CREATE FUNCTION medallion.create_silver(name text, source regclass, columns jsonb,
                                        unique_key text[], order_by text DEFAULT NULL,
                                        options jsonb DEFAULT '{}')
RETURNS regclass
AS 'MODULE_PATHNAME', 'medallion_create_silver'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.create_silver(text, regclass, jsonb, text[], text, jsonb) IS
'creates silver.<name>, a typed table fed incrementally from a bronze table by a column contract';

CREATE FUNCTION medallion.expect(pipeline text, name text, check_sql text,
                                 on_fail text DEFAULT 'quarantine')
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_expect'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.expect(text, text, text, text) IS
'adds (or replaces) a row-level expectation of a silver pipeline: warn, drop, quarantine or fail';

CREATE FUNCTION medallion.run(pipeline text, strict boolean DEFAULT false,
                              wait boolean DEFAULT true)
RETURNS bigint
AS 'MODULE_PATHNAME', 'medallion_run'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.run(text, boolean, boolean) IS
'runs a pipeline once now, in the caller''s transaction; returns the run id (see medallion.runs)';

CREATE FUNCTION medallion.run_all()
RETURNS SETOF bigint
AS 'MODULE_PATHNAME', 'medallion_run_all'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.run_all() IS
'runs every active silver pipeline once, upstream first; returns the run ids';

CREATE FUNCTION medallion.replay_dlq(pipeline text, ids bigint[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'medallion_replay_dlq'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.replay_dlq(text, bigint[]) IS
're-attempts a silver pipeline''s DLQ rows (all, or the given ids); returns the rows now loaded';

CREATE FUNCTION medallion.pause(pipeline text)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_pause'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.pause(text) IS 'stops a pipeline from running until resume()';

CREATE FUNCTION medallion.resume(pipeline text)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_resume'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.resume(text) IS 'lets a paused, halted or circuit-open pipeline run again';

-- Row validation used by silver runs: NULL when the payload types under the
-- contract, else {error_type, field, sqlstate, message}.
CREATE FUNCTION medallion.silver_check(payload jsonb, definition jsonb, is_delete boolean)
RETURNS text[]
AS 'MODULE_PATHNAME', 'medallion_silver_check'
LANGUAGE C STABLE;
COMMENT ON FUNCTION medallion.silver_check(jsonb, jsonb, boolean) IS
'internal: types a payload under a silver contract without aborting; returns the first error or NULL';

-- Raises a data error for a row that breaks the contract (used in the
-- generated SQL of a run; the slow path then finds every such row).
CREATE FUNCTION medallion.contract_violation(error_type text, field text, message text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'medallion_contract_violation'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.contract_violation(text, text, text) IS
'internal: raises the data error of a contract violation';

-- The contract checks of a run's SQL: each returns its value or raises the
-- data error of contract_violation().  Not volatile (a CASE around the
-- volatile contract_violation() kept the planner from flattening the run's
-- query and from estimating its window, and repeated each expression).
CREATE FUNCTION medallion.check_required(value anyelement, is_delete boolean, field text, message text)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'medallion_check_required'
LANGUAGE C STABLE;
COMMENT ON FUNCTION medallion.check_required(anyelement, boolean, text, text) IS
'internal: value, or the data error of a missing required field';
CREATE FUNCTION medallion.check_accepted(value anyelement, accepted anyarray, field text)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'medallion_check_accepted'
LANGUAGE C STABLE;
COMMENT ON FUNCTION medallion.check_accepted(anyelement, anyarray, text) IS
'internal: value, or the data error of a value not accepted';
CREATE FUNCTION medallion.check_reference(value anyelement, found boolean, field text, reference text)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'medallion_check_reference'
LANGUAGE C STABLE;
COMMENT ON FUNCTION medallion.check_reference(anyelement, boolean, text, text) IS
'internal: value, or the data error of a value without a match in its reference';

-- Counts the rows a run's MERGE reads: its window's last condition (costly,
-- so evaluated after the others).
CREATE FUNCTION medallion.count_read()
RETURNS boolean
AS 'MODULE_PATHNAME', 'medallion_count_read'
LANGUAGE C VOLATILE COST 10;
COMMENT ON FUNCTION medallion.count_read() IS
'internal: counts a row read by a silver run';

-- The slow path of a silver run: keeps a row that types, records one that
-- does not (silver_check's result) and leaves it out.
CREATE FUNCTION medallion.silver_keep(seq bigint, payload jsonb, batch_id text, error text[])
RETURNS boolean
AS 'MODULE_PATHNAME', 'medallion_silver_keep'
LANGUAGE C VOLATILE COST 10;
COMMENT ON FUNCTION medallion.silver_keep(bigint, jsonb, text, text[]) IS
'internal: records the rows a silver run leaves out';

-- Counts the rows a MERGE inserts (PG15's MERGE reports only a total).
CREATE FUNCTION medallion.count_insert(run_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'medallion_count_insert'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION medallion.count_insert(bigint) IS
'internal: counts a row inserted by a silver run and returns the run id';

------------------------------------------------------------------------------
-- Schedules and operations (src/schedule.c, src/scheduler.c, src/alerts.c)
------------------------------------------------------------------------------

CREATE FUNCTION medallion.schedule(pipeline text, schedule text)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_schedule'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.schedule(text, text) IS
'schedules a pipeline: an interval (''30 seconds''), a cron expression (via pg_cron) or ''on_change''';

CREATE FUNCTION medallion.unschedule(pipeline text)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_unschedule'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.unschedule(text) IS 'removes a pipeline''s schedule (and its pg_cron job)';

CREATE FUNCTION medallion.trigger(pipeline text)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_trigger'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.trigger(text) IS
'asks the scheduler to run a pipeline soon (without a scheduler: runs it now)';

CREATE FUNCTION medallion.alter_pipeline(pipeline text, options jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_alter_pipeline'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION medallion.alter_pipeline(text, jsonb) IS
'sets pipeline options: freshness_sla, time_budget, max_retries, retry_base, retry_cap, breaker_threshold, breaker_cooldown, steward, description';

CREATE FUNCTION medallion.pipeline_lag(pipeline text)
RETURNS interval
AS 'MODULE_PATHNAME', 'medallion_pipeline_lag'
LANGUAGE C STABLE;
COMMENT ON FUNCTION medallion.pipeline_lag(text) IS
'age of the oldest source row a pipeline has not processed yet; 0 when caught up';

CREATE FUNCTION medallion.bronze_landed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'medallion_bronze_landed'
LANGUAGE C;
COMMENT ON FUNCTION medallion.bronze_landed() IS
'trigger: wakes the scheduler when rows land in a bronze table, after commit (on_change pipelines)';

CREATE FUNCTION medallion.extension_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'medallion_extension_changed'
LANGUAGE C;
COMMENT ON FUNCTION medallion.extension_changed() IS
'internal: tells the launcher that the extension was created here';

CREATE VIEW medallion.freshness AS
SELECT p.name AS pipeline,
       p.last_success_at,
       medallion.pipeline_lag(p.name) AS lag,
       (p.options->>'freshness_sla')::interval AS sla,
       CASE WHEN p.options->>'freshness_sla' IS NULL THEN 'no_sla'
            WHEN medallion.pipeline_lag(p.name) OPERATOR(pg_catalog.>) (p.options->>'freshness_sla')::interval
            THEN 'breached' ELSE 'fresh' END AS status
FROM medallion.pipelines p
WHERE p.layer OPERATOR(pg_catalog.=) 'silver';
COMMENT ON VIEW medallion.freshness IS
'per silver pipeline: last success, lag (age of the oldest unprocessed source row), SLA and status';

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------

-- Anyone may look at the catalog; defining a bronze table needs CREATE on
-- schema bronze (checked by create_bronze), ingesting needs INSERT on the
-- target (checked by ingest*).
GRANT USAGE ON SCHEMA medallion, bronze, silver, gold TO PUBLIC;
GRANT SELECT ON medallion.pipelines, medallion.runs, medallion.batches,
    medallion.watermarks, medallion.expectations, medallion.alerts, medallion.freshness TO PUBLIC;

-- DLQ and quarantine hold raw, possibly personal payloads: the extension
-- owner sees everything; a pipeline's owner sees its own rows.
REVOKE ALL ON medallion.dlq, medallion.quarantine FROM PUBLIC;
ALTER TABLE medallion.dlq ENABLE ROW LEVEL SECURITY;
ALTER TABLE medallion.quarantine ENABLE ROW LEVEL SECURITY;
CREATE POLICY dlq_pipeline_owner ON medallion.dlq FOR SELECT USING (
    EXISTS (SELECT 1 FROM medallion.pipelines p
            WHERE p.name OPERATOR(pg_catalog.=) dlq.pipeline
              AND pg_catalog.pg_has_role(p.owner, 'USAGE')));
CREATE POLICY quarantine_pipeline_owner ON medallion.quarantine FOR SELECT USING (
    EXISTS (SELECT 1 FROM medallion.pipelines p
            WHERE p.name OPERATOR(pg_catalog.=) quarantine.pipeline
              AND pg_catalog.pg_has_role(p.owner, 'USAGE')));
GRANT SELECT ON medallion.dlq, medallion.quarantine TO PUBLIC;

-- The trigger functions need no REVOKE: they refuse to run outside a trigger,
-- and table owners must be able to attach them.

-- The launcher starts this database's scheduler now rather than at its next probe.
SELECT medallion.extension_changed();
