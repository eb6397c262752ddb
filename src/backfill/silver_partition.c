/*-------------------------------------------------------------------------
 *
 * silver_partition.c
 *	  The partition strategy of a silver backfill: the keys with bronze rows
 *	  in the range, recomputed from all their retained versions.
 *
 * The rows read are those of the range (ingestion days, or with the
 * contract option event_time, the typed event time's days) and every other
 * retained version of the keys they carry (keys matched typed, as a run
 * types them), so the newest version across the whole history wins and a
 * backfill never brings an older one back.  The silver rows those versions
 * produced are deleted, and the run's own MERGE (with its slow path: bad
 * rows to the DLQ, expectations to quarantine, delete markers to the
 * tombstones) writes the winners again under the current contract: a key
 * with no valid version left stays deleted.  DLQ and quarantine rows of
 * the rows read that now pass are marked reprocessed.  The watermark is
 * left alone: incremental runs read the rows they have not read yet, and
 * newest wins makes that reading harmless.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "backfill/backfill.h"
#include "silver/silver.h"

/* The rows of alias ingested in the range's days (UTC). */
static char *
in_range(const char *alias, const BackfillRequest *req)
{
	return psprintf("%s._ingested_at OPERATOR(pg_catalog.>=) '%s 00:00:00+00'::pg_catalog.timestamptz "
					"AND %s._ingested_at OPERATOR(pg_catalog.<) '%s 00:00:00+00'::pg_catalog.timestamptz",
					alias, backfill_day_text(req->from_day), alias, backfill_day_text(req->to_day + 1));
}

/* The typed event time of alias in the range's days (UTC for timestamptz). */
static char *
event_in_range(SilverRun *r, const char *alias, const BackfillRequest *req)
{
	ColumnSpec *col = medallion_contract_column(r->c, r->c->event_time);
	const char *cast = col->typid == DATEOID ? "'%s'::pg_catalog.date" :
		col->typid == TIMESTAMPOID ? "'%s 00:00:00'::pg_catalog.\"timestamp\"" :
		"'%s 00:00:00+00'::pg_catalog.timestamptz";
	const char *qcol = silver_qcol(col->name);

	return psprintf("%s.%s OPERATOR(pg_catalog.>=) %s AND %s.%s OPERATOR(pg_catalog.<) %s",
					alias, qcol, psprintf(cast, backfill_day_text(req->from_day)),
					alias, qcol, psprintf(cast, backfill_day_text(req->to_day + 1)));
}

/* What find_range_rows computes, in a subtransaction. */
typedef struct RangeQuery
{
	const BackfillRequest *req;
	Datum		seqs;			/* int8[] */
} RangeQuery;

/*
 * The _seq of the bronze rows a backfill of a range reads: the rows of the
 * range (ingested in its days, or with option event_time, whose typed event
 * time falls in them), and every version of the keys they carry.  Keys are
 * matched typed, through the run's own typing SQL (casts, defaults,
 * expressions): a key computed by an expression, or spelled "01" in one
 * payload and 1 in another, is the same key as in silver.  Bronze cannot
 * prune by a typed key or event time: this reads all retained bronze once.
 */
static void
find_range_rows(SilverRun *r, void *arg)
{
	RangeQuery *q = arg;
	SilverRun	all = *r;
	StringInfoData keys;
	StringInfoData same;
	ListCell   *lc;
	char	   *typed_all;
	char	   *range_keys;
	char	   *sql;
	bool		isnull;
	MemoryContext old;

	initStringInfo(&keys);
	initStringInfo(&same);
	foreach(lc, r->c->unique_key)
	{
		const char *k = silver_qcol(lfirst(lc));

		appendStringInfo(&keys, "%s%s", keys.len ? ", " : "", k);
		appendStringInfo(&same, " AND k.%s OPERATOR(pg_catalog.=) a.%s", k, k);
	}
	all.typing_only = true;
	all.backfill_where = "true";
	typed_all = silver_checked_sql(&all, false, false);
	if (r->c->event_time)
	{
		range_keys = psprintf("SELECT %s FROM (%s) e WHERE %s", keys.data, typed_all,
							  event_in_range(r, "e", q->req));
		sql = psprintf("SELECT COALESCE(pg_catalog.array_agg(a._source_seq), '{}'::pg_catalog.int8[]) "
					   "FROM (%s) a WHERE EXISTS (SELECT 1 FROM (%s) k WHERE true%s)",
					   typed_all, range_keys, same.data);
	}
	else
	{
		SilverRun	day = all;

		day.backfill_where = in_range("b", q->req);
		range_keys = psprintf("SELECT %s FROM (%s) d", keys.data, silver_checked_sql(&day, false, false));
		/* the range's rows themselves, even those whose key does not type (DLQ) */
		sql = psprintf("SELECT COALESCE(pg_catalog.array_agg(s._seq), '{}'::pg_catalog.int8[]) FROM ("
					   "SELECT b._seq FROM %s b WHERE %s UNION "
					   "SELECT a._source_seq FROM (%s) a WHERE EXISTS (SELECT 1 FROM (%s) k WHERE true%s)) s",
					   r->qsource, in_range("b", q->req), typed_all, range_keys, same.data);
	}
	silver_exec(r, sql, 1);
	old = MemoryContextSwitchTo(r->cxt);
	q->seqs = PointerGetDatum(DatumGetArrayTypePCopy(SPI_getbinval(SPI_tuptable->vals[0],
																	 SPI_tuptable->tupdesc, 1, &isnull)));
	MemoryContextSwitchTo(old);
}

