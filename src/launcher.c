/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The cluster-wide launcher: one scheduler per database where the
 *	  extension is installed, kept alive.
 *
 * The launcher can read only shared catalogs, so it cannot see which
 * databases have the extension: it starts a scheduler in every database
 * that accepts connections; a scheduler that finds no extension exits at
 * once and is not started again until CREATE EXTENSION wakes the launcher
 * (or, as a safety net, a slow probe every few minutes).  No per-database
 * setting is needed.  On a standby everything idles until promotion.
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

/* How often databases without the extension are probed again. */
#define ABSENT_PROBE_MS (5 * 60 * 1000)
#define LAUNCHER_NAP_MS (10 * 1000)
#define RESTART_MS (10 * 1000)

/*
 * Registers the launcher; called from _PG_init under shared_preload_libraries.
 */
void
medallion_launcher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "medallion");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "medallion_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "medallion launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "medallion launcher");
	RegisterBackgroundWorker(&worker);
}

static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	medallion_shared->launcher_pid = 0;
	medallion_shared->launcher_latch = NULL;
	LWLockRelease(medallion_shared->lock);
}

/* A scheduler this launcher started. */
typedef struct StartedScheduler
{
	Oid			dboid;
	pid_t		pid;
	BackgroundWorkerHandle *handle;
} StartedScheduler;

static List *started = NIL;		/* of StartedScheduler *, in TopMemoryContext */

/*
 * Forgets the schedulers that ended.  A scheduler clears its slot when it
 * exits, but it may exit (no extension there) before the launcher has
 * recorded its pid: the launcher clears what it recorded, or the slot
 * would keep a dead pid and never get a scheduler again.
 */
static void
reap_schedulers(void)
{
	ListCell   *lc;

	foreach(lc, started)
	{
		StartedScheduler *s = lfirst(lc);
		pid_t		pid;

		if (GetBackgroundWorkerPid(s->handle, &pid) != BGWH_STOPPED)
			continue;
		LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
		{
			MedallionDbSlot *slot = medallion_db_slot(s->dboid, false);

			if (slot && slot->scheduler_pid == s->pid)
			{
				slot->scheduler_pid = 0;
				slot->scheduler_latch = NULL;
			}
		}
		LWLockRelease(medallion_shared->lock);
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
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	MemoryContext old;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "medallion");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "medallion_scheduler_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "medallion scheduler %s", dbname);
	snprintf(worker.bgw_type, BGW_MAXLEN, "medallion scheduler");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		MemoryContextSwitchTo(old);
		ereport(LOG,
				(errmsg("medallion launcher could not start a scheduler for database \"%s\": no free background worker slot",
						dbname),
				 errhint("Raise max_worker_processes.")));
		return;
	}
	MemoryContextSwitchTo(old);
	if (WaitForBackgroundWorkerStartup(handle, &pid) == BGWH_STARTED)
	{
		StartedScheduler *s;

		LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
		{
			MedallionDbSlot *slot = medallion_db_slot(dboid, true);

			if (slot && slot->scheduler_pid == 0)
				slot->scheduler_pid = pid;
		}
		LWLockRelease(medallion_shared->lock);
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
 * One pass: start the schedulers that should run and do not.
 */
static void
launcher_pass(MemoryContext cxt)
{
	List	   *dbs;
	ListCell   *lc;
	bool		rescan;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	reap_schedulers();
	MemoryContextReset(cxt);
	MemoryContextSwitchTo(cxt);
	dbs = list_databases();

	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	rescan = medallion_shared->rescan;
	medallion_shared->rescan = false;
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

	foreach(lc, dbs)
	{
		DbEntry    *e = lfirst(lc);
		MedallionDbSlot *slot;
		bool		start = false;

		LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
		slot = medallion_db_slot(e->oid, true);
		if (slot && slot->scheduler_pid == 0 && slot->hold_until <= now)
		{
			bool		was_absent = slot->extension_absent;

			if (rescan)
				slot->extension_absent = false;
			start = !slot->extension_absent ||
				TimestampDifferenceExceeds(slot->absent_since, now, ABSENT_PROBE_MS);
			/* a scheduler that failed is restarted after a pause: no crash loops */
			if (!was_absent && !TimestampDifferenceExceeds(slot->last_start, now, RESTART_MS))
				start = false;
			if (start)
				slot->last_start = now;
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

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (RecoveryInProgress())
			nap = 5000;			/* a standby: wait for promotion */
		else
			launcher_pass(cxt);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
