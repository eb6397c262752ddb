/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The cluster-wide launcher: one scheduler per database where the
 *	  extension is installed, kept alive.
 *
 * The launcher can read only shared catalogs, so it cannot see which
 * databases have the extension: it starts a scheduler in every database
 * that accepts connections; a scheduler that finds no extension exits at
 * once without taking a slot, and the launcher remembers the database (in
 * its own memory) and leaves it alone until CREATE EXTENSION there wakes it
 * (or, as a safety net, a slow probe every few minutes).  No per-database
 * setting is needed.  The launcher makes at most one pass a second, however
 * often it is woken; it stops a scheduler when a backend asks (DROP
 * DATABASE and the like).  On a standby everything idles until promotion.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "bgw/bgw.h"

/* How often databases without the extension are probed again. */
#define ABSENT_PROBE_MS (5 * 60 * 1000)
#define LAUNCHER_NAP_MS (10 * 1000)
#define RESTART_MS (10 * 1000)
#define MIN_PASS_MS 1000		/* passes, however often woken */
#define MIN_RESCAN_MS (10 * 1000)	/* looks at every database again */

/* A scheduler this launcher started. */
typedef struct StartedScheduler
{
	Oid			dboid;
	pid_t		pid;
	BackgroundWorkerHandle *handle;
} StartedScheduler;

static List *started = NIL;		/* of StartedScheduler *, in TopMemoryContext */

/*
 * The launcher leaves: its schedulers go with it (only it holds their
 * handles, so only it can stop one on request); the next launcher starts
 * them again.
 */
static void
launcher_detach(int code, Datum arg)
{
	ListCell   *lc;

	foreach(lc, started)
		TerminateBackgroundWorker(((StartedScheduler *) lfirst(lc))->handle);
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	medallion_shared->launcher_pid = 0;
	medallion_shared->launcher_latch = NULL;
	LWLockRelease(medallion_shared->lock);
}

/* A database whose scheduler found no extension (or no free slot). */
typedef struct AbsentDb
{
	Oid			dboid;
	TimestampTz since;
} AbsentDb;

static List *absent = NIL;		/* of AbsentDb *, in TopMemoryContext */

static AbsentDb *
absent_find(Oid dboid)
{
	ListCell   *lc;

	foreach(lc, absent)
		if (((AbsentDb *) lfirst(lc))->dboid == dboid)
			return lfirst(lc);
	return NULL;
}

static void
absent_forget(Oid dboid)
{
	ListCell   *lc;

	foreach(lc, absent)
		if (((AbsentDb *) lfirst(lc))->dboid == dboid)
		{
			pfree(lfirst(lc));
			absent = foreach_delete_current(absent, lc);
		}
}

static void
absent_remember(Oid dboid, TimestampTz now)
{
	AbsentDb   *a = absent_find(dboid);
	MemoryContext old;

	if (a == NULL)
	{
		a = MemoryContextAlloc(TopMemoryContext, sizeof(AbsentDb));
		a->dboid = dboid;
		old = MemoryContextSwitchTo(TopMemoryContext);
		absent = lappend(absent, a);
		MemoryContextSwitchTo(old);
	}
	a->since = now;
}

static StartedScheduler *
started_for(Oid dboid)
{
	ListCell   *lc;

	foreach(lc, started)
		if (((StartedScheduler *) lfirst(lc))->dboid == dboid)
			return lfirst(lc);
	return NULL;
}

/*
 * Forgets the schedulers that ended.  A scheduler clears its slot when it
 * exits, but is still connected to its database for a moment: the process
 * is gone only when the postmaster says so, here, and a backend waiting for
 * it (medallion_scheduler_stop) is told.  One that left no slot found no
 * extension (or no free slot): its database is remembered as such.
 */
static void
reap_schedulers(void)
{
	ListCell   *lc;

	foreach(lc, started)
	{
		StartedScheduler *s = lfirst(lc);
		pid_t		pid;

		MedallionDbSlot *slot;
		bool		has_extension = false;

		if (GetBackgroundWorkerPid(s->handle, &pid) != BGWH_STOPPED)
			continue;
		LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
		slot = medallion_db_slot(s->dboid, false);
		if (slot)
		{
			has_extension = slot->has_extension;
			if (slot->scheduler_pid == s->pid)
			{
				/* it died without clearing its slot */
				slot->scheduler_pid = 0;
				slot->scheduler_latch = NULL;
			}
			slot->reaped_pid = s->pid;
		}
		LWLockRelease(medallion_shared->lock);
		/* a backend may wait for it to be out of the database (DROP DATABASE) */
		ConditionVariableBroadcast(&medallion_shared->scheduler_gone);
		if (has_extension)
			absent_forget(s->dboid);
		else
			absent_remember(s->dboid, GetCurrentTimestamp());
		started = foreach_delete_current(started, lc);
		pfree(s->handle);
		pfree(s);
	}
}

/*
 * Starts the scheduler of one database.
 */
static void
start_scheduler(Oid dboid, const char *dbname)
{
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	MemoryContext old;
	char		name[BGW_MAXLEN];

	snprintf(name, sizeof(name), "medallion scheduler %s", dbname);
	if (!medallion_start_worker("medallion_scheduler_main", "medallion scheduler", name,
								dboid, NULL, &handle))
	{
		ereport(LOG,
				(errmsg("could not start a scheduler for database \"%s\": no free background worker slot",
						dbname),
				 errhint("You might need to increase \"%s\".", "max_worker_processes")));
		return;
	}
	if (WaitForBackgroundWorkerStartup(handle, &pid) == BGWH_STARTED)
	{
		StartedScheduler *s;

		s = MemoryContextAlloc(TopMemoryContext, sizeof(StartedScheduler));
		s->dboid = dboid;
		s->pid = pid;
		s->handle = handle;
		old = MemoryContextSwitchTo(TopMemoryContext);
		started = lappend(started, s);
		MemoryContextSwitchTo(old);
	}
	else
		pfree(handle);
}

