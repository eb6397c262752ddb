/*-------------------------------------------------------------------------
 *
 * run.c
 *	  medallion.run(): one run of a pipeline, and its record.
 *
 * A run is serialised per pipeline by a row lock on its
 * medallion.pipelines row, always leaves a medallion.runs row, and executes
 * the pipeline's SQL as the pipeline's owner with the settings that change
 * results pinned.  Its work happens in a subtransaction: a failure rolls
 * back only the run's own work, is recorded with its class and reported as
 * a WARNING (strict => true raises it instead).  A cancel is never caught.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/instrument.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "ops/ops.h"

PG_FUNCTION_INFO_V1(medallion_run);
PG_FUNCTION_INFO_V1(medallion_pause);
PG_FUNCTION_INFO_V1(medallion_resume);
PG_FUNCTION_INFO_V1(medallion_replay_dlq);
PG_FUNCTION_INFO_V1(medallion_count_insert);

/*
 * A run's time budget (options.time_budget): the statement timeout armed
 * for the run's duration.  SPI does not arm statement_timeout (only a
 * client's statement does), so the run arms the timer itself, unless the
 * caller's own statement_timeout comes first, and puts the caller's back
 * afterwards.
 */
typedef struct RunBudget
{
	TimestampTz deadline;		/* 0: no budget armed */
	bool		had_timer;		/* the caller's statement timeout */
	TimestampTz caller_finish;
	char	   *text;			/* the budget, as set */
} RunBudget;

/*
 * Arms the time budget of a pipeline's run, if it has one.
 */
static void
budget_arm(RunBudget *b, const Pipeline *p)
{
	int64		ms;
	TimestampTz deadline;

	memset(b, 0, sizeof(*b));
	if (p->time_budget == NULL)
		return;
	ms = Max((int64) rint(medallion_option_usecs(p->time_budget) / 1000.0), 1);
	b->text = p->time_budget;

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	if (get_timeout_active(STATEMENT_TIMEOUT))
	{
		b->had_timer = true;
		b->caller_finish = get_timeout_finish_time(STATEMENT_TIMEOUT);
		if (b->caller_finish <= deadline)
			return;				/* the caller's timeout stops it first */
	}
	b->deadline = deadline;
	enable_timeout_at(STATEMENT_TIMEOUT, deadline);
}

/*
 * Disarms the time budget; returns whether it expired.
 */
static bool
budget_disarm(RunBudget *b)
{
	bool		expired;

	if (b->deadline == 0)
		return false;
	expired = GetCurrentTimestamp() >= b->deadline;
	disable_timeout(STATEMENT_TIMEOUT, false);
	if (b->had_timer)
		enable_timeout_at(STATEMENT_TIMEOUT, b->caller_finish);
	b->deadline = 0;
	return expired;
}

/*
 * Whether an error is the run's own time budget expiring (57014 is a
 * cancel too: a user's, or the caller's statement_timeout).  Disarms the
 * budget.
 */
static bool
budget_stopped(RunBudget *b, ErrorData *edata, const char *pipeline)
{
	bool		expired = budget_disarm(b);

	if (!expired || edata->sqlerrcode != ERRCODE_QUERY_CANCELED)
		return false;
	edata->detail = edata->message;
	edata->message = psprintf("run of pipeline \"%s\" exceeded its time budget of %s",
							  pipeline, b->text);
	edata->hint = pstrdup("Raise it with medallion.alter_pipeline(pipeline, '{\"time_budget\": \"...\"}'), or bound the run with max_rows_per_run.");
	return true;
}

/*
 * What a run cost: this backend's buffer and WAL usage when it started
 * (parallel workers' usage is added to it as their queries end).
 */
typedef struct RunUsage
{
	BufferUsage buffers;
	WalUsage	wal;
} RunUsage;

static void
usage_start(RunUsage *u)
{
	u->buffers = pgBufferUsage;
	u->wal = pgWalUsage;
}

/*
 * Puts the usage since usage_start() into a run's counts.
 */
static void
usage_stop(const RunUsage *u, RunCounts *counts)
{
	BufferUsage buffers = {0};
	WalUsage	wal = {0};

	BufferUsageAccumDiff(&buffers, &pgBufferUsage, &u->buffers);
	WalUsageAccumDiff(&wal, &pgWalUsage, &u->wal);
	counts->shared_blks_hit = buffers.shared_blks_hit;
	counts->shared_blks_read = buffers.shared_blks_read;
	counts->wal_bytes = (int64) wal.wal_bytes;
}

