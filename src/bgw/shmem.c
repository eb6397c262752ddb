/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared state of medallion's background processes, and the wake-ups
 *	  between them.
 *
 * One slot per database whose scheduler found the extension there (at most
 * MEDALLION_MAX_DATABASES): its pid and latch, and a wake counter that
 * ingestion bumps after commit for 'on_change' pipelines.  The launcher
 * learns of CREATE EXTENSION here too.
 *
 * A scheduler connected to a database makes DROP DATABASE (and CREATE
 * DATABASE ... TEMPLATE, ALTER DATABASE ... RENAME or SET TABLESPACE) fail:
 * it is stopped first and the launcher held off until the command is over,
 * but only for a caller who may run the command (DROP DATABASE: from the
 * object access hook, which dropdb calls after its ownership check; the
 * others: the same checks, made before).  The backend asks the launcher,
 * which started the scheduler, and waits on a condition variable.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "medallion.h"

MedallionShared *medallion_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

/* How long a backend waits for a scheduler to stop. */
#define STOP_WAIT_MS 10000

/* Databases whose data landed in this transaction: woken at commit. */
static List *pending_wakes = NIL;
/* CREATE EXTENSION in this transaction: the launcher is woken at commit. */
static bool pending_launcher_wake = false;
/* The database held by DROP DATABASE (object access hook), until it ends. */
static Oid	dropdb_held = InvalidOid;
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
		ConditionVariableInit(&medallion_shared->scheduler_gone);
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
 * Whether a database has, or can get, a scheduler slot: false when every
 * slot is taken by other databases (schedule() and trigger() warn).
 */
bool
medallion_db_slot_available(Oid dboid)
{
	bool		available = false;
	int			i;

	if (medallion_shared == NULL)
		return true;
	LWLockAcquire(medallion_shared->lock, LW_SHARED);
	for (i = 0; i < MEDALLION_MAX_DATABASES && !available; i++)
	{
		MedallionDbSlot *s = &medallion_shared->dbs[i];

		if (s->dboid == dboid || s->dboid == InvalidOid)
			available = true;
	}
	LWLockRelease(medallion_shared->lock);
	return available;
}

/*
 * Wakes the launcher to look at every database again.
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
 * Wakes the launcher to start a scheduler in one database (the extension
 * was created there); with too many such requests at once, every database.
 */
static void
wake_launcher_for(Oid dboid)
{
	Latch	   *latch = NULL;
	int			i;
	bool		known = false;

	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < medallion_shared->nprobes; i++)
		if (medallion_shared->probes[i] == dboid)
			known = true;
	if (!known)
	{
		if (medallion_shared->nprobes < MEDALLION_MAX_PROBES)
			medallion_shared->probes[medallion_shared->nprobes++] = dboid;
		else
			medallion_shared->rescan = true;
	}
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
			wake_launcher_for(MyDatabaseId);
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
 * DATABASE and the like, which fail while anyone is connected.  The
 * launcher, which started it, is asked to stop it; this backend waits on
 * the condition variable its slot is cleared under, for a while.  Returns
 * the database held, or InvalidOid.
 */
static Oid
stop_scheduler_of_oid(Oid dboid)
{
	MedallionDbSlot *slot;
	pid_t		pid = 0;
	Latch	   *launcher = NULL;
	TimestampTz deadline;

	if (!OidIsValid(dboid) || medallion_shared == NULL)
		return InvalidOid;
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	slot = medallion_db_slot(dboid, true);
	if (slot)
	{
		/* released after the command or transaction; the time is a safety net */
		slot->hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 60000);
		pid = slot->scheduler_pid;
		if (pid != 0)
		{
			slot->stop_requested = true;
			launcher = medallion_shared->launcher_latch;
		}
	}
	LWLockRelease(medallion_shared->lock);
	if (slot == NULL)
		return InvalidOid;
	if (pid == 0)
		return dboid;

	if (launcher)
		SetLatch(launcher);
	else
		kill(pid, SIGTERM);		/* no launcher (it is restarting) */

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), STOP_WAIT_MS);
	ConditionVariablePrepareToSleep(&medallion_shared->scheduler_gone);
	for (;;)
	{
		bool		gone;
		long		left;

		LWLockAcquire(medallion_shared->lock, LW_SHARED);
		gone = (slot->dboid != dboid || slot->scheduler_pid != pid);
		LWLockRelease(medallion_shared->lock);
		if (gone)
			break;
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0 ||
			ConditionVariableTimedSleep(&medallion_shared->scheduler_gone, left, PG_WAIT_EXTENSION))
			break;
	}
	ConditionVariableCancelSleep();
	return dboid;
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
		slot->stop_requested = false;
		slot->last_start = 0;	/* stopped on purpose: no restart delay */
		/* a slot taken only to hold the database off is given back */
		if (!slot->has_extension && slot->scheduler_pid == 0)
			memset(slot, 0, sizeof(MedallionDbSlot));
	}
	LWLockRelease(medallion_shared->lock);
	nudge_launcher();
}

