/*-------------------------------------------------------------------------
 *
 * freshness.c
 *	  Freshness: a pipeline's lag (the age of its oldest unprocessed source
 *	  row) and the freshness-SLA check that raises and resolves alerts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "ops/ops.h"

/*
 * Raises a 'freshness' alert for every pipeline breaching its SLA and
 * resolves it for those fresh again.  Called by the scheduler.
 */
void
medallion_check_freshness(void)
{
	uint64		i;
	List	   *breached = NIL;
	List	   *fresh = NIL;
	ListCell   *lc;
	MedallionGateway gw;

	medallion_catalog_enter(&gw);
	(void) medallion_gateway_exec("SELECT f.pipeline, f.status, "
								  "pg_catalog.format('lag %s exceeds the freshness SLA of %s', f.lag, f.sla) "
								  "FROM medallion.freshness f WHERE f.sla IS NOT NULL",
								  0, NULL, NULL, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *name = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		char	   *status = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		MemoryContext old = MemoryContextSwitchTo(CurTransactionContext);

		if (strcmp(status, "breached") == 0)
			breached = lappend(breached, list_make2(pstrdup(name),
													pstrdup(SPI_getvalue(tup, SPI_tuptable->tupdesc, 3))));
		else if (strcmp(status, "fresh") == 0)
			fresh = lappend(fresh, pstrdup(name));	/* not while a rebase is in progress */
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	foreach(lc, breached)
		medallion_alert_raise(linitial(lfirst(lc)), "freshness", lsecond(lfirst(lc)));
	foreach(lc, fresh)
		medallion_alert_resolve(lfirst(lc), "freshness");
}

PG_FUNCTION_INFO_V1(medallion_pipeline_lag);

/*
 * medallion.pipeline_lag(pipeline) → interval: the age of the oldest source
 * row the pipeline has not processed yet; 0 when it is caught up.
 */
Datum
medallion_pipeline_lag(PG_FUNCTION_ARGS)
{
	Pipeline	p = {0};
	TimestampTz oldest;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	/* no role to look as: unknown (the pipeline's runs are refused) */
	if (!medallion_pipeline_lookup(text_to_cstring(PG_GETARG_TEXT_PP(0)), &p, false, false, NULL) ||
		(strcmp(p.layer, "silver") != 0 && strcmp(p.layer, "gold") != 0) || !OidIsValid(p.owner))
		PG_RETURN_NULL();
	/* gold: the oldest upstream change the model has not consumed */
	oldest = strcmp(p.layer, "gold") == 0 ? medallion_gold_oldest_pending(&p) :
		medallion_silver_oldest_pending(&p);
	if (oldest == 0)
		PG_RETURN_DATUM(DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
											TimestampTzGetDatum(GetCurrentTransactionStartTimestamp())));
	PG_RETURN_DATUM(DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
										TimestampTzGetDatum(oldest)));
}