/* A run's work, as a subtransaction's. */
typedef struct RunAttempt
{
	Pipeline   *p;
	int64		run_id;
	const char *kind;
	const MedallionReplay *replay;
	RunCounts  *counts;
	RunBudget  *budget;
} RunAttempt;

/*
 * The work of a run, by the pipeline's layer.
 */
static void
run_layer(Pipeline *p, int64 run_id, const char *kind, const MedallionReplay *replay,
		  RunCounts *counts)
{
	if (strcmp(p->layer, "gold") == 0)
	{
		medallion_progress_phase("refresh", -1);
		medallion_gold_run(p, run_id, counts);
	}
	else if (strcmp(p->layer, "source") == 0)
	{
		medallion_progress_phase("fetch", -1);
		medallion_source_run(p, run_id, counts);
	}
	else if (strcmp(p->layer, "export") == 0)
	{
		medallion_progress_phase("export", -1);
		medallion_export_run(p, run_id, counts);
	}
	else
		medallion_silver_run(p, run_id, kind, replay, counts);
	medallion_progress_phase("record", -1);
}

static void
attempt_run(void *arg)
{
	RunAttempt *a = arg;

	run_layer(a->p, a->run_id, a->kind, a->replay, a->counts);
	budget_disarm(a->budget);
}

/*
 * A run refused for good (its owner role or its table is gone), as data:
 * recorded as failed with class schema, and the pipeline halted, without
 * aborting the caller.  Returns the error; *run_id is the run's.
 */
static ErrorData *
refusal_recorded(Pipeline *p, const char *kind, int64 recorded_run_id, int sqlerrcode,
				 char *message, int64 *run_id)
{
	ErrorData  *edata = palloc0(sizeof(ErrorData));

	edata->elevel = ERROR;
	edata->sqlerrcode = sqlerrcode;
	edata->message = message;
	*run_id = recorded_run_id ? recorded_run_id : medallion_run_record_start(p->name, kind, "running", 0);
	medallion_run_record_finish(*run_id, "failed", NULL, edata, "schema");
	medallion_policy_after_failure(p->name, edata, "schema", true);
	return edata;
}

/*
 * A pipeline whose owner role is gone (renamed, dropped, or not restored
 * with a dump): its code cannot run as anyone else, so the run is refused
 * (42704), recorded as failed, and the pipeline halted until the role
 * exists again (or the owner is changed) and resume() is called.  strict
 * raises the error; a scheduled run's worker records it in a new
 * transaction and the failure policy halts the pipeline.  recorded_run_id:
 * the run's row, when it is recorded already.
 */
static int64
refuse_ownerless(Pipeline *p, const char *kind, bool strict, int64 recorded_run_id)
{
	ErrorData  *edata;
	int64		run_id;

	if (strict)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", p->owner_name),
				 errdetail("Pipeline \"%s\" is owned by role \"%s\"; its runs execute as that role.",
						   p->name, p->owner_name),
				 errhint("Create the role, or change medallion.pipelines.owner, then run medallion.resume(%s).",
						 quote_literal_cstr(p->name))));

	/* the same error, as data: recorded and halting, without aborting the caller */
	edata = refusal_recorded(p, kind, recorded_run_id, ERRCODE_UNDEFINED_OBJECT,
							 psprintf("role \"%s\" does not exist", p->owner_name), &run_id);
	ereport(WARNING,
			(errmsg("run %lld of pipeline \"%s\" failed: %s", (long long) run_id, p->name, edata->message),
			 errdetail("Error class schema, SQLSTATE 42704; the pipeline is halted."),
			 errhint("Create the role, or change medallion.pipelines.owner, then run medallion.resume(%s).",
					 quote_literal_cstr(p->name))));
	return run_id;
}

/*
 * Whether run() runs pipelines of a layer (the others land data through
 * their own functions).  run_all() selects its pipelines with it too.
 */
bool
medallion_run_accepts_layer(const char *layer)
{
	return strcmp(layer, "silver") == 0 || strcmp(layer, "gold") == 0 ||
		strcmp(layer, "source") == 0 || strcmp(layer, "export") == 0;
}

/*
 * A pipeline whose table is gone (dropped, or renamed away): without this
 * check a silver run with an empty window would report success, reading
 * nothing and writing nowhere.  Like an ownerless pipeline, the run is
 * refused (42P01), recorded as failed and the pipeline halted; strict
 * raises the error.
 */