/*
 * Whether the current user may run a command that needs a database's
 * owner (ALTER DATABASE ... RENAME also CREATEDB): the same checks the
 * command makes, made first, so that a role that may not cannot stop the
 * scheduler by trying.
 */
static Oid
database_if_owner(const char *dbname, bool need_createdb)
{
	Oid			dboid = get_database_oid(dbname, true);

	if (!OidIsValid(dboid) || !pg_database_ownercheck(dboid, GetUserId()))
		return InvalidOid;
	if (need_createdb && !have_createdb_privilege())
		return InvalidOid;
	return dboid;
}

/*
 * CREATE DATABASE ... TEMPLATE: the caller needs CREATEDB, and to own the
 * template unless it is marked as one.
 */
static Oid
template_if_allowed(const char *dbname)
{
	Oid			dboid = get_database_oid(dbname, true);
	HeapTuple	tup;
	bool		istemplate = false;

	if (!OidIsValid(dboid) || !have_createdb_privilege())
		return InvalidOid;
	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	if (HeapTupleIsValid(tup))
	{
		istemplate = ((Form_pg_database) GETSTRUCT(tup))->datistemplate;
		ReleaseSysCache(tup);
	}
	if (!istemplate && !pg_database_ownercheck(dboid, GetUserId()))
		return InvalidOid;
	return dboid;
}

/*
 * DROP DATABASE calls this after its ownership check, before it looks for
 * (or, WITH (FORCE), terminates) the database's other backends.
 */
static void
medallion_object_access(ObjectAccessType access, Oid classId, Oid objectId,
						int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (access == OAT_DROP && classId == DatabaseRelationId && medallion_shared != NULL &&
		!OidIsValid(dropdb_held))
		dropdb_held = stop_scheduler_of_oid(objectId);
}

