/*-------------------------------------------------------------------------
 *
 * medallion.h
 *	  Declarations shared by the subsystems of the medallion extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEDALLION_H
#define MEDALLION_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "utils/array.h"
#include "utils/jsonb.h"
#include "utils/snapshot.h"

/* guc.c */
extern int	medallion_premake_days;
extern int	medallion_max_payload_mb;
extern bool medallion_allow_bronze_changes;
extern char *medallion_http_allowed_hosts;
extern int	medallion_http_max_response_kb;
extern int	medallion_http_timeout;
extern void medallion_guc_init(void);

/* catalog/gateway.c: the role switch and the gateway every catalog statement uses */
typedef struct MedallionUserContext
{
	Oid			saved_userid;
	int			saved_sec_context;
} MedallionUserContext;

extern Oid	medallion_catalog_owner(void);
extern void medallion_become_user(Oid role, MedallionUserContext *save);
extern void medallion_restore_user(MedallionUserContext *save);

/* the gateway: role switch + pinned search_path + SPI */
typedef struct MedallionGateway
{
	MedallionUserContext user;
	int			nestlevel;
} MedallionGateway;

extern void medallion_gateway_enter(Oid role, MedallionGateway *gw);
extern void medallion_gateway_leave(MedallionGateway *gw);
extern void medallion_catalog_enter(MedallionGateway *gw);
extern uint64 medallion_gateway_exec(const char *sql, int nargs, Oid *types, Datum *values,
									 const char *nulls, long count, int expect);
extern int	medallion_exec_saved(const char *sql, int nargs, Oid *types, Datum *values,
								 const char *nulls, long count);
extern uint64 medallion_gateway_exec_saved_snapshot(const char *sql, int nargs, Oid *types,
													Datum *values, const char *nulls, long count,
													int expect, Snapshot snapshot);
extern uint64 medallion_gateway_exec_saved(const char *sql, int nargs, Oid *types, Datum *values,
										   const char *nulls, long count, int expect);
extern List *medallion_gateway_text_column(int column, MemoryContext cxt);

/* a row of a gateway result, copied out of SPI's memory */
typedef struct MedallionRow
{
	Datum	   *values;			/* by column, from 0 */
	bool	   *nulls;
} MedallionRow;
extern MedallionRow *medallion_gateway_row(uint64 row, MemoryContext cxt);
extern List *medallion_gateway_rows(MemoryContext cxt);
extern List *medallion_catalog_query(const char *sql, int nargs, Oid *types, Datum *values,
									 const char *nulls);
extern uint64 medallion_catalog_exec(const char *sql, int nargs, Oid *types, Datum *values,
									 const char *nulls, int expect);

/*
 * schema/own_ddl.c: medallion's own DDL (partitions, create_*, swaps...) is
 * wrapped in begin/end so the DDL event triggers do not take it for drift.
 * A trigger that fired meanwhile calls _touched(); the outermost _end() then
 * refreshes the snapshots of tracked relations.
 */
extern void medallion_own_ddl_begin(void);
extern void medallion_own_ddl_end(void);
extern bool medallion_own_ddl_active(void);
extern void medallion_own_ddl_touched(void);

/*
 * schema/contract_versions.c: every version of a silver contract.  Adding one
 * makes it the pipeline's definition; the caller holds the pipeline's row
 * lock (or has just created the pipeline).
 */
extern int32 medallion_contract_version_add(const char *pipeline, Jsonb *definition,
											const char *compatibility, bool forced,
											Oid created_by);

/* schema/compatibility.c: whether a name is a compatibility mode */
extern bool medallion_compatibility_mode_valid(const char *mode);

/*
 * schema/payload_keys.c: the registry of payload keys (medallion.payload_keys).
 * Keys are collected per batch where rows are read anyway (the ingest scan,
 * a silver run's window), down to MEDALLION_PAYLOAD_KEY_DEPTH levels of
 * objects, and written once per batch.
 */
#define MEDALLION_PAYLOAD_KEY_DEPTH 2

/* A key the JSON scan met: bytes in the scanned text, its value's type. */
typedef struct JsonKeyRef
{
	const char *key;			/* not NUL-terminated, never escaped */
	int			len;
	int			parent;			/* index of the enclosing key, or -1 */
	char		type;			/* o(bject) a(rray) s(tring) n(umber) b(oolean) z (null) */
} JsonKeyRef;