static int64
refuse_tableless(Pipeline *p, const char *kind, bool strict, int64 recorded_run_id)
{
	ErrorData  *edata;
	int64		run_id;
	char	   *table = quote_qualified_identifier(p->layer, p->relname);

	if (strict)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s of pipeline \"%s\" does not exist", table, p->name),
				 errhint("Drop the pipeline with medallion.drop_pipeline(%s), or restore the table and run medallion.resume(%s).",
						 quote_literal_cstr(p->name), quote_literal_cstr(p->name))));

	edata = refusal_recorded(p, kind, recorded_run_id, ERRCODE_UNDEFINED_TABLE,
							 psprintf("table %s of pipeline \"%s\" does not exist", table, p->name),
							 &run_id);
	ereport(WARNING,
			(errmsg("run %lld of pipeline \"%s\" failed: %s", (long long) run_id, p->name, edata->message),
			 errdetail("Error class schema, SQLSTATE 42P01; the pipeline is halted."),
			 errhint("Drop the pipeline with medallion.drop_pipeline(%s), or restore the table and run medallion.resume(%s).",
					 quote_literal_cstr(p->name), quote_literal_cstr(p->name))));
	return run_id;
}

/*
 * One run of a pipeline; returns its run id.  Shared by run(), run_all(),
 * replay_dlq() and scheduled runs (scheduled_run_id, already recorded;
 * strict: an error propagates, and *over_budget tells whether the run's
 * own time budget stopped it).
 */
static int64
run_pipeline(const char *name, bool strict, bool wait, const char *kind,
			 const MedallionReplay *replay, RunCounts *out, int64 scheduled_run_id,
			 bool *over_budget_out)
{
	Pipeline	p = {0};
	bool		busy;
	int64		run_id = scheduled_run_id;
	RunCounts	counts = {0};
	MemoryContext oldcxt = CurrentMemoryContext;
	ErrorData  *edata;
	bool		over_budget = false;
	RunBudget	budget;
	RunUsage	usage;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 IsolationIsSerializable() ?
				 errmsg("a medallion run cannot execute in a SERIALIZABLE transaction") :
				 errmsg("a medallion run cannot execute in a REPEATABLE READ transaction"),
				 errdetail("A run must see the watermark committed by the previous run."),
				 errhint("Run it in a READ COMMITTED transaction.")));

	/* with the run row, when the pipeline is free (taken back by a refusal below) */
	if (!medallion_pipeline_lookup_run(name, &p, !wait, &busy, kind, &run_id))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", name),
				 errhint("Pipelines are listed in medallion.pipelines.")));
	if (!OidIsValid(p.owner))
		return refuse_ownerless(&p, kind, strict, run_id);
	/* before a 'skipped' row is recorded: that is a write too */
	medallion_require_operator(&p, "run");
	if (busy)
	{
		ereport(NOTICE,
				(errmsg("a run of pipeline \"%s\" is in progress, skipped", name)));
		run_id = medallion_run_record_start(name, kind, "skipped", 0);
		medallion_run_record_finish(run_id, "skipped", NULL, NULL, NULL);
		medallion_run_trim_skipped(name);
		return run_id;
	}
	if (!medallion_run_accepts_layer(p.layer))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot run pipeline \"%s\"", name),
				 errdetail("Only silver and gold pipelines, HTTP sources and exports are run; pipeline \"%s\" of layer \"%s\" lands data through ingest functions.",
						   name, p.layer)));
	if (replay != NULL && strcmp(p.layer, "silver") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pipeline \"%s\" has no dead-letter queue to replay", name),
				 errdetail("Only silver pipelines replay dead letters: gold models compute their rows from silver and gold tables, and an HTTP source's unparseable pages are replayed through its bronze table.")));
	medallion_policy_check_runnable(&p, scheduled_run_id != 0);
	if ((strcmp(p.layer, "silver") == 0 || strcmp(p.layer, "gold") == 0) &&
		!OidIsValid(medallion_pipeline_table(&p)))
		return refuse_tableless(&p, kind, strict, run_id);

	if (run_id == 0)
		run_id = medallion_run_record_start(name, kind, "running", 0);
	budget_arm(&budget, &p);
	usage_start(&usage);
	/* ended below, or by the end of the transaction when an error leaves */
	medallion_progress_begin(name, run_id);

	if (strict)
	{
		PG_TRY();
		{
			run_layer(&p, run_id, kind, replay, &counts);
		}
		PG_CATCH();
		{
			ErrorData  *e;

			MemoryContextSwitchTo(oldcxt);
			e = CopyErrorData();
			if (!budget_stopped(&budget, e, name))
				PG_RE_THROW();
			FlushErrorState();
			if (over_budget_out)
				*over_budget_out = true;
			ReThrowError(e);
		}
		PG_END_TRY();
		budget_disarm(&budget);
		usage_stop(&usage, &counts);
		medallion_policy_after_success(name, run_id, &counts);
		/* a scheduled pull or export that moved nothing leaves no run */
		if (scheduled_run_id && (strcmp(p.layer, "source") == 0 || strcmp(p.layer, "export") == 0))
			medallion_net_forget_empty_run(run_id, &counts);
		medallion_progress_end();
		if (out)
			*out = counts;
		return run_id;
	}

	{
		RunAttempt	attempt = {&p, run_id, kind, replay, &counts, &budget};

		edata = medallion_try(attempt_run, &attempt, true);
	}
	if (edata)
		memset(&counts, 0, sizeof(counts));
	/* a failed run's work is rolled back, but it was done: its cost counts */
	usage_stop(&usage, &counts);
	if (edata)
	{
		over_budget = budget_stopped(&budget, edata, name);
		/* A cancel or a shutdown stops the caller too: never swallowed. */
		if ((edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !over_budget) ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN || ProcDiePending)
			ReThrowError(edata);
	}

	if (edata)
	{
		const char *class = over_budget ? "over_budget" : medallion_error_class(edata->sqlerrcode);

		medallion_run_record_finish(run_id, "failed", &counts, edata, class);
		medallion_policy_after_failure(name, edata, class, false);
		medallion_drift_after_failure(name, run_id, edata);
		if (medallion_error_is_drift(edata->sqlerrcode))
			ereport(WARNING,
					(errmsg("run %lld of pipeline \"%s\" failed: %s", (long long) run_id, name, edata->message),
					 errdetail("Error class %s, SQLSTATE %s; nothing was loaded and the pipeline is halted.",
							   class, unpack_sql_state(edata->sqlerrcode)),
					 edata->hint ? errhint("%s", edata->hint) : 0));
		else
			ereport(WARNING,
					(errmsg("run %lld of pipeline \"%s\" failed: %s", (long long) run_id, name, edata->message),
					 errdetail("Error class %s, SQLSTATE %s; the failure is recorded in medallion.runs.",
							   class, unpack_sql_state(edata->sqlerrcode))));
	}
	else
	{
		medallion_policy_after_success(name, run_id, &counts);
	}
	medallion_progress_end();
	if (out)
		*out = counts;
	return run_id;
}

