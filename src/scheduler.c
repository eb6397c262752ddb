/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *	  The scheduler of one database: starts run workers for due pipelines.
 *
 * It sleeps on its latch until the next due time or a wake-up (data landed
 * for an 'on_change' pipeline, a trigger, a worker that ended), starts at
 * most medallion.max_workers run workers in the cluster, honours retry
 * times, circuit-breaker cooldowns and halts, checks freshness SLAs and
 * does the housekeeping (bronze retention, trimming history).  At start it
 * marks the runs left 'running' by a crashed process as failed.
 *
 * State machine of a pipeline (medallion.pipelines.state): active →
 * (N consecutive failures) circuit_open → (cooldown) trial run → active on
 * success, circuit_open again on failure; active → halted on a schema or
 * infrastructure error, until resume().  paused: until resume().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "medallion.h"

#define SCHEDULER_MAX_NAP_MS (60 * 1000)
#define HOUSEKEEPING_MS (60 * 60 * 1000)
#define FRESHNESS_MS (10 * 1000)
#define FRESHNESS_MIN_MS 1000	/* after a run: soon, but not more often */

/* A run worker this scheduler started. */
typedef struct RunningWorker
{
	char		pipeline[NAMEDATALEN * 2];
	BackgroundWorkerHandle *handle;
} RunningWorker;

/* What the scheduler remembers of a pipeline between passes. */
typedef struct PipelineMemo
{
	char		pipeline[NAMEDATALEN * 2];
	TimestampTz last_start;
	uint64		wake_seen;
	bool		idle;			/* its last check found nothing ... */
	uint64		idle_wake;		/* ... at this wake count ... */
	TimestampTz idle_checked;	/* ... at this time */
} PipelineMemo;

/*
 * A routine check of an idle pipeline is skipped while no data has landed in
 * the database since (no wake-up): its cost must not grow with the bronze
 * tables.  Writes that fire no trigger (logical replication apply) are
 * caught by a real check at least this often.
 */
#define IDLE_RECHECK_MS (5 * 60 * 1000)

static List *running = NIL;		/* of RunningWorker *, in TopMemoryContext */
static List *memos = NIL;		/* of PipelineMemo * */
static MedallionDbSlot *my_slot = NULL;

static void
scheduler_detach(int code, Datum arg)
{
	ListCell   *lc;

	/* our run workers go with us: DROP DATABASE must not wait for them */
	foreach(lc, running)
		TerminateBackgroundWorker(((RunningWorker *) lfirst(lc))->handle);
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	medallion_shared->running_workers -= list_length(running);
	if (medallion_shared->running_workers < 0)
		medallion_shared->running_workers = 0;
	if (my_slot && my_slot->scheduler_pid == MyProcPid)
	{
		my_slot->scheduler_pid = 0;
		my_slot->scheduler_latch = NULL;
	}
	LWLockRelease(medallion_shared->lock);
}

static PipelineMemo *
memo_for(const char *pipeline)
{
	ListCell   *lc;
	PipelineMemo *m;
	MemoryContext old;

	foreach(lc, memos)
	{
		m = lfirst(lc);
		if (strcmp(m->pipeline, pipeline) == 0)
			return m;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	m = palloc0(sizeof(PipelineMemo));
	strlcpy(m->pipeline, pipeline, sizeof(m->pipeline));
	m->wake_seen = UINT64_MAX;	/* on_change: check once at start */
	memos = lappend(memos, m);
	MemoryContextSwitchTo(old);
	return m;
}

static bool
is_running(const char *pipeline)
{
	ListCell   *lc;

	foreach(lc, running)
		if (strcmp(((RunningWorker *) lfirst(lc))->pipeline, pipeline) == 0)
			return true;
	return false;
}

/*
 * Forgets the workers that ended; returns whether any did.
 */
static bool
reap_workers(void)
{
	ListCell   *lc;
	bool		any = false;

	foreach(lc, running)
	{
		RunningWorker *w = lfirst(lc);
		pid_t		pid;

		if (GetBackgroundWorkerPid(w->handle, &pid) == BGWH_STOPPED)
		{
			running = foreach_delete_current(running, lc);
			pfree(w->handle);
			pfree(w);
			LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
			if (medallion_shared->running_workers > 0)
				medallion_shared->running_workers--;
			LWLockRelease(medallion_shared->lock);
			any = true;
		}
	}
	return any;
}

/*
 * Starts a run worker for a pipeline, if the cluster has room.
 */
static bool
start_worker(const char *pipeline)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	RunningWorker *w;
	MemoryContext old;
	bool		room;

	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	room = medallion_shared->running_workers < medallion_max_workers;
	if (room)
		medallion_shared->running_workers++;
	LWLockRelease(medallion_shared->lock);
	if (!room)
		return false;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "medallion");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "medallion_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "medallion run %s", pipeline);
	snprintf(worker.bgw_type, BGW_MAXLEN, "medallion run worker");
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	strlcpy(worker.bgw_extra, pipeline, BGW_EXTRALEN);
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		static TimestampTz last_said = 0;

		MemoryContextSwitchTo(old);
		LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
		medallion_shared->running_workers--;
		LWLockRelease(medallion_shared->lock);
		/* no free slot (shared with parallel query, replication...): next pass */
		if (TimestampDifferenceExceeds(last_said, GetCurrentTimestamp(), 60 * 1000))
		{
			last_said = GetCurrentTimestamp();
			ereport(LOG,
					(errmsg("medallion scheduler could not start a run worker for pipeline \"%s\": no free background worker slot",
							pipeline),
					 errdetail("It tries again every second."),
					 errhint("Raise max_worker_processes (the slots are shared with parallel query, replication, pg_cron and medallion.max_workers run workers).")));
		}
		return false;
	}
	w = palloc0(sizeof(RunningWorker));
	strlcpy(w->pipeline, pipeline, sizeof(w->pipeline));
	w->handle = handle;
	running = lappend(running, w);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Runs one SQL statement of the scheduler's own (catalog upkeep).
 */