/* The keys of one record, as the scan found them. */
typedef struct JsonScanKeys
{
	JsonKeyRef *refs;
	int			n;
	int			cap;
	bool		complete;		/* false: an escaped key; ask the exact parser */
} JsonScanKeys;

typedef struct PayloadKeys PayloadKeys;

extern bool medallion_payload_keys_enabled(void);
extern PayloadKeys *medallion_payload_keys_create(void);
extern void medallion_payload_keys_add_scan(PayloadKeys *k, const JsonScanKeys *scan);
extern void medallion_payload_keys_add_jsonb(PayloadKeys *k, JsonbContainer *object);
extern void medallion_payload_keys_add_text(PayloadKeys *k, char *data, int len);
extern void medallion_payload_keys_add_flat(PayloadKeys *k, const char *key, char type);
extern void medallion_payload_keys_flush(PayloadKeys *k, const char *pipeline);

/* catalog/pipelines.c: medallion.pipelines and medallion.batches */
extern void medallion_catalog_add_pipeline(const char *name, const char *layer,
										   const char *relname, Oid owner,
										   const char *source_system,
										   Datum retention, bool retention_null,
										   Jsonb *options, const char *description);
extern bool medallion_catalog_claim_batch(const char *pipeline, const char *batch_id,
										  const char *file_name);
extern void medallion_catalog_finish_batch(const char *pipeline, const char *batch_id,
										   int64 rows_landed, int64 rows_dlq);
extern char *medallion_pipeline_name(const char *layer, const char *relname);
extern void medallion_catalog_set_definition(const char *pipeline, const char *source,
											 Jsonb *definition);

/* catalog/dependencies.c: the pipeline graph (medallion.dependencies) */
extern bool medallion_catalog_has_dependencies(void);
extern char *medallion_pipeline_of_relation(Oid relid);
extern void medallion_dependencies_set(const char *pipeline, const char *kind, List *upstreams,
									   List *partition_columns);

/* dlq.c: dead-letter rows */
typedef struct MedallionDlqEntry
{
	const char *pipeline;
	const char *payload;		/* exactly as it came; may be NULL */
	int			payload_len;
	const char *error_message;
	const char *error_type;
	const char *sqlstate;
	const char *field;
	const char *source_table;
	int64		source_seq;		/* 0 when not from a bronze row */
	int64		run_id;			/* 0 when not from a run */
	const char *batch_id;
	const char *file_name;
	int64		line_number;	/* 0 when unknown */
	int64		original_length;	/* the record's bytes; 0 when not told */
} MedallionDlqEntry;

extern void medallion_dlq_add(const MedallionDlqEntry *entry);

/* a batched writer: rows are written as batches fill, and by _flush */
typedef struct MedallionDlqWriter MedallionDlqWriter;
extern MedallionDlqWriter *medallion_dlq_writer_create(void);
extern void medallion_dlq_writer_skip_pending(MedallionDlqWriter *w);
extern void medallion_dlq_writer_add(MedallionDlqWriter *w, const MedallionDlqEntry *entry);
extern void medallion_dlq_writer_flush(MedallionDlqWriter *w);
extern int64 medallion_dlq_writer_written(MedallionDlqWriter *w);
extern void medallion_dlq_writer_discard(MedallionDlqWriter *w);

/* bronze/tables.c (the rest of bronze is in bronze/bronze.h) */
typedef struct BronzeTarget
{
	Oid			relid;
	Oid			owner;
	char	   *relname;
	char	   *pipeline;		/* 'bronze.<relname>' */
} BronzeTarget;

extern void medallion_bronze_open(Oid relid, BronzeTarget *target);
/* bronze/ingest.c: whether a bronze table redacts (its DLQ rows keep no payload) */
extern bool medallion_bronze_redacts(Oid relid);

/* pseudonym.c: keyed pseudonyms (HMAC-SHA256 under the database's key) */
extern char *medallion_pseudonymize_hex(const char *data, int len);

/* A row failed an expectation whose action is 'fail'. */
#define MEDALLION_ERRCODE_EXPECTATION_FAILED MAKE_SQLSTATE('M','D','0','0','1')

/*
 * Payload drift that halts a pipeline, manual runs included (schema/drift.c):
 * a required key missing from a whole window, an unread key under
 * schema_policy strict, too many rows failing to type (max_bad_ratio).
 */