/* The pending check of a scheduled run, as a subtransaction's work. */
typedef struct PendingAttempt
{
	Pipeline   *p;
	bool		pending;
} PendingAttempt;

static void
attempt_pending(void *arg)
{
	PendingAttempt *a = arg;

	if (strcmp(a->p->layer, "gold") == 0)
		a->pending = medallion_gold_oldest_pending(a->p) != 0 && !medallion_gold_shape_pending(a->p);
	else
		a->pending = medallion_silver_oldest_pending(a->p) != 0;
}

/*
 * Whether a scheduled pipeline has rows to process.  A check that fails (the
 * source is gone, say) says yes: the run meets the same error, records it
 * and applies its policy, instead of the check failing unrecorded again and
 * again.  A cancel is never swallowed.
 */
bool
medallion_run_pending(Pipeline *p)
{
	PendingAttempt attempt = {p, true};
	ErrorData  *edata;

	/* no role to look as: the run is refused, recorded, and halts */
	if (!OidIsValid(p->owner))
		return true;
	/* a source cannot tell without pulling, an export finds out as it runs */
	if (strcmp(p->layer, "source") == 0 || strcmp(p->layer, "export") == 0)
		return true;
	edata = medallion_try(attempt_pending, &attempt, true);
	if (edata == NULL)
		return attempt.pending;
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		ReThrowError(edata);
	ereport(DEBUG1,
			(errmsg_internal("medallion: checking pipeline \"%s\" failed: %s", p->name, edata->message)));
	return true;
}

/*
 * A scheduled run, step 1 (its own transaction): returns 0 when there is
 * nothing to do (only last_checked_at is recorded), else the id of the
 * 'running' run row, which the worker commits before the work.
 */
