/*-------------------------------------------------------------------------
 *
 * delivery.c
 *	  The delivery worker: sends the due messages of the webhook outbox
 *	  (medallion.alert_deliveries), then exits; and the scheduler's side,
 *	  which starts it.
 *
 * A database's scheduler starts at most one delivery worker at a time,
 * when a message is due (the transaction that queued it woke the scheduler
 * at commit; a retry's time is the scheduler's next wake-up).  The worker
 * does not count toward medallion.max_workers: it runs no pipeline.  Each
 * message is sent in a transaction of its own and its outcome recorded in
 * another, so a slow or failing receiver delays only its own message, and
 * never the scheduler's loop nor the transaction that raised the alert.
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
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "bgw/bgw.h"

/* Messages read from the outbox at a time. */
#define DELIVERY_BATCH 20

/* The scheduler's delivery worker, if it started one (scheduler process only). */
static BackgroundWorkerHandle *delivery_worker = NULL;

/*
 * Scheduler side, inside its pass's transaction: starts the delivery
 * worker when a message is due and none runs; returns when to look again
 * (DT_NOEND: when woken, e.g. by the worker's exit or a new message).
 */
TimestampTz
medallion_delivery_tick(TimestampTz now)
{
	pid_t		pid;
	TimestampTz next;

	if (delivery_worker != NULL)
	{
		if (GetBackgroundWorkerPid(delivery_worker, &pid) != BGWH_STOPPED)
			return DT_NOEND;	/* its exit wakes the scheduler */
		pfree(delivery_worker);
		delivery_worker = NULL;
	}
	next = medallion_webhook_next_due();
	if (next > now)
		return next;
	if (!medallion_start_worker("medallion_delivery_main", "medallion delivery worker",
								"medallion delivery worker", MyDatabaseId, NULL, &delivery_worker))
	{
		delivery_worker = NULL;
		/* no free slot: soon again */
		return TimestampTzPlusMilliseconds(now, 1000);
	}
	return DT_NOEND;
}

/*
 * Scheduler side, at its exit: the delivery worker goes with it (it holds a
 * connection to the database, as run workers do).
 */
void
medallion_delivery_terminate(void)
{
	if (delivery_worker != NULL)
		TerminateBackgroundWorker(delivery_worker);
}

/* Whether the scheduler's delivery worker still runs. */
bool
medallion_delivery_alive(void)
{
	pid_t		pid;

	return delivery_worker != NULL &&
		GetBackgroundWorkerPid(delivery_worker, &pid) != BGWH_STOPPED;
}

/*
 * Entry point of a delivery worker; its argument is the database's OID.
 */
void
medallion_delivery_main(Datum arg)
{
	MemoryContext cxt;
	char	   *version;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("application_name", "medallion delivery worker", PGC_USERSET, PGC_S_OVERRIDE);
	pgstat_report_appname("medallion delivery worker");
	cxt = AllocSetContextCreate(TopMemoryContext, "medallion delivery", ALLOCSET_DEFAULT_SIZES);

	medallion_bgw_xact_begin();
	version = medallion_installed_version();
	if (version == NULL || strcmp(version, MEDALLION_CATALOG_VERSION) != 0)
	{
		medallion_bgw_xact_commit();
		proc_exit(0);
	}
	medallion_bgw_xact_commit();

	for (;;)
	{
		List	   *due;
		ListCell   *lc;

		MemoryContextReset(cxt);
		medallion_bgw_xact_begin();
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			due = medallion_webhook_due(DELIVERY_BATCH);
			MemoryContextSwitchTo(old);
		}
		medallion_bgw_xact_commit();
		if (due == NIL)
			break;

		foreach(lc, due)
		{
			WebhookDelivery *d = lfirst(lc);
			char	   *volatile error = NULL;

			CHECK_FOR_INTERRUPTS();
			/* not the URL: a webhook's URL often holds its secret */
			pgstat_report_activity(STATE_RUNNING, psprintf("webhook message " INT64_FORMAT, d->id));
			medallion_bgw_xact_begin();
			PG_TRY();
			{
				medallion_webhook_send(d);
				medallion_bgw_xact_commit();
			}
			PG_CATCH();
			{
				ErrorData  *edata;

				MemoryContextSwitchTo(cxt);
				edata = CopyErrorData();
				FlushErrorState();
				AbortCurrentTransaction();
				if (edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN || ProcDiePending)
					proc_exit(1);
				error = edata->detail ? psprintf("%s: %s", edata->message, edata->detail) :
					edata->message;
			}
			PG_END_TRY();

			medallion_bgw_xact_begin();
			medallion_webhook_record(d->id, error);
			medallion_bgw_xact_commit();
		}
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