#define MEDALLION_ERRCODE_DRIFT_KEY_MISSING MAKE_SQLSTATE('M','D','0','5','0')
#define MEDALLION_ERRCODE_DRIFT_UNREAD_KEY MAKE_SQLSTATE('M','D','0','5','1')
#define MEDALLION_ERRCODE_DRIFT_BAD_RATIO MAKE_SQLSTATE('M','D','0','5','2')

static inline bool
medallion_error_is_drift(int sqlerrcode)
{
	return sqlerrcode == MEDALLION_ERRCODE_DRIFT_KEY_MISSING ||
		sqlerrcode == MEDALLION_ERRCODE_DRIFT_UNREAD_KEY ||
		sqlerrcode == MEDALLION_ERRCODE_DRIFT_BAD_RATIO;
}

/* subxact.c: surviving an error in a subtransaction */
typedef void (*MedallionTryFn) (void *arg);
extern ErrorData *medallion_try(MedallionTryFn fn, void *arg, bool any_error);

/*
 * SQLSTATEs MD060-MD079: a request refused by a remote server, or refused
 * by medallion.http_* (the codes are in net/net.h).
 */
static inline bool
medallion_error_is_network_refusal(int sqlerrcode)
{
	const int	head = (1 << 18) - 1;	/* the first three characters */
	char		fourth = PGUNSIXBIT(sqlerrcode >> 18);

	return (sqlerrcode & head) == (MAKE_SQLSTATE('M', 'D', '0', '0', '0') & head) &&
		(fourth == '6' || fourth == '7');
}

/* errors.c: what kind of failure an error is, by SQLSTATE */
extern const char *medallion_error_class(int sqlerrcode);

/*
 * Whether an error found while validating a row makes the row bad (class
 * 22, and 23 which domains raise), rather than the run.  Inline: the
 * subtransaction helper (subxact.c) needs it and calls nothing upward.
 */
static inline bool
medallion_error_is_data(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category == ERRCODE_DATA_EXCEPTION ||
		category == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION;
}

/* silver/contract_parse.c: the column contract of a silver pipeline */
typedef struct ColumnSpec
{
	char	   *name;
	char	   *path;			/* dotted, as given */
	List	   *segments;		/* of char *: the path split */
	char	   *type_name;
	Oid			typid;
	int32		typmod;
	bool		is_json;		/* json or jsonb: extracted as JSON, not text */
	bool		required;
	char	   *default_value;	/* text form, or NULL */
	char	   *expr;			/* SQL over the typed columns, or NULL */
	List	   *accepted;		/* of char *: accepted values, text form */
	char	   *ref_table;		/* 'layer.name' */
	char	   *ref_column;
	char	   *pii;			/* "hash", "hash_v1", "mask", "drop" or NULL */
	char	   *description;	/* the column's COMMENT, or NULL */
	bool		is_key;
} ColumnSpec;

typedef struct Contract
{
	List	   *columns;		/* of ColumnSpec * */
	List	   *unique_key;		/* of char * */
	char	   *order_by;		/* a column, or NULL */
	char	   *delete_when;	/* SQL over _raw, or NULL */
	int64		max_rows_per_run;	/* 0: unbounded */
	List	   *setting_names;	/* of char *: options.settings */
	List	   *setting_values;
	char	   *compatibility;	/* options.compatibility; "backward" if unset */
	char	   *schema_policy;	/* ignore (NULL), evolve or strict */
	char	   *event_time;		/* options.event_time: a date/time column, or NULL */
} Contract;

extern ColumnSpec *medallion_contract_column(Contract *c, const char *name);

/* silver/active_run.c: the run this backend executes (functions its SQL calls) */
extern void medallion_active_run_count_insert(void);

/* catalog/pipelines.c, catalog/runs.c: pipelines and their runs */
typedef struct RunCounts
{
	int64		read;
	int64		inserted;
	int64		updated;
	int64		unchanged;
	int64		dlq;
	int64		quarantined;
	int64		dropped;
	int64		warned;
	int64		replayed;		/* replay_dlq: DLQ rows that now passed */
	/* what the run cost (run.c measures it around the layer's work) */
	int64		shared_blks_hit;
	int64		shared_blks_read;
	int64		wal_bytes;
} RunCounts;

/*
 * What the lookup of a run (medallion_pipeline_lookup_run) reads in the same
 * statement besides the pipeline's row: its watermark row and its
 * expectations, so that a run with nothing to do costs two catalog
 * statements (this one, and the success record).
 */