int64
medallion_run_begin_scheduled(const char *pipeline, int pid)
{
	Pipeline	p = {0};
	Oid			argtypes[2] = {TEXTOID, BOOLOID};
	Datum		values[2];
	bool		pending;

	if (!medallion_pipeline_lookup(pipeline, &p, false, false, NULL) ||
		!medallion_run_accepts_layer(p.layer) || !medallion_policy_schedulable(&p))
	{
		if (p.pause_requested)
			medallion_pause_fold(pipeline);
		return 0;
	}

	values[0] = CStringGetTextDatum(pipeline);

	/*
	 * The run lock held (a backfill, or a run): a worker would wait on it,
	 * and so would this statement's UPDATE below.  Looked at again next time.
	 */
	if (medallion_catalog_exec("SELECT 1 FROM medallion.pipelines WHERE name OPERATOR(pg_catalog.=) $1 "
							   "FOR NO KEY UPDATE SKIP LOCKED",
							   1, argtypes, values, NULL, SPI_OK_SELECT) == 0)
		return 0;
	pending = medallion_run_pending(&p);
	values[1] = BoolGetDatum(pending);
	/* the request is served; a retry with nothing left to do is void */
	(void) medallion_catalog_exec("UPDATE medallion.pipelines SET last_checked_at = pg_catalog.now(), "
								  "trigger_requested = false, "
								  "retry_at = CASE WHEN $2 THEN retry_at END "
								  "WHERE name OPERATOR(pg_catalog.=) $1",
								  2, argtypes, values, NULL, SPI_OK_UPDATE);
	if (!pending)
		return 0;
	return medallion_run_record_start(pipeline, "incremental", "running", pid);
}

/*
 * A scheduled run, step 2: the run itself, the same path as run().  When
 * it fails, *over_budget tells step 3 whether its own time budget stopped it.
 */
void
medallion_run_scheduled(const char *pipeline, int64 run_id, bool *over_budget)
{
	*over_budget = false;
	(void) run_pipeline(pipeline, true, true, "incremental", NULL, NULL, run_id, over_budget);
}

/*
 * A scheduled run, step 3 after a failure (a new transaction): the record,
 * and the strategy of the error's class.
 */
void
medallion_run_failed_scheduled(const char *pipeline, int64 run_id, ErrorData *edata,
							   bool over_budget)
{
	const char *class = over_budget ? "over_budget" : medallion_error_class(edata->sqlerrcode);

	medallion_run_record_finish(run_id, "failed", NULL, edata, class);
	medallion_policy_after_failure(pipeline, edata, class, true);
	medallion_drift_after_failure(pipeline, run_id, edata);
}

/*
 * medallion.run(pipeline, strict, wait) → run id
 */
Datum
medallion_run(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline must not be NULL")));
	PG_RETURN_INT64(run_pipeline(text_to_cstring(PG_GETARG_TEXT_PP(0)),
								 !PG_ARGISNULL(1) && PG_GETARG_BOOL(1),
								 PG_ARGISNULL(2) || PG_GETARG_BOOL(2),
								 "incremental", NULL, NULL, 0, NULL));
}

/*
 * One run of a pipeline, as run() makes it with its defaults (run_all()).
 */
int64
medallion_run_manual(const char *pipeline)
{
	return run_pipeline(pipeline, false, true, "incremental", NULL, NULL, 0, NULL);
}

/*
 * Sets a pipeline's state, for its owner.
 *
 * pause() never waits: a run in progress holds the pipeline's row until its
 * transaction ends, so when the row is locked the pause is left as a
 * request in medallion.pause_requests.  The running run goes on and
 * commits; every later run and scheduled check sees the pipeline as
 * paused, and the state column says so once the request is folded in: at
 * the end of a run that saw it, at the scheduler's next look, or by
 * pause() when the row is free.  resume() withdraws a request.
 */
