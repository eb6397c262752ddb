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
 * marks the runs left 'running' by a crashed process as failed.  It makes
 * at most one pass every SCHEDULER_MIN_PASS_MS however often it is woken,
 * and gives the pipelines of one owner at most
 * medallion.max_workers_per_owner run workers at once.
 *
 * It connects as the bootstrap superuser: its search_path is pinned to
 * pg_catalog, pg_temp before any SQL (whatever ALTER DATABASE ... SET says),
 * and its statements on the catalog go through the catalog gateway.  On a
 * catalog of another version than the library's (0.1.0 before ALTER
 * EXTENSION medallion UPDATE) it idles: nothing runs, nothing is touched.
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

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
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
#include "bgw/bgw.h"

#define SCHEDULER_MAX_NAP_MS (60 * 1000)
#define HOUSEKEEPING_MS (60 * 60 * 1000)
#define FRESHNESS_MS (10 * 1000)
#define FRESHNESS_MIN_MS 1000	/* after a run: soon, but not more often */
#define SCHEDULER_MIN_PASS_MS 200	/* wake-ups (landings) cannot drive it faster */

/* A run worker this scheduler started. */
typedef struct RunningWorker
{
	char		pipeline[NAMEDATALEN * 2];
	char		owner[NAMEDATALEN];
	BackgroundWorkerHandle *handle;
} RunningWorker;

/* A pipeline due in this pass. */
typedef struct DuePipeline
{
	char	   *name;
	char	   *owner;
	bool		routine;		/* a routine check: no trigger, no retry */
	struct PipelineMemo *memo;
} DuePipeline;

/* What the scheduler remembers of a pipeline between passes. */
typedef struct PipelineMemo
{
	char		pipeline[NAMEDATALEN * 2];
	TimestampTz last_start;
	uint64		wake_seen;
	bool		idle;			/* its last check found nothing ... */
	uint64		idle_wake;		/* ... at this wake count ... */
	TimestampTz idle_checked;	/* ... at this time */
	bool		seen;			/* in the current pass */
} PipelineMemo;

/*
 * A routine check of an idle pipeline is skipped while no data has landed in
 * the database since (no wake-up): its cost must not grow with the bronze
 * tables.  Writes that fire no trigger (logical replication apply) are
 * caught by a real check at least this often.
 */
#define IDLE_RECHECK_MS (5 * 60 * 1000)

static List *running = NIL;		/* of RunningWorker *, in TopMemoryContext */
static List *memos = NIL;		/* of PipelineMemo *: the scheduled pipelines */
static MedallionDbSlot *my_slot = NULL;
/* The extension is gone: the slot is given back at exit. */
static bool release_slot = false;

static void
scheduler_detach(int code, Datum arg)
{
	ListCell   *lc;

	/*
	 * Our run workers go with us, and are gone before the slot says so: the
	 * backend that asked for the stop (DROP DATABASE ... WITH (FORCE) by a
	 * non-superuser owner) may not terminate them itself.  In an exit
	 * callback no interrupt is processed, so a bounded sleep is the way.
	 */
	foreach(lc, running)
		TerminateBackgroundWorker(((RunningWorker *) lfirst(lc))->handle);
	medallion_delivery_terminate();
	for (int waited = 0; waited < 5000; waited += 10)
	{
		bool		alive = medallion_delivery_alive();

		foreach(lc, running)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(((RunningWorker *) lfirst(lc))->handle, &pid) != BGWH_STOPPED)
				alive = true;
		}
		if (!alive)
			break;
		pg_usleep(10 * 1000L);
	}
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	medallion_shared->running_workers -= list_length(running);
	if (medallion_shared->running_workers < 0)
		medallion_shared->running_workers = 0;
	if (my_slot && my_slot->scheduler_pid == MyProcPid)
	{
		my_slot->scheduler_pid = 0;
		my_slot->scheduler_latch = NULL;
		if (release_slot)
		{
			my_slot->has_extension = false;
			if (my_slot->hold_until == 0)
				memset(my_slot, 0, sizeof(MedallionDbSlot));
		}
	}
	LWLockRelease(medallion_shared->lock);
	ConditionVariableBroadcast(&medallion_shared->scheduler_gone);
}

