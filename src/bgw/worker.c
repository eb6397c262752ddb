/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  A run worker: performs one scheduled run of one pipeline, records it,
 *	  exits.
 *
 * It connects as the bootstrap superuser (PG15 workers can only connect as
 * LOGIN roles; pipeline owners often are not) and the run switches to the
 * pipeline's owner, as a manual run does: same code path.  It commits a
 * 'running' row first, so that a crash leaves a trace the scheduler marks
 * failed; then the run in its own transaction, in READ COMMITTED whatever
 * default_transaction_isolation says; then, on failure, the record and the
 * resilience policy (retry, circuit breaker, halt) in a new transaction.
 * Its search_path is pinned to pg_catalog, pg_temp before any SQL: as the
 * bootstrap superuser, nothing a database's settings put on the path may be
 * found.  On a catalog of another version than the library's it does
 * nothing.
 *
 * Also here, what the scheduler shares with it: a transaction of a
 * background process, and the version of the extension installed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "medallion.h"
#include "bgw/bgw.h"

/*
 * Starts a transaction of a background process, with a snapshot for its
 * statements.
 */
void
medallion_bgw_xact_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/*
 * Commits a transaction started by medallion_bgw_xact_begin().
 */
void
medallion_bgw_xact_commit(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * The version of the extension installed in this database, or NULL.
 */
char *
medallion_installed_version(void)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("medallion"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * Entry point of a run worker; bgw_extra holds the pipeline's name.
 */
void
medallion_worker_main(Datum arg)
{
	char		pipeline[BGW_EXTRALEN];
	int64		run_id;
	ErrorData  *volatile edata = NULL;
	MemoryContext cxt;
	char	   *version;
	volatile bool over_budget = false;	/* step 2 stopped by its time budget */

	strlcpy(pipeline, MyBgworkerEntry->bgw_extra, sizeof(pipeline));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "medallion run worker", PGC_USERSET, PGC_S_OVERRIDE);
	pgstat_report_appname("medallion run worker");
	cxt = AllocSetContextCreate(TopMemoryContext, "medallion worker", ALLOCSET_DEFAULT_SIZES);

	/* 1: is there anything to do?  An empty check records no run. */
	medallion_bgw_xact_begin();
	pgstat_report_activity(STATE_RUNNING, pipeline);
	version = medallion_installed_version();
	if (version == NULL || strcmp(version, MEDALLION_CATALOG_VERSION) != 0)
		run_id = 0;				/* dropped, or not updated yet */
	else
		run_id = medallion_run_begin_scheduled(pipeline, MyProcPid);
	medallion_bgw_xact_commit();
	if (run_id == 0)
		proc_exit(0);

	/* 2: the run, as a manual run does it */
	medallion_bgw_xact_begin();
	PG_TRY();
	{
		medallion_run_scheduled(pipeline, run_id, (bool *) &over_budget);
		medallion_bgw_xact_commit();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();		/* into the server log */
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();

	/* 3: a failure is recorded, and the policy of its class applied */
	if (edata)
	{
		if (edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN || ProcDiePending)
			proc_exit(1);
		medallion_bgw_xact_begin();
		medallion_run_failed_scheduled(pipeline, run_id, edata, over_budget);
		medallion_bgw_xact_commit();
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