typedef struct RunPrefetch
{
	bool		has_watermark;
	/*
	 * system_identifier, done_snapshot, target_snapshot, resume_xid,
	 * resume_seq, rebase_until
	 */
	Datum		watermark[6];
	bool		watermark_null[6];
	List	   *expectations;	/* of char *[3]: name, check_sql, on_fail, by name */
} RunPrefetch;

typedef struct Pipeline
{
	char	   *name;
	char	   *layer;
	char	   *relname;
	char	   *state;
	Oid			owner;			/* InvalidOid: no role is named owner_name */
	char	   *owner_name;		/* as stored in medallion.pipelines */
	bool		pause_requested;	/* state reads 'paused' because of it */
	char	   *source;
	Jsonb	   *definition;
	int32		definition_version; /* 0: not versioned (a 0.1.0 catalog) */
	char	   *time_budget;	/* options.time_budget as set, or NULL */
	RunPrefetch *prefetch;		/* NULL: the run reads them itself */
} Pipeline;

extern bool medallion_pipeline_lookup(const char *name, Pipeline *p, bool lock, bool nowait,
									  bool *busy);
extern bool medallion_pipeline_lookup_run(const char *name, Pipeline *p, bool nowait, bool *busy,
										  const char *kind, int64 *run_id);
extern bool medallion_catalog_has_pause_requests(void);
extern Oid	medallion_pipeline_table(const Pipeline *p);

/*
 * schema/alter_contract.c: the next version of a silver contract, columns and
 * options patched (alter_contract's core, for callers that checked who may
 * and hold the pipeline's row lock).
 */
extern int32 medallion_contract_alter(const Pipeline *p, Jsonb *columns, Jsonb *options,
									  bool force);

/* messages stored in medallion.runs and medallion.alerts are capped */
#define MEDALLION_MAX_MESSAGE 1024
extern char *medallion_capped_message(const char *message);
extern int64 medallion_run_record_start(const char *pipeline, const char *kind,
										const char *status, int worker_pid);
extern void medallion_run_record_finish(int64 run_id, const char *status, const RunCounts *c,
										ErrorData *edata, const char *class);
extern void medallion_run_trim_skipped(const char *pipeline);
extern int64 medallion_run_record_skipped(const char *pipeline, const char *kind,
										  const char *reason);
extern char *medallion_run_status(int64 run_id);
extern void medallion_run_counts_datums(const RunCounts *c, Datum *values);

/* silver/settings.c: the settings a run's SQL executes under */
extern void medallion_run_settings_push(Contract *contract, int *nestlevel);
/* silver/contract_parse.c: what options.settings may set (silver and gold) */
extern bool medallion_setting_allowed(const char *name);

/* bgw/progress.c: what a run in progress is doing (medallion.progress) */
extern void medallion_progress_begin(const char *pipeline, int64 run_id);
extern void medallion_progress_phase(const char *phase, int64 rows_total);
extern void medallion_progress_rows(int64 rows_done);
extern void medallion_progress_end(void);

/*
 * What a replay re-attempts: a silver pipeline's dead letters, or its
 * quarantined rows (ids: those, or all when empty).
 */
typedef struct MedallionReplay
{
	ArrayType  *ids;
	bool		quarantine;
} MedallionReplay;

/* silver/silver_run.c (replay: NULL for a run) */
extern void medallion_silver_run(Pipeline *p, int64 run_id, const char *kind,
								 const MedallionReplay *replay, RunCounts *counts);

/* ops/run.c: a replay, as replay_dlq() and replay_quarantine() make it, and their ids */
extern int64 medallion_run_replay(const char *pipeline, const MedallionReplay *replay,
								  RunCounts *out);
extern ArrayType *medallion_replay_ids_arg(FunctionCallInfo fcinfo, int argno);

/* bronze/dlq_replay.c: a bronze pipeline's dead letters parsed again and landed */
extern int64 medallion_bronze_replay_dlq(const Pipeline *p, ArrayType *ids);

/*
 * ops/ownership.c: what DROP ROLE, DROP OWNED and REASSIGN OWNED do to the
 * pipelines the roles own (called by bgw/hooks.c's ProcessUtility hook)
 */
extern void medallion_ownership_before_utility(Node *stmt);
extern void medallion_ownership_after_utility(Node *stmt);

/* bgw/: the background processes (their shared state in bgw/bgw.h) */
#define MEDALLION_MAX_DATABASES 64	/* databases with a scheduler, in a cluster */

