/*-------------------------------------------------------------------------
 *
 * hooks.c
 *	  What ordinary backends do for the background processes: the wake-ups
 *	  sent at commit, and the commands that need a scheduler out of the way.
 *
 * A scheduler connected to a database makes DROP DATABASE (and CREATE
 * DATABASE ... TEMPLATE, ALTER DATABASE ... RENAME or SET TABLESPACE) fail:
 * it is stopped first and the launcher held off until the command is over,
 * but only for a caller who may run the command (DROP DATABASE: from the
 * object access hook, which dropdb calls after its ownership check; the
 * others: the same checks, made before).  DROP EXTENSION medallion stops
 * the scheduler too, until its transaction ends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "medallion.h"
#include "bgw/bgw.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

/* Databases whose data landed in this transaction: woken at commit. */
static List *pending_wakes = NIL;
/* CREATE EXTENSION in this transaction: the launcher is woken at commit. */
static bool pending_launcher_wake = false;
/* The database held by DROP DATABASE (object access hook), until it ends. */
static Oid	dropdb_held = InvalidOid;
/* DROP EXTENSION in this transaction: its scheduler is held off until the end. */
static Oid	pending_release = InvalidOid;
static bool xact_callback_registered = false;

/*
 * At the end of a transaction: once committed, the wake-ups it asked for
 * are sent; committed or not, a scheduler it held off (DROP EXTENSION) may
 * start again.
 */
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
			medallion_wake_launcher_for(MyDatabaseId);
		medallion_scheduler_release(release);
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
	{
		list_free(pending_wakes);
		pending_wakes = NIL;
		pending_launcher_wake = false;
		pending_release = InvalidOid;
		medallion_scheduler_release(release);
	}
}

/*
 * Registers wake_at_commit() once per backend.
 */
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
 * CREATEDB, as CREATE/ALTER DATABASE check it.  PostgreSQL's own
 * have_createdb_privilege() is exported only by later 15.x releases.
 */
static bool
may_create_databases(void)
{
	HeapTuple	tup;
	bool		result;

	if (superuser())
		return true;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
	if (!HeapTupleIsValid(tup))
		return false;
	result = ((Form_pg_authid) GETSTRUCT(tup))->rolcreatedb;
	ReleaseSysCache(tup);
	return result;
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
	if (need_createdb && !may_create_databases())
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

	if (!OidIsValid(dboid) || !may_create_databases())
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
		dropdb_held = medallion_scheduler_stop(objectId);
}

static void
medallion_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						 ProcessUtilityContext context, ParamListInfo params,
						 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	volatile Oid held = InvalidOid;
	volatile bool created = false;

	/* the pipelines of a role dropped, or whose objects are (ops/ownership.c) */
	medallion_ownership_before_utility(stmt);

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
				held = medallion_scheduler_stop(template_if_allowed(defGetString(d)));
		}
	}
	else if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
		held = medallion_scheduler_stop(database_if_owner(((RenameStmt *) stmt)->subname, true));
	else if (IsA(stmt, AlterDatabaseStmt))
	{
		ListCell   *lc;

		/* ALTER DATABASE ... SET TABLESPACE fails while anyone is connected too */
		foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
				held = medallion_scheduler_stop(database_if_owner(((AlterDatabaseStmt *) stmt)->dbname,
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
					pending_release = medallion_scheduler_stop(MyDatabaseId);
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
		medallion_scheduler_release(held);
		if (IsA(stmt, DropdbStmt))
		{
			medallion_scheduler_release(dropdb_held);
			dropdb_held = InvalidOid;
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	/* a dropped database's slot is forgotten by the launcher */
	dropdb_held = InvalidOid;
	medallion_scheduler_release(held);
	medallion_ownership_after_utility(stmt);

	/* a new database (a copy of one with the extension?): the launcher looks now */
	if (created && medallion_shared != NULL)
		medallion_nudge_launcher();
}

/*
 * Installs the utility and object access hooks; with
 * shared_preload_libraries only.
 */
void
medallion_hooks_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = medallion_ProcessUtility;
	prev_object_access_hook = object_access_hook;
	object_access_hook = medallion_object_access;
}

/*
 * medallion.extension_changed(): CREATE EXTENSION (and ALTER EXTENSION
 * UPDATE) tell the launcher and this database's scheduler, once committed
 * (a scheduler started earlier would not see the extension, or would idle
 * on the old version until its next look).  Not for PUBLIC: each call made
 * the launcher look at every database.
 */
PG_FUNCTION_INFO_V1(medallion_extension_changed);

Datum
medallion_extension_changed(PG_FUNCTION_ARGS)
{
	if (medallion_shared == NULL)
		PG_RETURN_VOID();
	medallion_wake_scheduler_at_commit();
	pending_launcher_wake = true;
	PG_RETURN_VOID();
}
