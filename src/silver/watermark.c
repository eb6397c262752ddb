/*-------------------------------------------------------------------------
 *
 * watermark.c
 *	  Snapshot watermarks: which bronze rows a pipeline has processed.
 *
 * max(_seq) or max(_ingested_at) watermarks lose rows, because transactions
 * commit out of order.  As PgQ does, each bronze row carries its inserting
 * transaction id, and the watermark is a snapshot: a run takes the rows
 * visible in the current snapshot and not in the previous one.  The
 * watermark is written in the run's transaction, with its output.
 *
 * A run sees the rows of its own transaction, which may add more after it:
 * the watermark then keeps that transaction "in progress" in done_snapshot,
 * and resume_xid/resume_seq (without a target_snapshot) say which of its
 * rows are done already.  With a target_snapshot, a bounded run is draining
 * the window up to it, in _seq (arrival) order, and resume_seq is where it
 * stopped (silver.c).
 *
 * The stored xids belong to this cluster's xid space: the cluster's system
 * identifier is kept alongside, and a watermark restored into another
 * cluster is discarded: the next run reads every row of the source whatever
 * its xid (restored rows carry the old cluster's xids, which may lie in this
 * cluster's future), which the newest-wins merge makes harmless.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/xid8.h"

#include "medallion.h"
#include "silver/silver.h"

/*
 * Reads a pipeline's watermark (as the catalog owner).
 */
void
medallion_watermark_load(const char *pipeline, Watermark *wm)
{
	MedallionGateway gw;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	memset(wm, 0, sizeof(Watermark));
	values[0] = CStringGetTextDatum(pipeline);

	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec("SELECT system_identifier, done_snapshot, target_snapshot, "
							   "resume_xid, resume_seq FROM medallion.watermarks "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1",
							   1, argtypes, values, NULL, 1, SPI_OK_SELECT) == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		sysid = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));

		wm->found = true;
		if (sysid != (int64) GetSystemIdentifier())
		{
			wm->rebase = true;
			ereport(NOTICE,
					(errmsg("watermark of pipeline \"%s\" comes from another cluster and is reset",
							pipeline),
					 errdetail("This run reprocesses the whole source; merging keeps the newest versions.")));
		}
		else
		{
			Datum		d;

			d = SPI_getbinval(tup, desc, 2, &isnull);
			if ((wm->has_done = !isnull))
				wm->done_snapshot = SPI_datumTransfer(d, false, -1);
			d = SPI_getbinval(tup, desc, 3, &isnull);
			if ((wm->has_target = !isnull))
				wm->target_snapshot = SPI_datumTransfer(d, false, -1);
			d = SPI_getbinval(tup, desc, 4, &isnull);
			if ((wm->has_resume = !isnull))
			{
				wm->resume_xid = d;		/* xid8 is pass-by-value */
				wm->resume_seq = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
			}
		}
	}
	medallion_gateway_leave(&gw);
}

/*
 * Writes a pipeline's watermark (as the catalog owner).
 */
void
medallion_watermark_save(const char *pipeline, const Watermark *wm)
{
	Oid			argtypes[6] = {TEXTOID, INT8OID, PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID};
	Datum		values[6];
	char		nulls[6] = "      ";

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = Int64GetDatum((int64) GetSystemIdentifier());
	values[2] = wm->done_snapshot;
	nulls[2] = wm->has_done ? ' ' : 'n';
	values[3] = wm->target_snapshot;
	nulls[3] = wm->has_target ? ' ' : 'n';
	values[4] = wm->resume_xid;
	nulls[4] = wm->has_resume ? ' ' : 'n';
	values[5] = Int64GetDatum(wm->resume_seq);
	nulls[5] = wm->has_resume ? ' ' : 'n';

	(void) medallion_catalog_exec("INSERT INTO medallion.watermarks AS w "
								  "(pipeline, system_identifier, done_snapshot, target_snapshot, "
								  " resume_xid, resume_seq, updated_at) "
								  "VALUES ($1, $2, $3, $4, $5, $6, pg_catalog.now()) "
								  "ON CONFLICT (pipeline) DO UPDATE SET "
								  "system_identifier = EXCLUDED.system_identifier, "
								  "done_snapshot = EXCLUDED.done_snapshot, "
								  "target_snapshot = EXCLUDED.target_snapshot, "
								  "resume_xid = EXCLUDED.resume_xid, "
								  "resume_seq = EXCLUDED.resume_seq, "
								  "updated_at = EXCLUDED.updated_at",
								  6, argtypes, values, nulls, SPI_OK_INSERT);
}

/*
 * A snapshot in which one transaction's visibility is changed: "visible"
 * makes it count as committed, otherwise as in progress.
 *
 * A transaction at or above xmax becomes visible by moving xmax past it;
 * the xids in between join xip, as they were not finished either.
 */