/*
 * The catalog version this library works with: its schedulers idle on any
 * other until ALTER EXTENSION medallion UPDATE.
 */
#define MEDALLION_CATALOG_VERSION "0.2.0"

extern int	medallion_max_workers;
extern int	medallion_max_workers_per_owner;
extern void medallion_shmem_init(void);
extern void medallion_hooks_init(void);
extern void medallion_launcher_register(void);
extern void medallion_wake_scheduler_at_commit(void);
extern bool medallion_scheduler_running(Oid dboid);
extern bool medallion_db_slot_available(Oid dboid);

/* ops/freshness.c */
extern void medallion_check_freshness(void);

/* ops/policy.c: the pipeline state machine (the rest in ops/ops.h) */
extern void medallion_policy_after_failure(const char *pipeline, ErrorData *edata,
										   const char *class, bool scheduled);
extern void medallion_policy_after_success(const char *pipeline, int64 run_id,
										   const RunCounts *counts);
extern TimestampTz medallion_policy_trial_at(bool opened, TimestampTz opened_at,
											 const char *cooldown);

/* run.c: scheduled runs (worker.c) */
extern int	medallion_history_days;
extern int64 medallion_run_begin_scheduled(const char *pipeline, int pid);
extern bool medallion_run_pending(Pipeline *p);
extern void medallion_run_scheduled(const char *pipeline, int64 run_id, bool *over_budget);
extern void medallion_run_failed_scheduled(const char *pipeline, int64 run_id, ErrorData *edata,
										   bool over_budget);

/* silver/watermark.c: snapshot watermarks (silver runs, and gold models' change records) */
typedef struct Watermark
{
	bool		found;
	bool		has_done;
	Datum		done_snapshot;	/* pg_snapshot */
	bool		has_target;
	Datum		target_snapshot;
	bool		has_resume;
	Datum		resume_xid;		/* xid8 */
	int64		resume_seq;
	bool		rebase;			/* stored by another cluster: xids are foreign */
	bool		has_until;		/* a bounded rebase in progress (silver_run.c): */
	int64		rebase_until;	/* the rows up to this _seq are re-read */
} Watermark;

extern void medallion_watermark_load(const Pipeline *p, Watermark *wm);
extern void medallion_watermark_save(const char *pipeline, const Watermark *wm);
extern Datum medallion_current_snapshot(void);
extern Datum medallion_snapshot_set_visible(Datum snapshot, Datum xid, bool visible);
extern bool medallion_snapshot_visible(Datum snapshot, Datum xid);
extern Datum medallion_snapshot_xmin(Datum snapshot);
extern Datum medallion_snapshot_xmax(Datum snapshot);
extern Datum medallion_snapshot_xip(Datum snapshot, bool *isnull);

/*
 * gold/changes.c: change records.  A run of a pipeline that gold models
 * read notes the day buckets of the old and new values of the columns those
 * models map their partitions through, and writes them with its output.
 */
typedef struct MedallionChangeSet MedallionChangeSet;
extern MedallionChangeSet *medallion_changeset_open(const char *pipeline, MemoryContext cxt);
extern List *medallion_changeset_columns(MedallionChangeSet *cs);
extern void medallion_changeset_note(MedallionChangeSet *cs, int slot, Oid typid, Datum value);
extern void medallion_changeset_note_day(MedallionChangeSet *cs, int slot, int day);
extern void medallion_changeset_forget(MedallionChangeSet *cs, int slot);
extern void medallion_changeset_write(MedallionChangeSet *cs, int64 run_id);

/*
 * gold/changes.c: another consumer of a gold model's change records (an
 * export), with its own snapshot watermark: the partitions the model's runs
 * refreshed since the consumer's watermark, up to a target snapshot.
 */
typedef struct GoldRefreshedPartition
{
	char	   *from;			/* first day, YYYY-MM-DD (UTC for timestamptz) */
	char	   *to;				/* the next partition's first day */
	char	   *predicate;		/* qualified SQL over alias t: the partition's rows */
} GoldRefreshedPartition;

typedef struct GoldRefreshed
{
	bool		whole;			/* the whole table: first read, full refresh, unpartitioned */
	List	   *partitions;		/* of GoldRefreshedPartition *, in order */
} GoldRefreshed;

extern void medallion_gold_refreshed_read(Pipeline *consumer, Pipeline *model, Datum target,
										  GoldRefreshed *out);