static void
scheduler_sql(const char *sql)
{
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "medallion scheduler: could not execute: %s", sql);
}

/*
 * Whether a pipeline has rows to process; when not, only last_checked_at
 * records the check (no run row, no worker).  A pipeline whose check fails
 * (its source is gone, say) counts as pending: its run meets the same
 * error, records it and applies its policy (a halt), and the other
 * pipelines of the pass go on.  A run in progress holds the pipeline's row:
 * the check does not wait for it.
 */
static bool
has_pending(const char *name)
{
	Pipeline	p = {0};
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	if (!medallion_pipeline_lookup(name, &p, false, false, NULL))
		return false;
	if (medallion_run_pending(&p))
		return true;
	values[0] = CStringGetTextDatum(name);
	SPI_connect();
	if (SPI_execute_with_args("UPDATE medallion.pipelines p SET last_checked_at = pg_catalog.now() "
							  "FROM (SELECT name FROM medallion.pipelines "
							  "      WHERE name OPERATOR(pg_catalog.=) $1 "
							  "      FOR NO KEY UPDATE SKIP LOCKED) l "
							  "WHERE p.name OPERATOR(pg_catalog.=) l.name",
							  1, types, values, NULL, false, 0) < 0)
		elog(ERROR, "could not update pipeline \"%s\"", name);
	SPI_finish();
	return false;
}

/*
 * One pass over the pipelines: start the due ones, return the time of the
 * next due one.
 */
