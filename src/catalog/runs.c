/*-------------------------------------------------------------------------
 *
 * runs.c
 *	  Run records: the rows of medallion.runs a run starts and finishes.
 *
 * Every run leaves a row, written as the catalog owner through the gateway
 * (gateway.c); messages are stored capped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "medallion.h"

/*
 * Inserts a run row (as the catalog owner) and returns its id.  With a
 * reason, the run did not happen: it is finished at once, the reason in
 * error_message.
 */
static int64
insert_run(const char *pipeline, const char *kind, const char *status, int worker_pid,
		   const char *reason)
{
	MedallionGateway gw;
	Oid			argtypes[5] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = "    ";
	int64		run_id;
	bool		isnull;

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(kind);
	values[2] = CStringGetTextDatum(status);
	values[3] = Int32GetDatum(worker_pid);
	nulls[3] = worker_pid ? ' ' : 'n';
	values[4] = reason ? CStringGetTextDatum(medallion_capped_message(reason)) : (Datum) 0;
	nulls[4] = reason ? ' ' : 'n';
	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec_saved("INSERT INTO medallion.runs (pipeline, kind, status, worker_pid, attempt, "
									 "finished_at, error_message) "
									 "SELECT $1, $2, $3, $4, p.retry_attempt OPERATOR(pg_catalog.+) 1, "
									 "CASE WHEN $5 IS NOT NULL THEN pg_catalog.clock_timestamp() END, $5 "
									 "FROM medallion.pipelines p "
									 "WHERE p.name OPERATOR(pg_catalog.=) $1 RETURNING run_id",
									 5, argtypes, values, nulls, 1, SPI_OK_INSERT_RETURNING) != 1)
		elog(ERROR, "could not record a run of \"%s\"", pipeline);
	run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	medallion_gateway_leave(&gw);
	return run_id;
}

/*
 * Records a new run (as the catalog owner) and returns its id.
 */
int64
medallion_run_record_start(const char *pipeline, const char *kind, const char *status, int worker_pid)
{
	return insert_run(pipeline, kind, status, worker_pid, NULL);
}

/*
 * Records a run that did not happen, with the reason in error_message (a
 * run_all() round skips the downstream of a failed upstream); returns its id.
 */
int64
medallion_run_record_skipped(const char *pipeline, const char *kind, const char *reason)
{
	return insert_run(pipeline, kind, "skipped", 0, reason);
}

/*
 * A run's counts as the eleven values of medallion.runs' rows_read ...
 * rows_warned, then shared_blks_hit, shared_blks_read and wal_bytes, in
 * that order.
 */
void
medallion_run_counts_datums(const RunCounts *c, Datum *values)
{
	values[0] = Int64GetDatum(c->read);
	values[1] = Int64GetDatum(c->inserted);
	values[2] = Int64GetDatum(c->updated);
	values[3] = Int64GetDatum(c->unchanged);
	values[4] = Int64GetDatum(c->dlq);
	values[5] = Int64GetDatum(c->quarantined);
	values[6] = Int64GetDatum(c->dropped);
	values[7] = Int64GetDatum(c->warned);
	values[8] = Int64GetDatum(c->shared_blks_hit);
	values[9] = Int64GetDatum(c->shared_blks_read);
	values[10] = Int64GetDatum(c->wal_bytes);
}

/*
 * Records how a run ended; with edata, the failure and its class.  Without
 * counts (c NULL), the counts are 0 and what the run cost is unknown (NULL).
 */