/*
 * The bronze rows a backfill reads, over alias b (as the owner, SPI
 * connected): the whole history, or the rows find_range_rows found, passed
 * as P_SEQS (a replay's parameter, unused by a backfill).  Typing every
 * row is tried set-based first; when some row does not type, again over
 * the rows silver_check accepts only.
 */
static char *
range_where(SilverRun *r, const BackfillRequest *req)
{
	RangeQuery	q = {req, (Datum) 0};

	if (req->whole)
		return "true";
	if (silver_try_data(r, find_range_rows, &q) != NULL)
	{
		r->typed_rows_only = true;
		find_range_rows(r, &q);
		r->typed_rows_only = false;
	}
	r->values[P_SEQS - 1] = q.seqs;
	r->nulls[P_SEQS - 1] = ' ';
	return psprintf("b._seq OPERATOR(pg_catalog.=) ANY ($%d)", P_SEQS);
}

/*
 * Deletes the silver rows made from the bronze rows read (seqs), noting
 * their days for gold models.  Returns the rows deleted.
 */
static int64
delete_recomputed(SilverRun *r, Datum seqs)
{
	StringInfoData noted;
	ListCell   *lc;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {seqs};
	int			ret;

	initStringInfo(&noted);
	foreach(lc, r->c->columns)
	{
		ColumnSpec *col = lfirst(lc);
		int			slot = silver_change_slot(r, col);

		if (slot >= 0)
			appendStringInfo(&noted, " AND medallion.change_note(%d, t.%s, NULL::%s) IS NULL",
							 slot, silver_qcol(col->name), silver_stored_type(col));
	}
	ret = SPI_execute_with_args(psprintf("DELETE FROM %s t WHERE t._source_seq OPERATOR(pg_catalog.=) ANY ($1)%s",
										 r->qtarget, noted.data),
								1, types, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not delete the recomputed rows of %s", r->qtarget);
	return (int64) SPI_processed;
}

/*
 * A rebuild of the whole history: the silver rows whose bronze version
 * retention dropped are not recomputed.  They are kept as they are (NOTICE)
 * when forced, else the rebuild is refused, before anything changed.
 */
static void
carry_over(SilverRun *r, const BackfillRequest *req, Datum seqs)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {seqs};
	bool		isnull;
	int64		n;

	if (SPI_execute_with_args(psprintf("SELECT pg_catalog.count(*) FROM %s t "
									   "WHERE t._source_seq OPERATOR(pg_catalog.<>) ALL ($1)", r->qtarget),
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read %s", r->qtarget);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (n == 0)
		return;
	if (!req->force)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_BACKFILL_NOT_RETAINED),
				 errmsg("%lld rows of %s were made from bronze rows that are no longer retained",
						(long long) n, r->qtarget),
				 errdetail("A rebuild from bronze cannot recompute them."),
				 errhint("Pass options {\"force\": true} to carry them over as they are.")));
	ereport(NOTICE,
			(errmsg("%lld rows of %s carried over: their bronze rows are no longer retained",
					(long long) n, r->qtarget)));
}