static TimestampTz
schedule_pass(uint64 wake_count, bool *extension_gone)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = TimestampTzPlusMilliseconds(now, SCHEDULER_MAX_NAP_MS);
	List	   *due = NIL;
	ListCell   *lc;
	uint64		i;
	ArrayBuildState *idle_names;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!OidIsValid(get_extension_oid("medallion", true)))
	{
		*extension_gone = true;
		PopActiveSnapshot();
		CommitTransactionCommand();
		return next;
	}
	SPI_connect();
	if (SPI_execute("SELECT name, schedule, state, "
					"COALESCE(circuit_opened_at, '-infinity') "
					"  OPERATOR(pg_catalog.+) COALESCE((options->>'breaker_cooldown')::interval, '5 minutes'), "
					"retry_at, trigger_requested, "
					"CASE WHEN schedule_kind = 'interval' THEN EXTRACT(epoch FROM schedule::interval)::float8 END, "
					"schedule_kind "
					"FROM medallion.pipelines WHERE layer = 'silver' "
					"AND (schedule_kind IN ('interval', 'on_change') OR trigger_requested OR retry_at IS NOT NULL "
					"     OR state = 'circuit_open') ORDER BY name",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "medallion scheduler: could not read medallion.pipelines");

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tup, desc, 1);
		char	   *kind = SPI_getvalue(tup, desc, 8);
		char	   *state = SPI_getvalue(tup, desc, 3);
		bool		isnull;
		Datum		trial_at = SPI_getbinval(tup, desc, 4, &isnull);
		Datum		retry_at = SPI_getbinval(tup, desc, 5, &isnull);
		bool		has_retry = !isnull;
		bool		triggered = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
		Datum		every = SPI_getbinval(tup, desc, 7, &isnull);
		bool		has_interval = !isnull;
		PipelineMemo *m = memo_for(name);
		TimestampTz when = DT_NOEND;

		if (is_running(name) || strcmp(state, "paused") == 0 || strcmp(state, "halted") == 0)
			continue;
		if (strcmp(state, "circuit_open") == 0)
			when = DatumGetTimestampTz(trial_at);	/* half-open: one trial run */
		else if (has_retry)
			when = DatumGetTimestampTz(retry_at);
		else if (triggered)
			when = now;
		else if (has_interval)
			when = m->last_start == 0 ? now :
				TimestampTzPlusMilliseconds(m->last_start, (int64) (DatumGetFloat8(every) * 1000));
		else if (kind && strcmp(kind, "on_change") == 0 && m->wake_seen != wake_count)
			when = now;

		if (when <= now)
		{
			MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

			/* the tick after this one, whether this one finds work or not */
			if (has_interval && !triggered && !has_retry && strcmp(state, "circuit_open") != 0)
				next = Min(next, TimestampTzPlusMilliseconds(now, (int64) (DatumGetFloat8(every) * 1000)));

			/*
			 * a routine check (no trigger, no retry) starts no idle worker; a
			 * trial waits for rows to try on
			 */
			due = lappend(due, list_make2(pstrdup(name),
										  (void *) (intptr_t) (!triggered && !has_retry)));
			MemoryContextSwitchTo(old);
		}
		else if (when != DT_NOEND)
			next = Min(next, when);
	}
	SPI_finish();

	idle_names = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	foreach(lc, due)
	{
		char	   *name = linitial(lfirst(lc));
		bool		routine = (bool) (intptr_t) lsecond(lfirst(lc));
		PipelineMemo *m = memo_for(name);

		if (routine && m->idle && m->idle_wake == wake_count &&
			!TimestampDifferenceExceeds(m->idle_checked, now, IDLE_RECHECK_MS))
		{
			/* nothing landed since its last check: checked, without SQL */
			m->last_start = now;
			accumArrayResult(idle_names, CStringGetTextDatum(name), false, TEXTOID,
							 CurrentMemoryContext);
			continue;
		}
		if (routine && !has_pending(name))
		{
			m->last_start = now;
			m->wake_seen = wake_count;
			m->idle = true;
			m->idle_wake = wake_count;
			m->idle_checked = now;
			continue;
		}
		m->idle = false;
		if (start_worker(name))
		{
			m->last_start = now;
			m->wake_seen = wake_count;
		}
		else
			next = Min(next, TimestampTzPlusMilliseconds(now, 1000));
	}
	if (idle_names->nelems > 0)
	{
		Oid			types[1] = {TEXTARRAYOID};
		Datum		values[1] = {makeArrayResult(idle_names, CurrentMemoryContext)};

		SPI_connect();
		if (SPI_execute_with_args("UPDATE medallion.pipelines SET last_checked_at = pg_catalog.now() "
								  "WHERE name OPERATOR(pg_catalog.=) ANY ($1)",
								  1, types, values, NULL, false, 0) < 0)
			elog(ERROR, "could not record the checks of idle pipelines");
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	return next;
}

/*
 * Marks the runs a crashed (or terminated) worker left 'running' as failed,
 * each a failure of its pipeline (toward the circuit breaker); returns
 * whether there were any.
 */
