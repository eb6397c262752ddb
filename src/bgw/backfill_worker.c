/*-------------------------------------------------------------------------
 *
 * backfill_worker.c
 *	  The background worker of an asynchronous backfill: its days, one
 *	  transaction each, until none is left.
 *
 * Started by the scheduler for a 'running' backfill with days not done and
 * no worker; its application_name ("medallion backfill <run id>") is how
 * schedulers tell that the run has one, and how many run in the cluster
 * (medallion.max_backfills).  Killed, it leaves its run 'running' with the
 * days not done: the next scheduler pass starts another worker, which
 * resumes there.  An error records the run failed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "medallion.h"
#include "bgw/bgw.h"

PGDLLEXPORT void medallion_backfill_worker_main(Datum arg);

void
medallion_backfill_worker_main(Datum arg)
{
	int64		run_id;
	char	   *name;
	MemoryContext cxt;
	volatile bool more = true;

	run_id = strtoi64(MyBgworkerEntry->bgw_extra, NULL, 10);
	name = psprintf("medallion backfill %lld", (long long) run_id);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", name, PGC_USERSET, PGC_S_OVERRIDE);
	pgstat_report_appname(name);
	cxt = AllocSetContextCreate(TopMemoryContext, "medallion backfill worker", ALLOCSET_DEFAULT_SIZES);

	while (more)
	{
		ErrorData  *volatile edata = NULL;
		char	   *version;

		CHECK_FOR_INTERRUPTS();
		medallion_bgw_xact_begin();
		pgstat_report_activity(STATE_RUNNING, name);
		version = medallion_installed_version();
		if (version == NULL || strcmp(version, MEDALLION_CATALOG_VERSION) != 0)
		{
			medallion_bgw_xact_commit();
			break;
		}
		PG_TRY();
		{
			more = medallion_backfill_async_day(run_id);
			medallion_bgw_xact_commit();
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			EmitErrorReport();
			edata = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
		}
		PG_END_TRY();
		if (edata)
		{
			if (edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN || ProcDiePending)
				proc_exit(1);
			medallion_bgw_xact_begin();
			medallion_backfill_async_failed(run_id, edata);
			medallion_bgw_xact_commit();
			break;
		}
		MemoryContextReset(cxt);
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