extern void medallion_gold_refreshed_consume(Pipeline *consumer, Pipeline *model, Datum target);

/* gold/descriptions.c: alter_pipeline's option columns of a gold model */
extern void medallion_gold_alter_columns(const Pipeline *p, JsonbValue *columns);

/* gold/changes.c: records no model reads any more, deleted */
extern void medallion_gold_changes_forget_unread(void);

/* gold/alter.c: alter_pipeline()'s "query" of a model; a version put back */
extern Jsonb *medallion_gold_alter(const char *name, Jsonb *options);
extern void medallion_gold_definition_restore(const char *pipeline, int32 version);

/* gold/shape.c: a model whose query's columns wait for a backfill (the scheduler skips it) */
extern bool medallion_gold_shape_pending(Pipeline *p);

/* gold/refresh.c: a run of a gold model; its cheap pending check */
extern void medallion_gold_run(Pipeline *p, int64 run_id, RunCounts *counts);
extern TimestampTz medallion_gold_oldest_pending(Pipeline *p);
extern bool medallion_gold_backfill(Pipeline *p, int64 run_id, int from_day, int to_day,
									bool whole, RunCounts *counts);

/* backfill/blue_green.c: kept versions whose time is up dropped (housekeeping) */
extern void medallion_backfill_housekeeping(void);

/* backfill/async.c: asynchronous backfills, a day per transaction (bgw/backfill_worker.c) */
extern int	medallion_max_backfills;
extern List *medallion_backfill_waiting_runs(void);
extern bool medallion_backfill_async_day(int64 run_id);
extern void medallion_backfill_async_failed(int64 run_id, ErrorData *edata);

/* net/source_run.c: runs of HTTP sources (layer 'source') */
extern void medallion_source_run(Pipeline *p, int64 run_id, RunCounts *counts);
extern void medallion_net_forget_empty_run(int64 run_id, const RunCounts *counts);
/* net/export.c: runs of exports (layer 'export') */
extern void medallion_export_run(Pipeline *p, int64 run_id, RunCounts *counts);
extern Jsonb *medallion_export_alter(const char *pipeline, Jsonb *definition, Jsonb *options);
extern int	medallion_net_take_retry_after(void);
extern Jsonb *medallion_source_alter(const char *pipeline, Jsonb *definition, Jsonb *options);

/* net/webhook.c: the webhook outbox (sent by bgw/delivery.c) */
typedef struct WebhookDelivery
{
	int64		id;
	char	   *url;
	List	   *headers;		/* of char *: "Name: value" */
	char	   *payload;		/* JSON text */
} WebhookDelivery;

extern void medallion_webhook_enqueue(const char *pipeline, const char *kind, const char *event);
extern TimestampTz medallion_webhook_next_due(void);
extern List *medallion_webhook_due(int limit);
extern void medallion_webhook_send(const WebhookDelivery *d);
extern void medallion_webhook_record(int64 id, const char *error);

/* silver/silver_run.c: a cheap look at a pipeline's window (no user SQL) */
extern TimestampTz medallion_silver_oldest_pending(Pipeline *p);

/* schema/drift.c: payload drift against a silver contract */
typedef struct DriftWindow
{
	const char *pipeline;		/* 'silver.<name>' */
	const char *relname;		/* <name> */
	const char *source;			/* 'bronze.<name>' */
	Contract   *contract;
	Jsonb	   *definition;
	int64		run_id;
	int64		min_rows;		/* drift_min_rows */
	double		max_bad_ratio;	/* < 0: unset */
} DriftWindow;

extern void medallion_drift_options(DriftWindow *w);
extern Jsonb *medallion_drift_unread_keys(DriftWindow *w);
extern void medallion_drift_halt(DriftWindow *w, int sqlerrcode, const char *path,
								 const char *message, const char *detail);
extern void medallion_drift_after_failure(const char *pipeline, int64 run_id, ErrorData *edata);
extern void medallion_drift_check_option(const char *name, const char *value);

/* jsonscan.c: a fast, non-recursive look at JSON text (ingest.c) */
#define MEDALLION_MAX_JSON_DEPTH 10000	/* records nested deeper go to the DLQ */
extern bool medallion_jsonscan_object(const char *data, int len);
extern bool medallion_jsonscan_object_keys(const char *data, int len, JsonScanKeys *keys);
extern bool medallion_jsonscan_too_deep(const char *data, int len, int limit);

#endif							/* MEDALLION_H */