/* What the scheduler finds in its database. */
typedef enum CatalogState
{
	CATALOG_GONE,				/* no extension */
	CATALOG_OTHER_VERSION,		/* idle until ALTER EXTENSION UPDATE */
	CATALOG_OK
} CatalogState;

static char *my_dbname = NULL;

static CatalogState
catalog_state(char **version)
{
	CatalogState state;
	char	   *v;

	StartTransactionCommand();
	if (my_dbname == NULL)
		my_dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	v = medallion_installed_version();
	if (v == NULL)
		state = CATALOG_GONE;
	else if (strcmp(v, MEDALLION_CATALOG_VERSION) != 0)
		state = CATALOG_OTHER_VERSION;
	else
		state = CATALOG_OK;
	if (version && v)
		*version = MemoryContextStrdup(TopMemoryContext, v);
	CommitTransactionCommand();
	return state;
}

/*
 * The run workers the pipelines of an owner have at the moment.
 */
static int
owner_workers(const char *owner)
{
	ListCell   *lc;
	int			n = 0;

	foreach(lc, running)
		if (strcmp(((RunningWorker *) lfirst(lc))->owner, owner) == 0)
			n++;
	return n;
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
		{
			m->seen = true;
			return m;
		}
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	m = palloc0(sizeof(PipelineMemo));
	strlcpy(m->pipeline, pipeline, sizeof(m->pipeline));
	m->wake_seen = UINT64_MAX;	/* on_change: check once at start */
	m->seen = true;
	memos = lappend(memos, m);
	MemoryContextSwitchTo(old);
	return m;
}

/*
 * Forgets the pipelines the last pass did not see (dropped, or with no
 * schedule any more): the memos stay as many as the scheduled pipelines.
 */