static void
medallion_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						 ProcessUtilityContext context, ParamListInfo params,
						 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	volatile Oid held = InvalidOid;
	volatile bool created = false;

	/* DROP DATABASE: in the object access hook, once dropdb has checked */
	if (IsA(stmt, DropdbStmt))
		dropdb_held = InvalidOid;
	else if (IsA(stmt, CreatedbStmt))
	{
		ListCell   *lc;

		created = true;
		foreach(lc, ((CreatedbStmt *) stmt)->options)
		{
			DefElem    *d = lfirst(lc);

			if (strcmp(d->defname, "template") == 0 && d->arg)
				held = stop_scheduler_of_oid(template_if_allowed(defGetString(d)));
		}
	}
	else if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
		held = stop_scheduler_of_oid(database_if_owner(((RenameStmt *) stmt)->subname, true));
	else if (IsA(stmt, AlterDatabaseStmt))
	{
		ListCell   *lc;

		/* ALTER DATABASE ... SET TABLESPACE fails while anyone is connected too */
		foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
				held = stop_scheduler_of_oid(database_if_owner(((AlterDatabaseStmt *) stmt)->dbname,
															   false));
	}
	else if (IsA(stmt, DropStmt) && ((DropStmt *) stmt)->removeType == OBJECT_EXTENSION &&
			 medallion_shared != NULL && !OidIsValid(pending_release))
	{
		ListCell   *lc;

		/*
		 * DROP EXTENSION medallion, by its owner: the scheduler reads what is
		 * being dropped (a deadlock): stop it first, and hold it off until
		 * the transaction ends; then the launcher finds out whether the
		 * extension is gone.
		 */
		foreach(lc, ((DropStmt *) stmt)->objects)
			if (strcmp(strVal(lfirst(lc)), "medallion") == 0)
			{
				Oid			ext = get_extension_oid("medallion", true);

				if (OidIsValid(ext) && pg_extension_ownercheck(ext, GetUserId()))
				{
					register_xact_callback();
					pending_release = stop_scheduler_of_oid(MyDatabaseId);
				}
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
		if (IsA(stmt, DropdbStmt))
		{
			release_scheduler_of(dropdb_held);
			dropdb_held = InvalidOid;
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	/* a dropped database's slot is forgotten by the launcher */
	dropdb_held = InvalidOid;
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
	prev_object_access_hook = object_access_hook;
	object_access_hook = medallion_object_access;
}

PG_FUNCTION_INFO_V1(medallion_extension_changed);
PG_FUNCTION_INFO_V1(medallion_bronze_landed);

/*
 * medallion.extension_changed(): CREATE EXTENSION (and ALTER EXTENSION
 * UPDATE) tell the launcher and this database's scheduler, once committed
 * (a scheduler started earlier would not see the extension, or would idle
 * on the old version until its next look).  Not for PUBLIC: each call made
 * the launcher look at every database.
 */
Datum
medallion_extension_changed(PG_FUNCTION_ARGS)
{
	MemoryContext old;

	if (medallion_shared == NULL)
		PG_RETURN_VOID();
	register_xact_callback();
	pending_launcher_wake = true;
	old = MemoryContextSwitchTo(TopMemoryContext);
	pending_wakes = list_append_unique_oid(pending_wakes, MyDatabaseId);
	MemoryContextSwitchTo(old);
	PG_RETURN_VOID();
}

/* Triggers (by OID) found to sit on a registered bronze table. */
#define LANDED_CACHE_SIZE 64
static Oid	landed_ok[LANDED_CACHE_SIZE];
static int	landed_nok = 0;

/*
 * Whether a relation is a bronze table medallion registered: in schema
 * bronze, with a bronze pipeline of its name.
 */
static bool
is_registered_bronze(Relation rel)
{
	Oid			bronze = get_namespace_oid("bronze", true);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	MedallionGateway gw;
	uint64		n;

	if (!OidIsValid(bronze) || RelationGetNamespace(rel) != bronze ||
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		return false;
	values[0] = CStringGetTextDatum(RelationGetRelationName(rel));
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec("SELECT 1 FROM medallion.pipelines "
							   "WHERE layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text "
							   "AND relname OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, 1, SPI_OK_SELECT);
	medallion_gateway_leave(&gw);
	return n == 1;
}

/*
 * Statement trigger on bronze tables: wake the scheduler after commit, so
 * 'on_change' pipelines run once the new rows are visible (bursts of
 * statements coalesce into one wake-up per transaction, and the scheduler
 * makes its passes at a bounded rate).  Only on a registered bronze table:
 * anyone can attach a trigger function to a table of theirs.
 */
Datum
medallion_bronze_landed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			tgoid;
	int			i;
	bool		ok = false;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("medallion.bronze_landed() must be called as a trigger")));
	tgoid = trigdata->tg_trigger->tgoid;
	for (i = 0; i < landed_nok && !ok; i++)
		ok = (landed_ok[i] == tgoid);
	if (!ok)
	{
		if (!is_registered_bronze(trigdata->tg_relation))
			ereport(ERROR,
					(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
					 errmsg("medallion.bronze_landed() fires only on bronze tables"),
					 errdetail("Table \"%s\" is not a bronze table of medallion.",
							   RelationGetRelationName(trigdata->tg_relation))));
		if (landed_nok == LANDED_CACHE_SIZE)
			landed_nok = 0;
		landed_ok[landed_nok++] = tgoid;
	}
	medallion_wake_scheduler_at_commit();
	return PointerGetDatum(NULL);
}