static bool
fail_orphaned_runs(void)
{
	List	   *pipelines = NIL;
	ListCell   *lc;
	uint64		i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (OidIsValid(get_extension_oid("medallion", true)))
	{
		ErrorData	edata = {0};

		SPI_connect();
		if (SPI_execute("UPDATE medallion.runs SET status = 'failed', finished_at = pg_catalog.clock_timestamp(), "
						"error_class = 'crashed', error_message = 'the process running it ended abnormally', "
						"sqlstate = '57P02' "
						"WHERE status = 'running' AND worker_pid IS NOT NULL "
						"AND worker_pid NOT IN (SELECT pid FROM pg_catalog.pg_stat_activity "
						"                       WHERE pid IS NOT NULL) "
						"RETURNING pipeline", false, 0) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "medallion scheduler: could not mark orphaned runs");
		for (i = 0; i < SPI_processed; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

			pipelines = lappend(pipelines,
								SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
			MemoryContextSwitchTo(old);
		}
		SPI_finish();

		edata.elevel = ERROR;
		edata.sqlerrcode = ERRCODE_CRASH_SHUTDOWN;
		edata.message = "the process running it ended abnormally";
		foreach(lc, pipelines)
		{
			ereport(LOG,
					(errmsg("medallion: a run of pipeline \"%s\" was left running by a process that ended abnormally, marked failed",
							(char *) lfirst(lc))));
			medallion_policy_after_failure(lfirst(lc), &edata, "crashed", true);
		}
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	return pipelines != NIL;
}

/*
 * After a failed run nothing may wake an 'on_change' pipeline again: have
 * every pipeline checked at the next pass.
 */
static void
forget_wakes(void)
{
	ListCell   *lc;

	foreach(lc, memos)
		((PipelineMemo *) lfirst(lc))->wake_seen = UINT64_MAX;
}

/*
 * Upkeep: every few seconds (and soon after a run) freshness SLAs; with
 * full, hourly, bronze retention, old run history and replayed DLQ rows.
 */
static void
housekeeping(bool full)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (!full)
		medallion_check_freshness();
	else
	{
		scheduler_sql("SELECT medallion.apply_retention()");
		scheduler_sql(psprintf("DELETE FROM medallion.runs WHERE status <> 'running' "
							   "AND finished_at < pg_catalog.now() - interval '%d days'",
							   medallion_history_days));
		scheduler_sql(psprintf("DELETE FROM medallion.dlq WHERE reprocessed "
							   "AND reprocessed_at < pg_catalog.now() - interval '%d days'",
							   medallion_history_days));
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * Entry point of a database's scheduler.
 */
void
medallion_scheduler_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	volatile TimestampTz last_housekeeping = 0;
	volatile TimestampTz last_freshness = 0;
	volatile bool extension_gone = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	my_slot = medallion_db_slot(dboid, true);
	if (my_slot)
	{
		my_slot->scheduler_pid = MyProcPid;
		my_slot->scheduler_latch = MyLatch;
	}
	LWLockRelease(medallion_shared->lock);
	if (my_slot == NULL)
		proc_exit(0);
	before_shmem_exit(scheduler_detach, (Datum) 0);

	/* No extension here: say so, and let the launcher leave us alone. */
	StartTransactionCommand();
	extension_gone = !OidIsValid(get_extension_oid("medallion", true));
	CommitTransactionCommand();
	if (extension_gone)
	{
		LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
		my_slot->extension_absent = true;
		my_slot->absent_since = GetCurrentTimestamp();
		LWLockRelease(medallion_shared->lock);
		proc_exit(0);
	}
	pgstat_report_appname("medallion scheduler");

	/*
	 * The scheduler only reads and upkeeps: it gives way to users' DDL.  It
	 * does not wait long behind a lock (the pass is tried again), and in a
	 * deadlock it is the one to notice first and step back.
	 */
	SetConfigOption("lock_timeout", "5s", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("deadlock_timeout", "100ms", PGC_SUSET, PGC_S_OVERRIDE);
	/* its own bookkeeping (last_checked_at, alerts) need not wait for a flush */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	fail_orphaned_runs();

	for (;;)
	{
		TimestampTz now;
		volatile TimestampTz next;
		uint64		wake_count;
		long		nap;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (reap_workers())
		{
			/* a worker that died mid-run leaves its run 'running' */
			volatile bool orphans = false;

			PG_TRY();
			{
				orphans = fail_orphaned_runs();
			}
			PG_CATCH();
			{
				EmitErrorReport();
				FlushErrorState();
				AbortCurrentTransaction();
			}
			PG_END_TRY();
			if (orphans)
				forget_wakes();
			/* a run changes freshness: check it soon (at most every second) */
			last_freshness = Min(last_freshness,
								 TimestampTzPlusMilliseconds(Max(TimestampTzPlusMilliseconds(last_freshness, FRESHNESS_MIN_MS),
																 GetCurrentTimestamp()),
															 -FRESHNESS_MS));
		}

		LWLockAcquire(medallion_shared->lock, LW_SHARED);
		wake_count = my_slot->wake_count;
		LWLockRelease(medallion_shared->lock);

		next = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);
		PG_TRY();
		{
			next = schedule_pass(wake_count, (bool *) &extension_gone);
		}
		PG_CATCH();
		{
			/* a broken pipeline must not stop the others: log, retry soon */
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
		}
		PG_END_TRY();
		if (extension_gone)
		{
			LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
			my_slot->extension_absent = true;
			my_slot->absent_since = GetCurrentTimestamp();
			LWLockRelease(medallion_shared->lock);
			proc_exit(0);
		}

		now = GetCurrentTimestamp();
		if (TimestampDifferenceExceeds(last_freshness, now, FRESHNESS_MS))
		{
			bool		full = TimestampDifferenceExceeds(last_housekeeping, now, HOUSEKEEPING_MS);

			last_freshness = now;
			if (full)
				last_housekeeping = now;
			/* each its own transaction: one failing does not stop the other */
			PG_TRY();
			{
				housekeeping(false);
			}
			PG_CATCH();
			{
				EmitErrorReport();
				FlushErrorState();
				AbortCurrentTransaction();
			}
			PG_END_TRY();
			if (full)
			{
				PG_TRY();
				{
					housekeeping(true);
				}
				PG_CATCH();
				{
					EmitErrorReport();
					FlushErrorState();
					AbortCurrentTransaction();
				}
				PG_END_TRY();
			}
		}
		next = Min(next, TimestampTzPlusMilliseconds(last_freshness, FRESHNESS_MS));

		nap = Max(0, (long) ((next - GetCurrentTimestamp()) / 1000));
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(nap, SCHEDULER_MAX_NAP_MS), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