typedef struct DbEntry
{
	Oid			oid;
	char		name[NAMEDATALEN];
} DbEntry;

/*
 * The databases a scheduler may connect to.
 */
static List *
list_databases(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext caller = CurrentMemoryContext;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;
		DbEntry    *e;

		if (!db->datallowconn || db->datistemplate)
			continue;
		old = MemoryContextSwitchTo(caller);
		e = palloc(sizeof(DbEntry));
		e->oid = db->oid;
		strlcpy(e->name, NameStr(db->datname), NAMEDATALEN);
		dbs = lappend(dbs, e);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

/*
 * Stops the schedulers that backends asked to stop (DROP DATABASE and the
 * like): this process started them.
 */
static void
stop_requested_schedulers(void)
{
	int			i;

	for (i = 0; i < MEDALLION_MAX_DATABASES; i++)
	{
		MedallionDbSlot *slot = &medallion_shared->dbs[i];
		Oid			dboid = InvalidOid;
		pid_t		pid = 0;
		StartedScheduler *s;

		LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
		if (slot->stop_requested)
		{
			slot->stop_requested = false;
			dboid = slot->dboid;
			pid = slot->scheduler_pid;
		}
		LWLockRelease(medallion_shared->lock);
		if (pid == 0)
			continue;
		/* one started by the launcher before this one went with it */
		s = started_for(dboid);
		if (s && s->pid == pid)
			TerminateBackgroundWorker(s->handle);
	}
}

/*
 * One pass: start the schedulers that should run and do not.
 */
static void
launcher_pass(MemoryContext cxt)
{
	static TimestampTz last_rescan = 0;
	List	   *dbs;
	ListCell   *lc;
	bool		rescan;
	Oid			probes[MEDALLION_MAX_PROBES];
	int			nprobes;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	MemoryContextReset(cxt);
	MemoryContextSwitchTo(cxt);
	dbs = list_databases();

	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	/* looking at every database again is rate-limited: it forks a process each */
	rescan = medallion_shared->rescan &&
		TimestampDifferenceExceeds(last_rescan, now, MIN_RESCAN_MS);
	if (rescan)
		medallion_shared->rescan = false;
	nprobes = medallion_shared->nprobes;
	memcpy(probes, medallion_shared->probes, sizeof(Oid) * nprobes);
	medallion_shared->nprobes = 0;
	/* forget databases that are gone */
	for (i = 0; i < MEDALLION_MAX_DATABASES; i++)
	{
		MedallionDbSlot *s = &medallion_shared->dbs[i];
		bool		exists = false;

		if (s->dboid == InvalidOid || s->scheduler_pid != 0)
			continue;
		foreach(lc, dbs)
			if (((DbEntry *) lfirst(lc))->oid == s->dboid)
				exists = true;
		if (!exists)
			memset(s, 0, sizeof(MedallionDbSlot));
	}
	LWLockRelease(medallion_shared->lock);

	if (rescan)
	{
		last_rescan = now;
		list_free_deep(absent);
		absent = NIL;
	}
	for (i = 0; i < nprobes; i++)
		absent_forget(probes[i]);

	foreach(lc, dbs)
	{
		DbEntry    *e = lfirst(lc);
		MedallionDbSlot *slot;
		bool		start = false;

		if (started_for(e->oid))
			continue;			/* starting, or running */
		LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
		slot = medallion_db_slot(e->oid, false);
		if (slot && slot->hold_until > now)
			start = false;
		else if (slot && slot->has_extension)
		{
			/* a scheduler that failed is restarted after a pause: no crash loops */
			start = slot->scheduler_pid == 0 &&
				(slot->last_start == 0 ||
				 TimestampDifferenceExceeds(slot->last_start, now, RESTART_MS));
			if (start)
				slot->last_start = now;
		}
		else
		{
			AbsentDb   *a = absent_find(e->oid);

			/* a slot left by a hold that timed out is given back */
			if (slot && slot->scheduler_pid == 0)
				memset(slot, 0, sizeof(MedallionDbSlot));
			start = (a == NULL || TimestampDifferenceExceeds(a->since, now, ABSENT_PROBE_MS));
		}
		LWLockRelease(medallion_shared->lock);
		if (start)
			start_scheduler(e->oid, e->name);
	}
	MemoryContextSwitchTo(TopMemoryContext);
}

/*
 * Entry point of the launcher.
 */
void
medallion_launcher_main(Datum arg)
{
	MemoryContext cxt;
	TimestampTz last_pass = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	medallion_shared->launcher_pid = MyProcPid;
	medallion_shared->launcher_latch = MyLatch;
	medallion_shared->rescan = true;
	LWLockRelease(medallion_shared->lock);
	before_shmem_exit(launcher_detach, (Datum) 0);

	cxt = AllocSetContextCreate(TopMemoryContext, "medallion launcher", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		nap = LAUNCHER_NAP_MS;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (RecoveryInProgress())
			nap = 5000;			/* a standby: wait for promotion */
		else
		{
			/* a backend waits on these: at once, whatever the pass rate */
			stop_requested_schedulers();
			reap_schedulers();
			now = GetCurrentTimestamp();
			if (TimestampDifferenceExceeds(last_pass, now, MIN_PASS_MS))
			{
				last_pass = now;
				launcher_pass(cxt);
			}
			else
				nap = Max(1, TimestampDifferenceMilliseconds(now,
															 TimestampTzPlusMilliseconds(last_pass, MIN_PASS_MS)));
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
