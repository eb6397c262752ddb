/*-------------------------------------------------------------------------
 *
 * register.c
 *	  Registration of medallion's background processes: the launcher at
 *	  server start, and the schedulers and run workers started by their
 *	  parent process, which is notified of their start and end.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/memutils.h"

#include "medallion.h"
#include "bgw/bgw.h"

/*
 * Fills the description of one of medallion's processes: its entry point in
 * this library, its type (as pg_stat_activity shows it), its name, the
 * database it serves (InvalidOid: none) and a string for it (or NULL).
 */
static void
fill_worker(BackgroundWorker *worker, const char *function, const char *type,
			const char *name, Oid dboid, const char *extra)
{
	memset(worker, 0, sizeof(BackgroundWorker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker->bgw_library_name, "medallion", BGW_MAXLEN);
	strlcpy(worker->bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker->bgw_name, name, BGW_MAXLEN);
	strlcpy(worker->bgw_type, type, BGW_MAXLEN);
	worker->bgw_main_arg = ObjectIdGetDatum(dboid);
	if (extra)
		strlcpy(worker->bgw_extra, extra, BGW_EXTRALEN);
}

/*
 * Registers the launcher; called from _PG_init under
 * shared_preload_libraries.  The postmaster restarts it if it fails.
 */
void
medallion_launcher_register(void)
{
	BackgroundWorker worker;

	fill_worker(&worker, "medallion_launcher_main", "medallion launcher",
				"medallion launcher", InvalidOid, NULL);
	worker.bgw_restart_time = 5;
	RegisterBackgroundWorker(&worker);
}

/*
 * Starts a scheduler (from the launcher) or a run worker (from a
 * scheduler): never restarted, and this process is told when it ends.
 * Returns false when no background worker slot is free; the handle is
 * allocated in TopMemoryContext.
 */
bool
medallion_start_worker(const char *function, const char *type, const char *name,
					   Oid dboid, const char *extra, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		ok;

	fill_worker(&worker, function, type, name, dboid, extra);
	worker.bgw_notify_pid = MyProcPid;
	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, handle);
	MemoryContextSwitchTo(old);
	return ok;
}
