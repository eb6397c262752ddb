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
 * stopped (silver_run.c).
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
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "medallion.h"
#include "silver/silver.h"

/*
 * True when medallion.watermarks has the rebase_until column (0.2.0): a
 * 0.1.0 catalog runs with the new library until it is updated.
 */
static bool
watermarks_have_until(void)
{
	Oid			nsp = get_namespace_oid("medallion", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("watermarks", nsp) : InvalidOid;

	return OidIsValid(relid) && get_attnum(relid, "rebase_until") != InvalidAttrNumber;
}

/*
 * A watermark from the columns of its row (system_identifier, done_snapshot,
 * target_snapshot, resume_xid, resume_seq, rebase_until); found tells
 * whether there is a row.  A watermark another cluster wrote is reset
 * (rebase).
 */
static void
watermark_from_columns(const char *pipeline, bool found, const Datum *values, const bool *nulls,
					   Watermark *wm)
{
	memset(wm, 0, sizeof(Watermark));
	if (!found)
		return;
	wm->found = true;
	if (DatumGetInt64(values[0]) != (int64) GetSystemIdentifier())
	{
		wm->rebase = true;
		ereport(NOTICE,
				(errmsg("watermark of pipeline \"%s\" comes from another cluster and is reset",
						pipeline),
				 errdetail("This run reprocesses the whole source; merging keeps the newest versions.")));
		return;
	}
	if ((wm->has_done = !nulls[1]))
		wm->done_snapshot = values[1];
	if ((wm->has_target = !nulls[2]))
		wm->target_snapshot = values[2];
	if ((wm->has_resume = !nulls[3]))
	{
		wm->resume_xid = values[3];		/* xid8 is pass-by-value */
		wm->resume_seq = DatumGetInt64(values[4]);
	}
	if ((wm->has_until = !nulls[5]))
		wm->rebase_until = DatumGetInt64(values[5]);
}

/*
 * Reads a pipeline's watermark (as the catalog owner), or takes the one the
 * lookup of its run read already (Pipeline.prefetch).
 */
void
medallion_watermark_load(const Pipeline *p, Watermark *wm)
{
	MedallionGateway gw;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[6];
	bool		nulls[6];
	bool		found;
	bool		has_until;

	if (p->prefetch)
	{
		watermark_from_columns(p->name, p->prefetch->has_watermark, p->prefetch->watermark,
							   p->prefetch->watermark_null, wm);
		return;
	}
	has_until = watermarks_have_until();
	values[0] = CStringGetTextDatum(p->name);
	medallion_catalog_enter(&gw);
	found = medallion_gateway_exec_saved(has_until ?
										 "SELECT system_identifier, done_snapshot, target_snapshot, "
										 "resume_xid, resume_seq, rebase_until FROM medallion.watermarks "
										 "WHERE pipeline OPERATOR(pg_catalog.=) $1" :
										 "SELECT system_identifier, done_snapshot, target_snapshot, "
										 "resume_xid, resume_seq, NULL::pg_catalog.int8 FROM medallion.watermarks "
										 "WHERE pipeline OPERATOR(pg_catalog.=) $1",
										 1, argtypes, values, NULL, 1, SPI_OK_SELECT) == 1;
	if (found)
	{
		for (int i = 0; i < 6; i++)
		{
			values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &nulls[i]);
			if (!nulls[i] && (i == 1 || i == 2))
				values[i] = SPI_datumTransfer(values[i], false, -1);	/* pg_snapshot */
		}
	}
	medallion_gateway_leave(&gw);
	watermark_from_columns(p->name, found, values, nulls, wm);
}

/*
 * Writes a pipeline's watermark (as the catalog owner).
 */
