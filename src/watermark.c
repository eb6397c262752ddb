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
 * The stored xids belong to this cluster's xid space: the cluster's system
 * identifier is kept alongside, and a watermark restored into another
 * cluster is discarded (the next run reprocesses the source, which the
 * newest-wins merge makes harmless).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "medallion.h"

/*
 * Reads a pipeline's watermark (as the catalog owner).
 */
void
medallion_watermark_load(const char *pipeline, Watermark *wm)
{
	MedallionUserContext save;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	int			ret;

	memset(wm, 0, sizeof(Watermark));
	values[0] = CStringGetTextDatum(pipeline);

	medallion_become_user(medallion_catalog_owner(), &save);
	SPI_connect();
	ret = SPI_execute_with_args("SELECT system_identifier, done_snapshot, target_snapshot, "
								"resume_xid, resume_seq FROM medallion.watermarks "
								"WHERE pipeline OPERATOR(pg_catalog.=) $1",
								1, argtypes, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read medallion.watermarks: SPI error %d", ret);
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		sysid = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));

		wm->found = true;
		if (sysid != (int64) GetSystemIdentifier())
			ereport(NOTICE,
					(errmsg("watermark of pipeline \"%s\" comes from another cluster and is reset",
							pipeline),
					 errdetail("The next run reprocesses the whole source; merging keeps the newest versions.")));
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
	SPI_finish();
	medallion_restore_user(&save);
}

/*
 * Writes a pipeline's watermark (as the catalog owner).
 */
void
medallion_watermark_save(const char *pipeline, const Watermark *wm)
{
	MedallionUserContext save;
	Oid			argtypes[6] = {TEXTOID, INT8OID, PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID};
	Datum		values[6];
	char		nulls[6] = "      ";
	int			ret;

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

	medallion_become_user(medallion_catalog_owner(), &save);
	SPI_connect();
	ret = SPI_execute_with_args("INSERT INTO medallion.watermarks AS w "
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
								6, argtypes, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not write medallion.watermarks: SPI error %d", ret);
	SPI_finish();
	medallion_restore_user(&save);
}

/*
 * The snapshot of a new statement: every transaction it shows as committed
 * committed before any later statement of this run starts.
 */
Datum
medallion_current_snapshot(void)
{
	Datum		snap;
	bool		isnull;
	int			ret;

	SPI_connect();
	ret = SPI_execute("SELECT pg_catalog.pg_current_snapshot()", false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not take a snapshot: SPI error %d", ret);
	snap = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	snap = SPI_datumTransfer(snap, false, -1);
	SPI_finish();
	return snap;
}