Datum
medallion_snapshot_set_visible(Datum snapshot, Datum xid, bool visible)
{
	Oid			argtypes[2] = {PG_SNAPSHOTOID, XID8OID};
	Datum		values[2];
	Datum		result;
	bool		isnull;
	int			ret;

	values[0] = snapshot;
	values[1] = xid;
	SPI_connect();
	if (visible)
		ret = SPI_execute_with_args("SELECT CASE WHEN pg_catalog.pg_visible_in_snapshot($2, $1) THEN $1 ELSE "
									"(pg_catalog.pg_snapshot_xmin($1)::pg_catalog.text OPERATOR(pg_catalog.||) ':'::pg_catalog.text "
									"OPERATOR(pg_catalog.||) GREATEST(pg_catalog.pg_snapshot_xmax($1)::pg_catalog.text::pg_catalog.numeric, "
									"$2::pg_catalog.text::pg_catalog.numeric OPERATOR(pg_catalog.+) 1)::pg_catalog.text "
									"OPERATOR(pg_catalog.||) ':'::pg_catalog.text OPERATOR(pg_catalog.||) "
									"COALESCE((SELECT pg_catalog.string_agg(x::pg_catalog.text, ','::pg_catalog.text ORDER BY x) "
									"FROM (SELECT pg_catalog.pg_snapshot_xip($1)::pg_catalog.text::pg_catalog.numeric "
									"UNION SELECT pg_catalog.generate_series(pg_catalog.pg_snapshot_xmax($1)::pg_catalog.text::pg_catalog.numeric, "
									"$2::pg_catalog.text::pg_catalog.numeric OPERATOR(pg_catalog.-) 1)) AS i(x) "
									"WHERE x OPERATOR(pg_catalog.<>) $2::pg_catalog.text::pg_catalog.numeric), ''::pg_catalog.text))"
									"::pg_catalog.pg_snapshot END",
									2, argtypes, values, NULL, true, 1);
	else
		ret = SPI_execute_with_args("SELECT CASE WHEN NOT pg_catalog.pg_visible_in_snapshot($2, $1) THEN $1 ELSE "
									"(LEAST(pg_catalog.pg_snapshot_xmin($1)::pg_catalog.text::pg_catalog.numeric, "
									"$2::pg_catalog.text::pg_catalog.numeric)::pg_catalog.text OPERATOR(pg_catalog.||) ':'::pg_catalog.text "
									"OPERATOR(pg_catalog.||) pg_catalog.pg_snapshot_xmax($1)::pg_catalog.text "
									"OPERATOR(pg_catalog.||) ':'::pg_catalog.text OPERATOR(pg_catalog.||) "
									"(SELECT pg_catalog.string_agg(x::pg_catalog.text, ','::pg_catalog.text ORDER BY x) "
									"FROM (SELECT pg_catalog.pg_snapshot_xip($1)::pg_catalog.text::pg_catalog.numeric "
									"UNION SELECT $2::pg_catalog.text::pg_catalog.numeric) AS i(x)))"
									"::pg_catalog.pg_snapshot END",
									2, argtypes, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not change a snapshot: SPI error %d", ret);
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	result = SPI_datumTransfer(result, false, -1);
	SPI_finish();
	return result;
}

/*
 * Whether a transaction counts as committed in a snapshot.
 */
bool
medallion_snapshot_visible(Datum snapshot, Datum xid)
{
	return DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot, xid, snapshot));
}

/*
 * The target snapshot of a run: a new statement's snapshot, in which the
 * run's own transaction counts as committed.
 *
 * A run executes in its caller's transaction, whose own bronze rows its SQL
 * sees.  pg_current_snapshot() leaves the own xid out of xip, so it would be
 * "visible" when below xmax and "not yet" when at or above it: the own rows
 * would be processed or not depending on whether another transaction
 * happened to commit meanwhile.  Here they always are; the run then records
 * how far it went in its own transaction (silver.c), so that rows the
 * transaction adds later are processed by the next run.
 */
Datum
medallion_current_snapshot(void)
{
	Datum		snap;
	bool		isnull;
	int			ret;
	FullTransactionId me = GetTopFullTransactionIdIfAny();

	SPI_connect();
	ret = SPI_execute("SELECT pg_catalog.pg_current_snapshot()", false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not take a snapshot: SPI error %d", ret);
	snap = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	snap = SPI_datumTransfer(snap, false, -1);
	SPI_finish();
	if (FullTransactionIdIsValid(me))
		snap = medallion_snapshot_set_visible(snap, FullTransactionIdGetDatum(me), true);
	return snap;
}