void
medallion_watermark_save(const char *pipeline, const Watermark *wm)
{
	Oid			argtypes[7] = {TEXTOID, INT8OID, PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID, INT8OID};
	Datum		values[7];
	char		nulls[7] = "       ";

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
	values[6] = Int64GetDatum(wm->rebase_until);
	nulls[6] = wm->has_until ? ' ' : 'n';

	/*
	 * A 0.1.0 catalog has no rebase_until (nor ever a rebase to record):
	 * two whole statements, each checked as written by tools/check-qualified.
	 */
	if (watermarks_have_until())
	{
		(void) medallion_catalog_exec("INSERT INTO medallion.watermarks AS w "
									  "(pipeline, system_identifier, done_snapshot, target_snapshot, "
									  " resume_xid, resume_seq, rebase_until, updated_at) "
									  "VALUES ($1, $2, $3, $4, $5, $6, $7, pg_catalog.now()) "
									  "ON CONFLICT (pipeline) DO UPDATE SET "
									  "system_identifier = EXCLUDED.system_identifier, "
									  "done_snapshot = EXCLUDED.done_snapshot, "
									  "target_snapshot = EXCLUDED.target_snapshot, "
									  "resume_xid = EXCLUDED.resume_xid, "
									  "resume_seq = EXCLUDED.resume_seq, "
									  "rebase_until = EXCLUDED.rebase_until, "
									  "updated_at = EXCLUDED.updated_at",
									  7, argtypes, values, nulls, SPI_OK_INSERT);
		return;
	}
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
 * The layout of a pg_snapshot value (xid8funcs.c keeps it private): xip is
 * sorted, without duplicates, every xid in [xmin, xmax).
 */
typedef struct SnapshotValue
{
	int32		vl_len_;
	uint32		nxip;
	FullTransactionId xmin;
	FullTransactionId xmax;
	FullTransactionId xip[FLEXIBLE_ARRAY_MEMBER];
} SnapshotValue;

#define SNAPSHOT_SIZE(n) (offsetof(SnapshotValue, xip) + sizeof(FullTransactionId) * (n))

static SnapshotValue *
snapshot_new(uint64 xmin, uint64 xmax, uint32 nxip)
{
	SnapshotValue *s = palloc(SNAPSHOT_SIZE(nxip));

	SET_VARSIZE(s, SNAPSHOT_SIZE(nxip));
	s->nxip = nxip;
	s->xmin = FullTransactionIdFromU64(xmin);
	s->xmax = FullTransactionIdFromU64(xmax);
	return s;
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
	SnapshotValue *old = (SnapshotValue *) PG_DETOAST_DATUM(snapshot);
	uint64		x = U64FromFullTransactionId(DatumGetFullTransactionId(xid));
	uint64		xmin = U64FromFullTransactionId(old->xmin);
	uint64		xmax = U64FromFullTransactionId(old->xmax);
	SnapshotValue *s;
	uint32		i;
	uint32		n = 0;

	if (medallion_snapshot_visible(PointerGetDatum(old), xid) == visible)
		return snapshot;
	if (visible)
	{
		/* x is in xip, or at or above xmax: xmax..x-1 join xip */
		uint64		gap = (x >= xmax) ? x - xmax : 0;
		uint64		y;

		s = snapshot_new(xmin, Max(xmax, x + 1), old->nxip + gap);
		for (i = 0; i < old->nxip; i++)
			if (U64FromFullTransactionId(old->xip[i]) != x)
				s->xip[n++] = old->xip[i];
		for (y = xmax; y < x; y++)
			s->xip[n++] = FullTransactionIdFromU64(y);
	}
	else
	{
		/* x is below xmax and not in xip: it joins xip, in order */
		bool		added = false;

		s = snapshot_new(Min(xmin, x), xmax, old->nxip + 1);
		for (i = 0; i < old->nxip; i++)
		{
			if (!added && U64FromFullTransactionId(old->xip[i]) > x)
			{
				s->xip[n++] = FullTransactionIdFromU64(x);
				added = true;
			}
			s->xip[n++] = old->xip[i];
		}
		if (!added)
			s->xip[n++] = FullTransactionIdFromU64(x);
	}
	s->nxip = n;
	SET_VARSIZE(s, SNAPSHOT_SIZE(n));
	return PointerGetDatum(s);
}

/*
 * A snapshot's xmax (xid8).
 */
Datum
medallion_snapshot_xmax(Datum snapshot)
{
	return FullTransactionIdGetDatum(((SnapshotValue *) PG_DETOAST_DATUM(snapshot))->xmax);
}

/*
 * A snapshot's xmin (xid8).
 */
Datum
medallion_snapshot_xmin(Datum snapshot)
{
	return FullTransactionIdGetDatum(((SnapshotValue *) PG_DETOAST_DATUM(snapshot))->xmin);
}

/*
 * The transactions in progress in a snapshot, as an xid8[], or NULL when
 * there are none.
 */
Datum
medallion_snapshot_xip(Datum snapshot, bool *isnull)
{
	SnapshotValue *s = (SnapshotValue *) PG_DETOAST_DATUM(snapshot);
	Datum	   *elems;
	uint32		i;

	*isnull = (s->nxip == 0);
	if (*isnull)
		return (Datum) 0;
	elems = palloc(sizeof(Datum) * s->nxip);
	for (i = 0; i < s->nxip; i++)
		elems[i] = FullTransactionIdGetDatum(s->xip[i]);
	return PointerGetDatum(construct_array(elems, s->nxip, XID8OID, sizeof(FullTransactionId),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
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
 * how far it went in its own transaction (silver_run.c), so that rows the
 * transaction adds later are processed by the next run.
 */
Datum
medallion_current_snapshot(void)
{
	LOCAL_FCINFO(fcinfo, 0);
	Datum		snap;
	FullTransactionId me = GetTopFullTransactionIdIfAny();

	/* a new snapshot, as a statement of its own would take */
	PushActiveSnapshot(GetTransactionSnapshot());
	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	snap = pg_current_snapshot(fcinfo);
	PopActiveSnapshot();
	if (FullTransactionIdIsValid(me))
		snap = medallion_snapshot_set_visible(snap, FullTransactionIdGetDatum(me), true);
	return snap;
}
