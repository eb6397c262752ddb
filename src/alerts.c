/*-------------------------------------------------------------------------
 *
 * alerts.c
 *	  Alerts: rows of medallion.alerts plus NOTIFY medallion_alerts, and the
 *	  freshness-SLA checks that raise and clear them.
 *
 * One open alert per (pipeline, kind): raising it again while it is open
 * does nothing, so a breach alerts once; resolving it closes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "medallion.h"

/*
 * Raises an alert unless the same one is open; notifies listeners of
 * channel medallion_alerts with a JSON payload.  Runs as the catalog owner.
 */
void
medallion_alert_raise(const char *pipeline, const char *kind, const char *message)
{
	MedallionUserContext save;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(kind);
	values[2] = CStringGetTextDatum(message);
	medallion_become_user(medallion_catalog_owner(), &save);
	SPI_connect();
	if (SPI_execute_with_args("WITH a AS (INSERT INTO medallion.alerts (pipeline, kind, message) "
							  "SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM medallion.alerts "
							  "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND kind OPERATOR(pg_catalog.=) $2 "
							  "AND resolved_at IS NULL) RETURNING *) "
							  "SELECT pg_catalog.pg_notify('medallion_alerts', pg_catalog.row_to_json(a)::pg_catalog.text) FROM a",
							  3, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not raise an alert");
	SPI_finish();
	medallion_restore_user(&save);
}

/*
 * Closes the open alert of that kind, if any.
 */
void
medallion_alert_resolve(const char *pipeline, const char *kind)
{
	MedallionUserContext save;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(kind);
	medallion_become_user(medallion_catalog_owner(), &save);
	SPI_connect();
	if (SPI_execute_with_args("UPDATE medallion.alerts SET resolved_at = pg_catalog.now() "
							  "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND kind OPERATOR(pg_catalog.=) $2 "
							  "AND resolved_at IS NULL",
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not resolve an alert");
	SPI_finish();
	medallion_restore_user(&save);
}

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

	SPI_connect();
	if (SPI_execute("SELECT f.pipeline, f.status, pg_catalog.format('lag %s exceeds the freshness SLA of %s', f.lag, f.sla) "
					"FROM medallion.freshness f WHERE f.sla IS NOT NULL",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read medallion.freshness");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *name = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		char	   *status = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		MemoryContext old = MemoryContextSwitchTo(CurTransactionContext);

		if (strcmp(status, "breached") == 0)
			breached = lappend(breached, list_make2(pstrdup(name),
													pstrdup(SPI_getvalue(tup, SPI_tuptable->tupdesc, 3))));
		else
			fresh = lappend(fresh, pstrdup(name));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
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
	if (!medallion_pipeline_lookup(text_to_cstring(PG_GETARG_TEXT_PP(0)), &p, false, false, NULL) ||
		strcmp(p.layer, "silver") != 0)
		PG_RETURN_NULL();
	oldest = medallion_silver_oldest_pending(&p);
	if (oldest == 0)
		PG_RETURN_DATUM(DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
											TimestampTzGetDatum(GetCurrentTransactionStartTimestamp())));
	PG_RETURN_DATUM(DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
										TimestampTzGetDatum(oldest)));
}
