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
 * DATABASE ... TEMPLATE, ALTER DATABASE ... RENAME or SET TABLESPACE) fail:
 * a utility hook stops it first and holds the launcher off until the
 * command is over.
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
/* CREATE EXTENSION in this transaction: the launcher is woken at commit. */
static bool pending_launcher_wake = false;
/* DROP EXTENSION in this transaction: its scheduler is held off until the end. */
static Oid	pending_release = InvalidOid;
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
 * Whether this database is served by a scheduler: its own is running, or
 * the launcher is, which starts (or restarts) it and which it will find
 * the requests of schedule() and trigger() in the catalog.
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
	if ((slot && slot->scheduler_pid != 0) || medallion_shared->launcher_pid != 0)
		running = true;
	LWLockRelease(medallion_shared->lock);
	return running;
}

static void release_scheduler_of(Oid dboid);

static void
wake_at_commit(XactEvent event, void *arg)
{
	Oid			release = pending_release;

	if (event == XACT_EVENT_COMMIT)
	{
		List	   *wakes = pending_wakes;
		ListCell   *lc;
		bool		launcher = pending_launcher_wake;

		pending_wakes = NIL;
		pending_launcher_wake = false;
		pending_release = InvalidOid;
		foreach(lc, wakes)
			medallion_wake_scheduler(lfirst_oid(lc));
		list_free(wakes);
		if (launcher)
			medallion_wake_launcher();
		release_scheduler_of(release);
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
	{
		list_free(pending_wakes);
		pending_wakes = NIL;
		pending_launcher_wake = false;
		pending_release = InvalidOid;
		release_scheduler_of(release);
	}
}

static void
register_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_at_commit, NULL);
		xact_callback_registered = true;
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
	register_xact_callback();
	old = MemoryContextSwitchTo(TopMemoryContext);
	pending_wakes = list_append_unique_oid(pending_wakes, MyDatabaseId);
	MemoryContextSwitchTo(old);
}

/*
 * Sets the launcher's latch, without a rescan.
 */
static void
nudge_launcher(void)
{
	Latch	   *latch;

	LWLockAcquire(medallion_shared->lock, LW_SHARED);
	latch = medallion_shared->launcher_latch;
	LWLockRelease(medallion_shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Stops the scheduler of a database (and so its run workers) and keeps the
 * launcher from restarting it until release_scheduler_of(): for DROP
 * DATABASE and the like, which fail while anyone is connected.  Returns the
 * database held, or InvalidOid.
 */
static Oid
stop_scheduler_of_oid(Oid dboid)
{
	MedallionDbSlot *slot;
	pid_t		pid = 0;
	int			i;

	if (!OidIsValid(dboid) || medallion_shared == NULL)
		return InvalidOid;
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	slot = medallion_db_slot(dboid, false);
	if (slot)
	{
		/* released after the command or transaction; the time is a safety net */
		slot->hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 60000);
		pid = slot->scheduler_pid;
	}
	LWLockRelease(medallion_shared->lock);
	if (slot == NULL)
		return InvalidOid;
	if (pid == 0)
		return dboid;

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
	return dboid;
}

static Oid
stop_scheduler_of(const char *dbname)
{
	return stop_scheduler_of_oid(get_database_oid(dbname, true));
}

/*
 * The command is over (done or failed): the launcher may start the
 * database's scheduler again, if the database is still there.
 */
static void
release_scheduler_of(Oid dboid)
{
	MedallionDbSlot *slot;

	if (!OidIsValid(dboid) || medallion_shared == NULL)
		return;
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	slot = medallion_db_slot(dboid, false);
	if (slot)
	{
		slot->hold_until = 0;
		slot->last_start = 0;	/* stopped on purpose: no restart delay */
	}
	LWLockRelease(medallion_shared->lock);
	nudge_launcher();
}

static void
medallion_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						 ProcessUtilityContext context, ParamListInfo params,
						 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	volatile Oid held = InvalidOid;
	volatile bool created = false;

	if (IsA(stmt, DropdbStmt))
		held = stop_scheduler_of(((DropdbStmt *) stmt)->dbname);
	else if (IsA(stmt, CreatedbStmt))
	{
		ListCell   *lc;

		created = true;
		foreach(lc, ((CreatedbStmt *) stmt)->options)
		{
			DefElem    *d = lfirst(lc);

			if (strcmp(d->defname, "template") == 0 && d->arg)
				held = stop_scheduler_of(defGetString(d));
		}
	}
	else if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
		held = stop_scheduler_of(((RenameStmt *) stmt)->subname);
	else if (IsA(stmt, AlterDatabaseStmt))
	{
		ListCell   *lc;

		/* ALTER DATABASE ... SET TABLESPACE fails while anyone is connected too */
		foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
				held = stop_scheduler_of(((AlterDatabaseStmt *) stmt)->dbname);
	}
	else if (IsA(stmt, DropStmt) && ((DropStmt *) stmt)->removeType == OBJECT_EXTENSION &&
			 medallion_shared != NULL && !OidIsValid(pending_release))
	{
		ListCell   *lc;

		/*
		 * DROP EXTENSION medallion: the scheduler reads what is being dropped
		 * (a deadlock): stop it first, and hold it off until the transaction
		 * ends; then the launcher finds out whether the extension is gone.
		 */
		foreach(lc, ((DropStmt *) stmt)->objects)
			if (strcmp(strVal(lfirst(lc)), "medallion") == 0)
			{
				register_xact_callback();
				pending_release = stop_scheduler_of_oid(MyDatabaseId);
			}
	}

	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		release_scheduler_of(held);
		PG_RE_THROW();
	}
	PG_END_TRY();
	/* a dropped database's slot is forgotten by the launcher */
	if (!IsA(stmt, DropdbStmt))
		release_scheduler_of(held);

	/* a new database (a copy of one with the extension?): the launcher looks now */
	if (created && medallion_shared != NULL)
		nudge_launcher();
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
 * medallion.extension_changed(): CREATE EXTENSION tells the launcher, once
 * it has committed (a scheduler started earlier would not see the
 * extension, and the launcher would leave the database alone until its
 * slow probe).
 */
Datum
medallion_extension_changed(PG_FUNCTION_ARGS)
{
	if (medallion_shared == NULL)
		PG_RETURN_VOID();
	register_xact_callback();
	pending_launcher_wake = true;
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
