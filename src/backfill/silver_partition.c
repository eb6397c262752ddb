/*-------------------------------------------------------------------------
 *
 * silver_partition.c
 *	  The partition strategy of a silver backfill: the keys with bronze rows
 *	  in the range, recomputed from all their retained versions.
 *
 * The rows read are those of the range and every other retained version of
 * the keys they carry (a key is matched on its payload's text at the key's
 * path), so the newest version across the whole history wins and a
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

/* A key column's path as a text[] literal. */
static char *
key_path(ColumnSpec *col)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "ARRAY[");
	foreach(lc, col->segments)
		appendStringInfo(&buf, "%s%s", lc == list_head(col->segments) ? "" : ",",
						 quote_literal_cstr(lfirst(lc)));
	appendStringInfoString(&buf, "]::pg_catalog.text[]");
	return buf.data;
}

/* The rows of alias ingested in the range's days (UTC). */
static char *
in_range(const char *alias, const BackfillRequest *req)
{
	return psprintf("%s._ingested_at OPERATOR(pg_catalog.>=) '%s 00:00:00+00'::pg_catalog.timestamptz "
					"AND %s._ingested_at OPERATOR(pg_catalog.<) '%s 00:00:00+00'::pg_catalog.timestamptz",
					alias, backfill_day_text(req->from_day), alias, backfill_day_text(req->to_day + 1));
}

/*
 * The bronze rows a backfill reads (over alias b): those ingested in the
 * range, and every version of the keys they carry.
 */
static char *
range_where(SilverRun *r, const BackfillRequest *req)
{
	StringInfoData keys;
	ListCell   *lc;

	if (req->whole)
		return "true";
	initStringInfo(&keys);
	foreach(lc, r->c->unique_key)
	{
		ColumnSpec *col = medallion_contract_column(r->c, lfirst(lc));
		char	   *path = key_path(col);

		appendStringInfo(&keys, " AND (k._raw OPERATOR(pg_catalog.#>>) %s) OPERATOR(pg_catalog.=) "
						 "(b._raw OPERATOR(pg_catalog.#>>) %s)", path, path);
	}
	/* the range prunes to its partitions; the keys' other versions are found in one pass */
	return psprintf("(%s) OR EXISTS (SELECT 1 FROM %s k WHERE %s%s)",
					in_range("b", req), r->qsource, in_range("k", req), keys.data);
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
	bool		slow;

	silver_run_setup(&r, p, run_id);
	if (qtarget)
		r.qtarget = pstrdup(qtarget);
	silver_run_open_changes(&r);
	ar = silver_active_run_register(&r);
	r.expectations = silver_run_load_expectations(p, r.cxt);
	r.backfill_where = range_where(&r, req);

	medallion_run_settings_push(r.c, &nestlevel);
	medallion_become_user(p->owner, &save);
	SPI_connect();

	seqs = backfill_silver_rows_read(&r);
	if (req->whole)
		carry_over(&r, req, seqs);
	deleted = delete_recomputed(&r, seqs);

	/* the run's own MERGE and slow path, over the rows read */
	ar->read = 0;
	ar->inserted = 0;
	slow = (r.expectations != NIL);
	if (!slow)
		slow = (silver_try_data(&r, silver_do_merge, &merged) != NULL);
	/*
	 * (Not the one-MERGE slow path: it writes its bad rows without keeping
	 * their _seq, which backfill_silver_mark_reprocessed needs to tell them apart.)
	 */
	if (slow)
	{
		silver_find_untyped_rows(&r);
		if (r.expectations != NIL && silver_try_data(&r, silver_apply_expectations, counts) != NULL)
		{
			silver_find_failing_rows(&r);
			silver_apply_expectations(&r, counts);
		}
		if (silver_try_data(&r, silver_do_merge, &merged) != NULL)
		{
			silver_find_failing_rows(&r);
			silver_do_merge(&r, &merged);
		}
	}
	counts->read = ar->read + list_length(r.bad) + r.nbad_written;
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