/* The _seq of every row read, as int8[] (in the run's context). */
Datum
backfill_silver_rows_read(SilverRun *r)
{
	bool		isnull;
	Datum		d;
	MemoryContext old;

	silver_exec(r, psprintf("SELECT COALESCE(pg_catalog.array_agg(s._source_seq), '{}'::pg_catalog.int8[]) FROM (%s) s",
							silver_source_sql(r, false, false)), 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	old = MemoryContextSwitchTo(r->cxt);
	d = PointerGetDatum(DatumGetArrayTypePCopy(d));
	MemoryContextSwitchTo(old);
	return d;
}

/*
 * The run's own MERGE and slow path over the rows r reads (the backfill's
 * range or the rebuild's snapshot): rows read and bad rows counted in
 * counts, the rows merged returned.  Not the one-MERGE slow path: it writes
 * its bad rows without keeping their _seq, which
 * backfill_silver_mark_reprocessed needs to tell them apart.
 */
int64
backfill_silver_merge(SilverRun *r, ActiveRun *ar, RunCounts *counts)
{
	int64		merged = 0;
	bool		slow;

	ar->read = 0;
	ar->inserted = 0;
	slow = (r->expectations != NIL);
	if (!slow)
		slow = (silver_try_data(r, silver_do_merge, &merged) != NULL);
	if (slow)
	{
		silver_find_untyped_rows(r);
		if (r->expectations != NIL && silver_try_data(r, silver_apply_expectations, counts) != NULL)
		{
			silver_find_failing_rows(r);
			silver_apply_expectations(r, counts);
		}
		if (silver_try_data(r, silver_do_merge, &merged) != NULL)
		{
			silver_find_failing_rows(r);
			silver_do_merge(r, &merged);
		}
	}
	counts->read = ar->read + list_length(r->bad) + r->nbad_written;
	return merged;
}

/*
 * The DLQ and quarantine rows of the rows read that did not fail this time
 * leave them (reprocessed), as the catalog owner.
 */
int64
backfill_silver_mark_reprocessed(SilverRun *r, Datum seqs)
{
	Oid			types[3] = {TEXTOID, INT8ARRAYOID, INT8ARRAYOID};
	Datum		values[3];
	int64		n;

	values[0] = CStringGetTextDatum(r->p->name);
	values[1] = seqs;
	silver_set_exclusions(r);
	values[2] = r->values[P_EXCL - 1];
	n = (int64) medallion_catalog_exec("UPDATE medallion.dlq SET reprocessed = true, reprocessed_at = pg_catalog.now() "
									   "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND NOT reprocessed "
									   "AND source_seq OPERATOR(pg_catalog.=) ANY ($2) "
									   "AND source_seq OPERATOR(pg_catalog.<>) ALL ($3)",
									   3, types, values, NULL, SPI_OK_UPDATE);
	(void) medallion_catalog_exec("UPDATE medallion.quarantine SET reprocessed = true, reprocessed_at = pg_catalog.now() "
								  "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND NOT reprocessed "
								  "AND source_seq OPERATOR(pg_catalog.=) ANY ($2) "
								  "AND source_seq OPERATOR(pg_catalog.<>) ALL ($3)",
								  3, types, values, NULL, SPI_OK_UPDATE);
	return n;
}

/*
 * A partition backfill of a silver pipeline, in the caller's transaction
 * (the run lock held by the caller), into its table or qtarget (a blue-green
 * shadow).  *removed: silver rows deleted and not written again.
 */
void
backfill_silver_partition(Pipeline *p, int64 run_id, const BackfillRequest *req,
						  const char *qtarget, RunCounts *counts, int64 *removed)
{
	SilverRun	r = {0};
	ActiveRun  *ar;
	MedallionUserContext save;
	int			nestlevel;
	int64		merged = 0;
	int64		deleted;
	Datum		seqs;

	silver_run_setup(&r, p, run_id);
	if (qtarget)
		r.qtarget = pstrdup(qtarget);
	silver_run_open_changes(&r);
	ar = silver_active_run_register(&r);
	r.expectations = silver_run_load_expectations(p, r.cxt);

	medallion_run_settings_push(r.c, &nestlevel);
	medallion_become_user(p->owner, &save);
	SPI_connect();

	r.backfill_where = range_where(&r, req);

	seqs = backfill_silver_rows_read(&r);
	if (req->whole)
		carry_over(&r, req, seqs);
	deleted = delete_recomputed(&r, seqs);

	/* the run's own MERGE and slow path, over the rows read */
	merged = backfill_silver_merge(&r, ar, counts);
	counts->inserted = ar->inserted;
	counts->updated = merged - ar->inserted;

	SPI_finish();
	medallion_restore_user(&save);
	AtEOXact_GUC(true, nestlevel);

	silver_write_bad_rows(&r, counts);
	counts->replayed = backfill_silver_mark_reprocessed(&r, seqs);
	counts->unchanged = Max(counts->read - counts->inserted - counts->updated - counts->dlq -
							counts->quarantined - counts->dropped, 0);
	*removed = Max(deleted - merged, 0);
	if (merged > 0 || deleted > 0)
		medallion_changeset_write(r.changes, run_id);
	silver_active_run_unregister(ar);
}