void
medallion_run_record_finish(int64 run_id, const char *status, const RunCounts *c,
				  ErrorData *edata, const char *class)
{
	Oid			argtypes[16] = {INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID,
		INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[16];
	char		nulls[16];
	RunCounts	zero = {0};

	memset(nulls, ' ', sizeof(nulls));
	if (c == NULL)
	{
		c = &zero;
		nulls[10] = nulls[11] = nulls[12] = 'n';
	}
	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(status);
	medallion_run_counts_datums(c, &values[2]);
	if (edata)
	{
		values[13] = CStringGetTextDatum(class);
		values[14] = CStringGetTextDatum(medallion_capped_message(edata->message));
		values[15] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	}
	else
		nulls[13] = nulls[14] = nulls[15] = 'n';

	/* a 0.1.0 catalog (before ALTER EXTENSION UPDATE) has no usage columns */
	(void) medallion_catalog_exec(medallion_catalog_has_pause_requests() ?
								  "UPDATE medallion.runs SET status = $2, "
								  "finished_at = pg_catalog.clock_timestamp(), "
								  "rows_read = $3, rows_inserted = $4, rows_updated = $5, rows_unchanged = $6, "
								  "rows_dlq = $7, rows_quarantined = $8, rows_dropped = $9, rows_warned = $10, "
								  "shared_blks_hit = $11, shared_blks_read = $12, wal_bytes = $13, "
								  "error_class = $14, error_message = $15, sqlstate = $16 "
								  "WHERE run_id OPERATOR(pg_catalog.=) $1" :
								  "UPDATE medallion.runs SET status = $2, "
								  "finished_at = pg_catalog.clock_timestamp(), "
								  "rows_read = $3, rows_inserted = $4, rows_updated = $5, rows_unchanged = $6, "
								  "rows_dlq = $7, rows_quarantined = $8, rows_dropped = $9, rows_warned = $10, "
								  "error_class = $14, error_message = $15, sqlstate = $16 "
								  "WHERE run_id OPERATOR(pg_catalog.=) $1",
								  16, argtypes, values, nulls, SPI_OK_UPDATE);
}

/*
 * A message as stored in medallion.runs and medallion.alerts: at most
 * MEDALLION_MAX_MESSAGE bytes, cut at a character boundary.  Messages quote
 * data values; an error raised by a pipeline's own code can be any length.
 */
char *
medallion_capped_message(const char *message)
{
	int			len;

	if (message == NULL)
		return pstrdup("");
	len = strlen(message);
	if (len <= MEDALLION_MAX_MESSAGE)
		return pstrdup(message);
	len = pg_mbcliplen(message, len, MEDALLION_MAX_MESSAGE - 3);
	return psprintf("%.*s...", len, message);
}

/* 'skipped' runs kept per pipeline: a loop of run(wait => false) stays bounded. */
#define MEDALLION_SKIPPED_KEPT 100

/*
 * Deletes a pipeline's 'skipped' runs but the latest MEDALLION_SKIPPED_KEPT.
 */
void
medallion_run_trim_skipped(const char *pipeline)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = Int32GetDatum(MEDALLION_SKIPPED_KEPT);
	(void) medallion_catalog_exec("DELETE FROM medallion.runs r "
								  "WHERE r.pipeline OPERATOR(pg_catalog.=) $1 "
								  "AND r.status OPERATOR(pg_catalog.=) 'skipped' "
								  "AND r.run_id OPERATOR(pg_catalog.<=) "
								  "  (SELECT k.run_id FROM medallion.runs k "
								  "   WHERE k.pipeline OPERATOR(pg_catalog.=) $1 "
								  "   AND k.status OPERATOR(pg_catalog.=) 'skipped' "
								  "   ORDER BY k.run_id DESC OFFSET $2 LIMIT 1)",
								  2, argtypes, values, NULL, SPI_OK_DELETE);
}

/*
 * How a recorded run ended ('succeeded', 'failed', 'skipped', or 'running'),
 * in the caller's memory.
 */
char *
medallion_run_status(int64 run_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	MedallionGateway gw;
	MemoryContext cxt = CurrentMemoryContext;
	char	   *status;

	values[0] = Int64GetDatum(run_id);
	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec("SELECT r.status FROM medallion.runs r "
							   "WHERE r.run_id OPERATOR(pg_catalog.=) $1",
							   1, argtypes, values, NULL, 1, SPI_OK_SELECT) != 1)
		elog(ERROR, "run %lld is not recorded", (long long) run_id);
	status = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	medallion_gateway_leave(&gw);
	return status;
}