static void
set_state(FunctionCallInfo fcinfo, PipelineEvent event)
{
	char	   *name;
	Pipeline	p = {0};
	MedallionGateway gw;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		pause = (event == PIPELINE_EVENT_PAUSE);

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!medallion_pipeline_lookup(name, &p, false, false, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", name)));
	medallion_require_operator(&p, pause ? "pause" : "resume");

	values[0] = CStringGetTextDatum(name);
	medallion_catalog_enter(&gw);
	if (pause &&
		medallion_gateway_exec("SELECT 1 FROM medallion.pipelines "
							   "WHERE name OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE SKIP LOCKED",
							   1, argtypes, values, NULL, 1, SPI_OK_SELECT) == 0)
	{
		/* a run holds it: do not wait for it */
		(void) medallion_gateway_exec("INSERT INTO medallion.pause_requests (pipeline) VALUES ($1) "
									  "ON CONFLICT DO NOTHING",
									  1, argtypes, values, NULL, 0, SPI_OK_INSERT);
		medallion_gateway_leave(&gw);
		return;
	}
	if (medallion_gateway_exec("DELETE FROM medallion.pause_requests "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1",
							   1, argtypes, values, NULL, 0, SPI_OK_DELETE) > 0 &&
		!pause &&
		medallion_gateway_exec("SELECT 1 FROM medallion.pipelines "
							   "WHERE name OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE SKIP LOCKED",
							   1, argtypes, values, NULL, 1, SPI_OK_SELECT) == 0)
	{
		/* a pending pause withdrawn while a run holds the row: nothing else to undo */
		medallion_gateway_leave(&gw);
		return;
	}
	/* resume() starts afresh: failures, retries and the breaker forgotten */
	values[1] = CStringGetTextDatum(medallion_policy_next_state(p.state, event));
	(void) medallion_gateway_exec(pause ?
								  "UPDATE medallion.pipelines SET state = $2 "
								  "WHERE name OPERATOR(pg_catalog.=) $1" :
								  "UPDATE medallion.pipelines SET state = $2, "
								  "consecutive_failures = 0, retry_attempt = 0, "
								  "retry_at = NULL, circuit_opened_at = NULL "
								  "WHERE name OPERATOR(pg_catalog.=) $1",
								  2, argtypes, values, NULL, 0, SPI_OK_UPDATE);
	medallion_gateway_leave(&gw);
	if (!pause)
	{
		/* the operator dealt with it; and the scheduler looks again */
		medallion_alert_resolve(name, "halted");
		medallion_alert_resolve(name, "circuit_open");
		medallion_alert_resolve(name, "schema_change");
		medallion_wake_scheduler_at_commit();
	}
}

Datum
medallion_pause(PG_FUNCTION_ARGS)
{
	set_state(fcinfo, PIPELINE_EVENT_PAUSE);
	PG_RETURN_VOID();
}

Datum
medallion_resume(PG_FUNCTION_ARGS)
{
	set_state(fcinfo, PIPELINE_EVENT_RESUME);
	PG_RETURN_VOID();
}

/*
 * The ids argument of a replay function: NULL is every pending row (an
 * empty array).
 */
ArrayType *
medallion_replay_ids_arg(FunctionCallInfo fcinfo, int argno)
{
	ArrayType  *ids;

	if (PG_ARGISNULL(argno))
		return construct_empty_array(INT8OID);
	ids = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(ids) > 1 || array_contains_nulls(ids))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ids must be a one-dimensional array without NULLs")));
	return ids;
}

/*
 * A replay of a silver pipeline's dead letters or quarantined rows, through
 * the same path as a run (its lock, its record, its owner); returns the run
 * id, *out the counts (replayed: the rows now loaded).
 */
int64
medallion_run_replay(const char *pipeline, const MedallionReplay *replay, RunCounts *out)
{
	return run_pipeline(pipeline, true, true, "replay", replay, out, 0, NULL);
}

/*
 * medallion.replay_dlq(pipeline, ids) → rows now loaded.  Re-attempts the
 * pipeline's unprocessed DLQ rows (all, or those ids) from their (possibly
 * corrected) payloads: a silver pipeline's through the same path as a run,
 * a bronze pipeline's parsed again and landed (bronze/dlq_replay.c).
 */
Datum
medallion_replay_dlq(PG_FUNCTION_ARGS)
{
	RunCounts	counts = {0};
	MedallionReplay replay = {0};
	Pipeline	p = {0};
	char	   *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline must not be NULL")));
	replay.ids = medallion_replay_ids_arg(fcinfo, 1);
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (medallion_pipeline_lookup(name, &p, false, false, NULL) && strcmp(p.layer, "bronze") == 0)
		PG_RETURN_INT64(medallion_bronze_replay_dlq(&p, replay.ids));
	(void) medallion_run_replay(name, &replay, &counts);
	PG_RETURN_INT64(counts.replayed);
}

/*
 * medallion.count_insert(run_id): called by a MERGE's INSERT action only, so
 * the run can tell inserts from updates.
 */
Datum
medallion_count_insert(PG_FUNCTION_ARGS)
{
	/* only inside a run of the current user's pipeline (silver.c) */
	medallion_active_run_count_insert();
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}