static void
memos_sweep(void)
{
	ListCell   *lc;

	foreach(lc, memos)
	{
		PipelineMemo *m = lfirst(lc);

		if (!m->seen)
		{
			pfree(m);
			memos = foreach_delete_current(memos, lc);
		}
		else
			m->seen = false;
	}
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
start_run_worker(const char *pipeline, const char *owner)
{
	char		name[BGW_MAXLEN];
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

	snprintf(name, sizeof(name), "medallion run %s", pipeline);
	if (!medallion_start_worker("medallion_worker_main", "medallion run worker", name,
								MyDatabaseId, pipeline, &handle))
	{
		static TimestampTz last_said = 0;

		LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
		medallion_shared->running_workers--;
		LWLockRelease(medallion_shared->lock);
		/* no free slot (shared with parallel query, replication...): next pass */
		if (TimestampDifferenceExceeds(last_said, GetCurrentTimestamp(), 60 * 1000))
		{
			last_said = GetCurrentTimestamp();
			ereport(LOG,
					(errmsg("could not start a run worker for pipeline \"%s\": no free background worker slot",
							pipeline),
					 errdetail("The scheduler tries again every second."),
					 errhint("You might need to increase \"%s\"; its slots are shared with parallel query, replication, other extensions and the run workers that \"%s\" allows.",
							 "max_worker_processes", "medallion.max_workers")));
		}
		return false;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	w = palloc0(sizeof(RunningWorker));
	strlcpy(w->pipeline, pipeline, sizeof(w->pipeline));
	strlcpy(w->owner, owner, sizeof(w->owner));
	w->handle = handle;
	running = lappend(running, w);
	MemoryContextSwitchTo(old);
	return true;
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
	(void) medallion_catalog_exec("UPDATE medallion.pipelines p SET last_checked_at = pg_catalog.now() "
								  "FROM (SELECT name FROM medallion.pipelines "
								  "      WHERE name OPERATOR(pg_catalog.=) $1 "
								  "      FOR NO KEY UPDATE SKIP LOCKED) l "
								  "WHERE p.name OPERATOR(pg_catalog.=) l.name",
								  1, types, values, NULL, SPI_OK_UPDATE);
	return false;
}

/* A backfill worker this scheduler started (until it is seen stopped). */
typedef struct BackfillWorker
{
	int64		run_id;
	BackgroundWorkerHandle *handle;
} BackfillWorker;

static List *backfill_workers = NIL;

/*
 * Starts workers for the asynchronous backfills waiting for one, while the
 * cluster runs fewer than medallion.max_backfills (counted by their
 * application_name, across databases).
 */
static void
start_backfill_workers(void)
{
	List	   *waiting;
	ListCell   *lc;
	int64		active = 0;

	foreach(lc, backfill_workers)
	{
		BackfillWorker *w = lfirst(lc);
		pid_t		pid;

		if (GetBackgroundWorkerPid(w->handle, &pid) == BGWH_STOPPED)
		{
			backfill_workers = foreach_delete_current(backfill_workers, lc);
			pfree(w->handle);
			pfree(w);
		}
	}
	medallion_bgw_xact_begin();
	waiting = medallion_backfill_waiting_runs();
	if (waiting != NIL)
	{
		List	   *rows = medallion_catalog_query("SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity "
												  "WHERE application_name OPERATOR(pg_catalog.~~) 'medallion backfill %'::pg_catalog.text",
												  0, NULL, NULL, NULL);

		active = DatumGetInt64(((MedallionRow *) linitial(rows))->values[0]);
	}
	foreach(lc, waiting)
	{
		int64		run_id = *(int64 *) lfirst(lc);
		ListCell   *s;
		bool		started = false;
		char		extra[32];
		char		name[BGW_MAXLEN];
		BackgroundWorkerHandle *handle;
		MemoryContext old;
		BackfillWorker *w;

		foreach(s, backfill_workers)
			started |= (((BackfillWorker *) lfirst(s))->run_id == run_id);
		if (started)
			continue;
		if (active >= medallion_max_backfills)
			break;
		snprintf(extra, sizeof(extra), INT64_FORMAT, run_id);
		snprintf(name, sizeof(name), "medallion backfill %s", extra);
		if (!medallion_start_worker("medallion_backfill_worker_main", "medallion backfill worker", name,
									MyDatabaseId, extra, &handle))
			break;				/* no free slot: next pass */
		old = MemoryContextSwitchTo(TopMemoryContext);
		w = palloc(sizeof(BackfillWorker));
		w->run_id = run_id;
		w->handle = handle;
		backfill_workers = lappend(backfill_workers, w);
		MemoryContextSwitchTo(old);
		active++;
	}
	medallion_bgw_xact_commit();
}

/*
 * One pass over the pipelines: start the due ones, return the time of the
 * next due one.
 */
static TimestampTz
schedule_pass(uint64 wake_count)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = TimestampTzPlusMilliseconds(now, SCHEDULER_MAX_NAP_MS);
	List	   *due = NIL;
	ListCell   *lc;
	ArrayBuildState *idle_names;
	List	   *rows;

	medallion_bgw_xact_begin();
	rows = medallion_catalog_query("SELECT name, state, circuit_opened_at, "
								   "retry_at, trigger_requested, "
								   "CASE WHEN schedule_kind OPERATOR(pg_catalog.=) 'interval'::pg_catalog.text "
								   "  THEN pg_catalog.date_part('epoch'::pg_catalog.text, schedule::pg_catalog.interval) END, "
								   "schedule_kind, owner::pg_catalog.text, "
								   "options OPERATOR(pg_catalog.->>) 'breaker_cooldown'::pg_catalog.text "
								   "FROM medallion.pipelines "
								   "WHERE layer OPERATOR(pg_catalog.=) ANY ('{silver,gold,source,export}'::pg_catalog.text[]) "
								   "AND (schedule_kind OPERATOR(pg_catalog.=) ANY ('{interval,on_change}'::pg_catalog.text[]) "
								   "     OR trigger_requested OR retry_at IS NOT NULL "
								   "     OR state OPERATOR(pg_catalog.=) 'circuit_open'::pg_catalog.text) "
								   "ORDER BY name",
								   0, NULL, NULL, NULL);

	/*
	 * The columns: name, state, circuit_opened_at, retry_at,
	 * trigger_requested, interval in seconds, schedule_kind, owner,
	 * breaker_cooldown.
	 */
	foreach(lc, rows)
	{
		MedallionRow *row = lfirst(lc);
		char	   *name = TextDatumGetCString(row->values[0]);
		char	   *state = TextDatumGetCString(row->values[1]);
		bool		opened = !row->nulls[2];
		bool		has_retry = !row->nulls[3];
		bool		triggered = DatumGetBool(row->values[4]);
		bool		has_interval = !row->nulls[5];
		double		every = has_interval ? DatumGetFloat8(row->values[5]) : 0;
		char	   *kind = row->nulls[6] ? NULL : TextDatumGetCString(row->values[6]);
		char	   *owner = row->nulls[7] ? NULL : TextDatumGetCString(row->values[7]);
		PipelineMemo *m = memo_for(name);
		TimestampTz when = DT_NOEND;

		if (is_running(name) || strcmp(state, "paused") == 0 || strcmp(state, "halted") == 0)
			continue;
		if (strcmp(state, "circuit_open") == 0)
			/* half-open: one trial run, after the cooldown (policy.c) */
			when = medallion_policy_trial_at(opened, DatumGetTimestampTz(row->values[2]),
											 row->nulls[8] ? NULL : TextDatumGetCString(row->values[8]));
		else if (has_retry)
			when = DatumGetTimestampTz(row->values[3]);
		else if (triggered)
			when = now;
		else if (has_interval)
			when = m->last_start == 0 ? now :
				TimestampTzPlusMilliseconds(m->last_start, (int64) (every * 1000));
		else if (kind && strcmp(kind, "on_change") == 0 && m->wake_seen != wake_count)
			when = now;

		if (when <= now)
		{
			DuePipeline *d = palloc(sizeof(DuePipeline));

			/* the tick after this one, whether this one finds work or not */
			if (has_interval && !triggered && !has_retry && strcmp(state, "circuit_open") != 0)
				next = Min(next, TimestampTzPlusMilliseconds(now, (int64) (every * 1000)));

			/*
			 * a routine check (no trigger, no retry) starts no idle worker; a
			 * trial waits for rows to try on
			 */
			d->name = name;
			d->owner = owner ? owner : "";
			d->routine = !triggered && !has_retry;
			d->memo = m;
			due = lappend(due, d);
		}
		else if (when != DT_NOEND)
			next = Min(next, when);
	}
	memos_sweep();

	idle_names = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	foreach(lc, due)
	{
		DuePipeline *d = lfirst(lc);
		PipelineMemo *m = d->memo;

		if (d->routine && m->idle && m->idle_wake == wake_count &&
			!TimestampDifferenceExceeds(m->idle_checked, now, IDLE_RECHECK_MS))
		{
			/* nothing landed since its last check: checked, without SQL */
			m->last_start = now;
			accumArrayResult(idle_names, CStringGetTextDatum(d->name), false, TEXTOID,
							 CurrentMemoryContext);
			continue;
		}
		/* its owner has its share of the run workers: when one of them ends */
		if (owner_workers(d->owner) >= medallion_max_workers_per_owner)
		{
			next = Min(next, TimestampTzPlusMilliseconds(now, 1000));
			continue;
		}
		if (d->routine && !has_pending(d->name))
		{
			m->last_start = now;
			m->wake_seen = wake_count;
			m->idle = true;
			m->idle_wake = wake_count;
			m->idle_checked = now;
			continue;
		}
		m->idle = false;
		if (start_run_worker(d->name, d->owner))
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

		/* a row held by a backfill (or a run) is skipped: never wait on it */
		(void) medallion_catalog_exec("UPDATE medallion.pipelines p SET last_checked_at = pg_catalog.now() "
									  "FROM (SELECT name FROM medallion.pipelines "
									  "      WHERE name OPERATOR(pg_catalog.=) ANY ($1) "
									  "      FOR NO KEY UPDATE SKIP LOCKED) l "
									  "WHERE p.name OPERATOR(pg_catalog.=) l.name",
									  1, types, values, NULL, SPI_OK_UPDATE);
	}
	/* webhook messages due: the delivery worker (delivery.c) */
	next = Min(next, medallion_delivery_tick(now));
	medallion_bgw_xact_commit();
	start_backfill_workers();
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

	medallion_bgw_xact_begin();
	if (OidIsValid(get_extension_oid("medallion", true)))
	{
		ErrorData	edata = {0};
		MedallionGateway gw;

		medallion_catalog_enter(&gw);
		(void) medallion_gateway_exec("UPDATE medallion.runs r SET status = 'failed', "
								   "finished_at = pg_catalog.clock_timestamp(), "
								   "error_class = 'crashed', error_message = 'the process running it ended abnormally', "
								   "sqlstate = '57P02' "
								   "WHERE r.status OPERATOR(pg_catalog.=) 'running'::pg_catalog.text "
								   "AND r.worker_pid IS NOT NULL "
								   "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a "
								   "                WHERE a.pid OPERATOR(pg_catalog.=) r.worker_pid) "
								   "RETURNING r.pipeline",
								   0, NULL, NULL, NULL, 0, SPI_OK_UPDATE_RETURNING);
		pipelines = medallion_gateway_text_column(1, TopTransactionContext);
		medallion_gateway_leave(&gw);

		edata.elevel = ERROR;
		edata.sqlerrcode = ERRCODE_CRASH_SHUTDOWN;
		edata.message = "the process running it ended abnormally";
		foreach(lc, pipelines)
		{
			ereport(LOG,
					(errmsg("run of pipeline \"%s\" marked failed",
							(char *) lfirst(lc)),
					 errdetail("The process running it ended abnormally.")));
			medallion_policy_after_failure(lfirst(lc), &edata, "crashed", true);
		}
	}
	medallion_bgw_xact_commit();
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
 * full, hourly, bronze retention, old run history, replayed DLQ rows and
 * the versions blue-green backfills kept past their time.
 */
static void
housekeeping(bool full)
{
	medallion_bgw_xact_begin();
	if (!full)
		medallion_check_freshness();
	else
	{
		Oid			types[1] = {INT4OID};
		Datum		values[1] = {Int32GetDatum(medallion_history_days)};

		(void) medallion_catalog_exec("SELECT medallion.apply_retention()",
									  0, NULL, NULL, NULL, SPI_OK_SELECT);
		(void) medallion_catalog_exec("DELETE FROM medallion.runs "
									  "WHERE status OPERATOR(pg_catalog.<>) 'running'::pg_catalog.text "
									  "AND finished_at OPERATOR(pg_catalog.<) (pg_catalog.now() "
									  "  OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => $1))",
									  1, types, values, NULL, SPI_OK_DELETE);
		medallion_backfill_housekeeping();
		(void) medallion_catalog_exec("DELETE FROM medallion.dlq WHERE reprocessed "
									  "AND reprocessed_at OPERATOR(pg_catalog.<) (pg_catalog.now() "
									  "  OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => $1))",
									  1, types, values, NULL, SPI_OK_DELETE);
	}
	medallion_bgw_xact_commit();
}

/*
 * Runs fn, logging its error and aborting its transaction: a broken
 * pipeline or a failed upkeep must not stop the scheduler.
 */
static bool
scheduler_try(void (*fn) (void *), void *arg)
{
	volatile bool ok = true;

	PG_TRY();
	{
		fn(arg);
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

static void
try_fail_orphaned_runs(void *arg)
{
	*(bool *) arg = fail_orphaned_runs();
}

static void
try_housekeeping(void *arg)
{
	housekeeping(*(bool *) arg);
}

typedef struct PassArgs
{
	uint64		wake_count;
	TimestampTz next;
} PassArgs;

static void
try_schedule_pass(void *arg)
{
	PassArgs   *a = arg;

	a->next = schedule_pass(a->wake_count);
}

/*
 * The extension is gone: give the slot back, and let the launcher leave
 * this database alone until CREATE EXTENSION.
 */
static void
leave_without_extension(void)
{
	release_slot = true;
	proc_exit(0);
}

/*
 * Entry point of a database's scheduler.
 */
void
medallion_scheduler_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	TimestampTz last_housekeeping = 0;
	TimestampTz last_freshness = 0;
	TimestampTz last_pass = 0;
	bool		orphans_checked = false;
	bool		said_idle = false;
	CatalogState state;
	char	   *version = NULL;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	/*
	 * As the bootstrap superuser: nothing a database's settings put on the
	 * path (ALTER DATABASE ... SET search_path = public, ...) may be found
	 * by its SQL, or by SQL run on its behalf.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);

	/*
	 * No extension here (any more): give back the slot a scheduler of ours
	 * had, and exit; the launcher remembers.
	 */
	state = catalog_state(&version);
	if (state == CATALOG_GONE)
	{
		LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
		my_slot = medallion_db_slot(dboid, false);
		if (my_slot && my_slot->scheduler_pid == 0)
		{
			my_slot->has_extension = false;
			if (my_slot->hold_until == 0)
				memset(my_slot, 0, sizeof(MedallionDbSlot));
		}
		LWLockRelease(medallion_shared->lock);
		proc_exit(0);
	}

	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	my_slot = medallion_db_slot(dboid, true);
	if (my_slot && my_slot->scheduler_pid != 0)
	{
		/* another one runs (the launcher prevents it): leave it be */
		LWLockRelease(medallion_shared->lock);
		proc_exit(0);
	}
	if (my_slot)
	{
		my_slot->has_extension = true;
		my_slot->scheduler_pid = MyProcPid;
		my_slot->scheduler_latch = MyLatch;
	}
	LWLockRelease(medallion_shared->lock);
	if (my_slot == NULL)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("cannot schedule pipelines in database \"%s\": every scheduler slot is taken",
						my_dbname),
				 errdetail_plural("Schedulers run in at most %d database of a cluster.",
								  "Schedulers run in at most %d databases of a cluster.",
								  MEDALLION_MAX_DATABASES, MEDALLION_MAX_DATABASES)));
		proc_exit(0);
	}
	before_shmem_exit(scheduler_detach, (Datum) 0);
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

	for (;;)
	{
		TimestampTz now;
		TimestampTz next;
		PassArgs	pass;
		long		nap;

		/* however often data lands, one pass per SCHEDULER_MIN_PASS_MS */
		now = GetCurrentTimestamp();
		if (!TimestampDifferenceExceeds(last_pass, now, SCHEDULER_MIN_PASS_MS))
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Max(1, TimestampDifferenceMilliseconds(now,
																	TimestampTzPlusMilliseconds(last_pass, SCHEDULER_MIN_PASS_MS))),
							 PG_WAIT_EXTENSION);
		last_pass = GetCurrentTimestamp();

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* the catalog must be the library's: after the update, go on */
		version = NULL;
		state = catalog_state(&version);
		if (state == CATALOG_GONE)
			leave_without_extension();
		if (state == CATALOG_OTHER_VERSION)
		{
			if (!said_idle)
				ereport(LOG,
						(errmsg("medallion scheduler of database \"%s\" idles: the extension is version %s, the library version %s",
								my_dbname, version, MEDALLION_CATALOG_VERSION),
						 errhint("Run ALTER EXTENSION medallion UPDATE.")));
			said_idle = true;
			pgstat_report_activity(STATE_IDLE, NULL);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 SCHEDULER_MAX_NAP_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		if (said_idle)
			ereport(LOG,
					(errmsg("medallion scheduler of database \"%s\" resumes: the extension is version %s",
							my_dbname, MEDALLION_CATALOG_VERSION)));
		said_idle = false;

		if (reap_workers() || !orphans_checked)
		{
			/* a worker that died mid-run leaves its run 'running' */
			bool		orphans = false;

			if (scheduler_try(try_fail_orphaned_runs, &orphans))
				orphans_checked = true;
			if (orphans)
				forget_wakes();
			/* a run changes freshness: check it soon (at most every second) */
			last_freshness = Min(last_freshness,
								 TimestampTzPlusMilliseconds(Max(TimestampTzPlusMilliseconds(last_freshness, FRESHNESS_MIN_MS),
																 GetCurrentTimestamp()),
															 -FRESHNESS_MS));
		}

		LWLockAcquire(medallion_shared->lock, LW_SHARED);
		pass.wake_count = my_slot->wake_count;
		LWLockRelease(medallion_shared->lock);

		/* a broken pipeline must not stop the others: log, retry soon */
		pass.next = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);
		(void) scheduler_try(try_schedule_pass, &pass);
		next = pass.next;

		now = GetCurrentTimestamp();
		if (TimestampDifferenceExceeds(last_freshness, now, FRESHNESS_MS))
		{
			bool		full = TimestampDifferenceExceeds(last_housekeeping, now, HOUSEKEEPING_MS);
			bool		quick = false;

			last_freshness = now;
			if (full)
				last_housekeeping = now;
			/* each its own transaction: one failing does not stop the other */
			(void) scheduler_try(try_housekeeping, &quick);
			if (full)
				(void) scheduler_try(try_housekeeping, &full);
		}
		next = Min(next, TimestampTzPlusMilliseconds(last_freshness, FRESHNESS_MS));

		nap = Max(0, (long) ((next - GetCurrentTimestamp()) / 1000));
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(nap, SCHEDULER_MAX_NAP_MS), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
