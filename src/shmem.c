/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared state of medallion's background processes, and the wake-ups
 *	  between them.
 *
 * One slot per database with a scheduler: its pid and latch, whether its
 * extension is absent (so the launcher does not restart it until told),
 * and a wake counter that ingestion bumps after commit for 'on_change'
 * pipelines.  The launcher learns of CREATE/DROP EXTENSION here too.
 *
 * A scheduler connected to a database makes DROP DATABASE (and CREATE
 * DATABASE ... TEMPLATE, ALTER DATABASE ... RENAME) fail: a utility hook
 * stops it first and holds the launcher off for a while.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "medallion.h"

MedallionShared *medallion_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Databases whose data landed in this transaction: woken at commit. */
static List *pending_wakes = NIL;
static bool xact_callback_registered = false;

static void
medallion_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(MedallionShared)));
	RequestNamedLWLockTranche("medallion", 1);
}

static void
medallion_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	medallion_shared = ShmemInitStruct("medallion", sizeof(MedallionShared), &found);
	if (!found)
	{
		memset(medallion_shared, 0, sizeof(MedallionShared));
		medallion_shared->lock = &(GetNamedLWLockTranche("medallion"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The slot of a database, or NULL.  Caller holds the lock.
 */
MedallionDbSlot *
medallion_db_slot(Oid dboid, bool create)
{
	int			i;
	MedallionDbSlot *free_slot = NULL;

	for (i = 0; i < MEDALLION_MAX_DATABASES; i++)
	{
		MedallionDbSlot *s = &medallion_shared->dbs[i];

		if (s->dboid == dboid)
			return s;
		if (s->dboid == InvalidOid && free_slot == NULL)
			free_slot = s;
	}
	if (create && free_slot)
	{
		memset(free_slot, 0, sizeof(MedallionDbSlot));
		free_slot->dboid = dboid;
		return free_slot;
	}
	return NULL;
}

/*
 * Wakes the launcher (CREATE or DROP EXTENSION, a scheduler to restart).
 */
void
medallion_wake_launcher(void)
{
	Latch	   *latch = NULL;

	if (medallion_shared == NULL)
		return;
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	medallion_shared->rescan = true;
	latch = medallion_shared->launcher_latch;
	LWLockRelease(medallion_shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Wakes this database's scheduler now: data landed, a run was triggered.
 */
void
medallion_wake_scheduler(Oid dboid)
{
	MedallionDbSlot *slot;
	Latch	   *latch = NULL;

	if (medallion_shared == NULL)
		return;
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	slot = medallion_db_slot(dboid, false);
	if (slot)
	{
		slot->wake_count++;
		latch = slot->scheduler_latch;
	}
	LWLockRelease(medallion_shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Whether this database has a scheduler running.
 */
bool
medallion_scheduler_running(Oid dboid)
{
	MedallionDbSlot *slot;
	bool		running = false;

	if (medallion_shared == NULL)
		return false;
	LWLockAcquire(medallion_shared->lock, LW_SHARED);
	slot = medallion_db_slot(dboid, false);
	if (slot && slot->scheduler_pid != 0)
		running = true;
	LWLockRelease(medallion_shared->lock);
	return running;
}

static void
wake_at_commit(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && pending_wakes != NIL)
	{
		List	   *wakes = pending_wakes;
		ListCell   *lc;

		pending_wakes = NIL;
		foreach(lc, wakes)
			medallion_wake_scheduler(lfirst_oid(lc));
		list_free(wakes);
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		list_free(pending_wakes);
		pending_wakes = NIL;
	}
}

/*
 * Wakes this database's scheduler when the current transaction commits:
 * 'on_change' pipelines run once the data they would read is visible.
 */
void
medallion_wake_scheduler_at_commit(void)
{
	MemoryContext old;

	if (medallion_shared == NULL)
		return;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_at_commit, NULL);
		xact_callback_registered = true;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	pending_wakes = list_append_unique_oid(pending_wakes, MyDatabaseId);
	MemoryContextSwitchTo(old);
}

/*
 * Stops the scheduler of a database (and so its run workers) and keeps the
 * launcher from restarting it for a while: for DROP DATABASE and the like,
 * which fail while anyone is connected.
 */
static void
stop_scheduler_of(const char *dbname)
{
	Oid			dboid = get_database_oid(dbname, true);
	MedallionDbSlot *slot;
	pid_t		pid = 0;
	int			i;

	if (!OidIsValid(dboid) || medallion_shared == NULL)
		return;
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	slot = medallion_db_slot(dboid, false);
	if (slot)
	{
		slot->hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 10000);
		pid = slot->scheduler_pid;
	}
	LWLockRelease(medallion_shared->lock);
	if (pid == 0)
		return;

	kill(pid, SIGTERM);
	for (i = 0; i < 500; i++)
	{
		bool		gone;

		LWLockAcquire(medallion_shared->lock, LW_SHARED);
		gone = (slot->dboid != dboid || slot->scheduler_pid != pid);
		LWLockRelease(medallion_shared->lock);
		if (gone)
			break;
		pg_usleep(10000L);
		CHECK_FOR_INTERRUPTS();
	}
}

static void
medallion_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						 ProcessUtilityContext context, ParamListInfo params,
						 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (IsA(stmt, DropdbStmt))
		stop_scheduler_of(((DropdbStmt *) stmt)->dbname);
	else if (IsA(stmt, CreatedbStmt))
	{
		ListCell   *lc;

		foreach(lc, ((CreatedbStmt *) stmt)->options)
		{
			DefElem    *d = lfirst(lc);

			if (strcmp(d->defname, "template") == 0 && d->arg)
				stop_scheduler_of(defGetString(d));
		}
	}
	else if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
		stop_scheduler_of(((RenameStmt *) stmt)->subname);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

/*
 * Installs the hooks; with shared_preload_libraries only.
 */
void
medallion_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = medallion_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = medallion_shmem_startup;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = medallion_ProcessUtility;
}

PG_FUNCTION_INFO_V1(medallion_extension_changed);
PG_FUNCTION_INFO_V1(medallion_bronze_landed);

/*
 * medallion.extension_changed(): CREATE EXTENSION tells the launcher.
 */
Datum
medallion_extension_changed(PG_FUNCTION_ARGS)
{
	medallion_wake_launcher();
	PG_RETURN_VOID();
}

/*
 * Statement trigger on bronze tables: wake the scheduler after commit, so
 * 'on_change' pipelines run once the new rows are visible (bursts of
 * statements coalesce into one wake-up per transaction).
 */
Datum
medallion_bronze_landed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("medallion.bronze_landed() must be called as a trigger")));
	medallion_wake_scheduler_at_commit();
	return PointerGetDatum(NULL);
}
