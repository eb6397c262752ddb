/*-------------------------------------------------------------------------
 *
 * async.c
 *	  Asynchronous backfills (options.async): the days of the range queued
 *	  in medallion.backfills, processed by a background worker one
 *	  transaction each.
 *
 * Each day takes the run lock for its own transaction only, so incremental
 * runs interleave between days.  A day is marked done in the transaction
 * that processed it: a worker killed mid-way loses the day it was in, and
 * the next worker the scheduler starts for the run (a 'running' backfill
 * with days not done and no worker) begins there.  Processing a day again
 * is harmless: it recomputes the same keys to the same rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/date.h"

#include "backfill/backfill.h"

/*
 * Queues the days with work of a plan for a recorded backfill run (as the
 * catalog owner); the scheduler starts its worker after the commit.
 */
void
backfill_async_queue(const char *pipeline, int64 run_id, const BackfillPlan *plan)
{
	ListCell   *lc;
	Oid			t[3] = {INT8OID, TEXTOID, DATEOID};
	Datum		v[3];

	v[0] = Int64GetDatum(run_id);
	v[1] = CStringGetTextDatum(pipeline);
	foreach(lc, plan->days)
	{
		BackfillDay *d = lfirst(lc);

		if (strcmp(d->action, "skip") == 0 || d->day == BACKFILL_NO_DAY)
			continue;
		v[2] = DateADTGetDatum(d->day);
		(void) medallion_catalog_exec("INSERT INTO medallion.backfills (run_id, pipeline, day) VALUES ($1, $2, $3)",
									  3, t, v, NULL, SPI_OK_INSERT);
	}
	medallion_wake_scheduler_at_commit();
}

/*
 * The asynchronous backfill already running for the same pipeline, range
 * and strategy, or 0: asking again returns it rather than queueing the days
 * twice.
 */
int64
backfill_async_running(const char *pipeline, const char *detail_range)
{
	Oid			t[2] = {TEXTOID, JSONBOID};
	Datum		v[2];
	List	   *rows;

	v[0] = CStringGetTextDatum(pipeline);
	v[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(detail_range));
	rows = medallion_catalog_query("SELECT r.run_id FROM medallion.runs r "
								   "WHERE r.pipeline OPERATOR(pg_catalog.=) $1 "
								   "AND r.kind OPERATOR(pg_catalog.=) 'backfill'::pg_catalog.text "
								   "AND r.status OPERATOR(pg_catalog.=) 'running'::pg_catalog.text "
								   "AND r.detail OPERATOR(pg_catalog.@>) $2 "
								   "AND EXISTS (SELECT 1 FROM medallion.backfills b "
								   "            WHERE b.run_id OPERATOR(pg_catalog.=) r.run_id AND b.done_at IS NULL) "
								   "ORDER BY r.run_id LIMIT 1",
								   2, t, v, NULL);
	if (rows == NIL)
		return 0;
	return DatumGetInt64(((MedallionRow *) linitial(rows))->values[0]);
}

/*
 * The asynchronous backfills waiting for a worker: running, with days not
 * done, and no worker (by its application_name) in the cluster.  A List
 * of int64 run ids, as pointers to palloc'd int64.
 */
List *
medallion_backfill_waiting_runs(void)
{
	List	   *rows;
	List	   *out = NIL;
	ListCell   *lc;

	rows = medallion_catalog_query("SELECT DISTINCT b.run_id FROM medallion.backfills b "
								   "JOIN medallion.runs r ON r.run_id OPERATOR(pg_catalog.=) b.run_id "
								   "WHERE b.done_at IS NULL "
								   "AND r.status OPERATOR(pg_catalog.=) 'running'::pg_catalog.text "
								   "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a "
								   "  WHERE a.application_name OPERATOR(pg_catalog.=) "
								   "        ('medallion backfill '::pg_catalog.text OPERATOR(pg_catalog.||) b.run_id::pg_catalog.text)) "
								   "ORDER BY 1",
								   0, NULL, NULL, NULL);
	foreach(lc, rows)
	{
		int64	   *id = palloc(sizeof(int64));

		*id = DatumGetInt64(((MedallionRow *) lfirst(lc))->values[0]);
		out = lappend(out, id);
	}
	return out;
}

/* The counts of a finished backfill: the rows its days read. */
static void
finish(int64 run_id)
{
	Oid			t[1] = {INT8OID};
	Datum		v[1] = {Int64GetDatum(run_id)};
	List	   *rows;
	RunCounts	counts = {0};

	rows = medallion_catalog_query("SELECT COALESCE(pg_catalog.sum(rows_read), 0)::pg_catalog.int8 FROM medallion.backfills "
								   "WHERE run_id OPERATOR(pg_catalog.=) $1",
								   1, t, v, NULL);
	counts.read = DatumGetInt64(((MedallionRow *) linitial(rows))->values[0]);
	medallion_run_record_finish(run_id, "succeeded", &counts, NULL, NULL);
}

/*
 * Processes the next day of an asynchronous backfill in the current
 * transaction; false when none is left (the run is then recorded
 * succeeded) or the run is no longer running.
 */
bool
medallion_backfill_async_day(int64 run_id)
{
	Oid			t[2] = {INT8OID, INT8OID};
	Datum		v[2] = {Int64GetDatum(run_id), 0};
	List	   *rows;
	MedallionRow *row;
	Pipeline	p = {0};
	BackfillRequest req = {0};
	RunCounts	counts = {0};
	int64		removed = 0;
	char	   *pipeline;
	DateADT		day;

	if (strcmp(medallion_run_status(run_id), "running") != 0)
		return false;
	rows = medallion_catalog_query("SELECT pipeline, day FROM medallion.backfills "
								   "WHERE run_id OPERATOR(pg_catalog.=) $1 AND done_at IS NULL ORDER BY day LIMIT 1",
								   1, t, v, NULL);
	if (rows == NIL)
	{
		finish(run_id);
		return false;
	}
	row = linitial(rows);
	pipeline = TextDatumGetCString(row->values[0]);
	day = DatumGetDateADT(row->values[1]);

	/* the run lock, for this day only */
	if (!medallion_pipeline_lookup(pipeline, &p, true, false, NULL) || !OidIsValid(p.owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" of backfill %lld is gone, or its owner is", pipeline, (long long) run_id)));
	req.pipeline = pipeline;
	req.strategy = "partition";
	req.from_day = req.to_day = day;
	req.force = true;
	if (strcmp(p.layer, "gold") == 0)
	{
		(void) medallion_gold_backfill(&p, run_id, day, day, false, &counts);
	}
	else
		backfill_silver_partition(&p, run_id, &req, NULL, &counts, &removed);

	t[1] = INT8OID;
	v[1] = Int64GetDatum(counts.read);
	(void) medallion_catalog_exec("UPDATE medallion.backfills SET done_at = pg_catalog.now(), rows_read = $2 "
								  "WHERE run_id OPERATOR(pg_catalog.=) $1 AND day OPERATOR(pg_catalog.=) "
								  "(SELECT pg_catalog.min(day) FROM medallion.backfills "
								  " WHERE run_id OPERATOR(pg_catalog.=) $1 AND done_at IS NULL)",
								  2, t, v, NULL, SPI_OK_UPDATE);
	return true;
}

/* Records an asynchronous backfill failed (a new transaction, after the abort). */
void
medallion_backfill_async_failed(int64 run_id, ErrorData *edata)
{
	medallion_run_record_finish(run_id, "failed", NULL, edata, medallion_error_class(edata->sqlerrcode));
}
