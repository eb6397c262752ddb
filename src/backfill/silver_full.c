/*-------------------------------------------------------------------------
 *
 * silver_full.c
 *	  The full strategy of a silver backfill: the whole table rebuilt from
 *	  bronze into a table built aside, then swapped in.
 *
 * The rebuild reads every bronze row visible in one snapshot, taken first
 * (the run's "target" snapshot, the run's own transaction counting as
 * committed), through the run's own SQL under the current contract: the
 * newest version of each key wins, delete markers and tombstones are
 * respected, bad rows go to the DLQ and quarantine once (a source row that
 * already has one adds none), and DLQ rows of rows that now pass are
 * marked reprocessed.  The rows go to a new heap with the table's physical
 * layout (make_new_heap, as CLUSTER makes one), which then takes the
 * table's place by swapping storage (swap.c): the table keeps its OID.
 * The watermark becomes that snapshot, so the next incremental run reads
 * exactly the rows committed after it: none lost, none read twice.
 *
 * The table is locked ExclusiveLock while the new version is built (reads
 * go on; the run lock already keeps runs out), AccessExclusiveLock for the
 * swap.  Keys whose bronze rows retention dropped cannot be rebuilt: the
 * backfill is refused (MD082), or with force they are carried over from
 * the current version (NOTICE).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/cluster.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "backfill/backfill.h"
#include "silver/silver.h"

/* " AND a.k = b.k ..." over the contract's unique key */
static char *
same_key(SilverRun *r, const char *a, const char *b)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, r->c->unique_key)
		appendStringInfo(&buf, " AND %s.%s OPERATOR(pg_catalog.=) %s.%s",
						 a, silver_qcol(lfirst(lc)), b, silver_qcol(lfirst(lc)));
	return buf.data;
}

/* A count(*) query's result; seqs ($1, int8[]) when not (Datum) 0. */
static int64
count_sql(const char *sql, Datum seqs)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {seqs};
	bool		isnull;

	if (SPI_execute_with_args(sql, seqs ? 1 : 0, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed for: %s", sql);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * The rows of the current version not made from a bronze row the rebuild
 * reads (retention dropped it): refused unless forced, before anything is
 * written.  Returns their count.
 */
static int64
not_retained(const char *qtarget, const BackfillRequest *req, Datum seqs)
{
	int64		n = count_sql(psprintf("SELECT pg_catalog.count(*) FROM %s t "
									   "WHERE t._source_seq OPERATOR(pg_catalog.<>) ALL ($1)", qtarget), seqs);

	if (n > 0 && !req->force)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_BACKFILL_NOT_RETAINED),
				 errmsg("%lld rows of %s were made from bronze rows that are no longer retained",
						(long long) n, qtarget),
				 errdetail("A rebuild from bronze cannot recompute them."),
				 errhint("Pass options {\"force\": true} to carry them over as they are.")));
	return n;
}

/*
 * Forced: the rows of the current version whose bronze rows are gone go
 * into the new one as they are, unless the rebuild wrote their key.
 */
static void
carry_over(SilverRun *r, const char *qtarget, const char *qshadow, Datum seqs)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {seqs};
	int			ret;

	ret = SPI_execute_with_args(psprintf("INSERT INTO %s SELECT * FROM %s t "
										 "WHERE t._source_seq OPERATOR(pg_catalog.<>) ALL ($1) "
										 "AND NOT EXISTS (SELECT 1 FROM %s n WHERE true%s)",
										 qshadow, qtarget, qshadow, same_key(r, "n", "t")),
								1, types, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not carry the rows of %s over", qtarget);
	if (SPI_processed > 0)
		ereport(NOTICE,
				(errmsg("%llu rows of %s carried over: their bronze rows are no longer retained",
						(unsigned long long) SPI_processed, qtarget)));
}

/*
 * The column defaults of the table on the new heap (make_new_heap copies
 * the row layout and NOT NULL, not defaults: _loaded_at has one), as the
 * owner of both.
 */
static void
copy_defaults(Oid target, const char *qshadow)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(target)};
	uint64		i;
	uint64		n;
	List	   *alters = NIL;
	ListCell   *lc;

	if (SPI_execute_with_args("SELECT a.attname, pg_catalog.pg_get_expr(d.adbin, d.adrelid) "
							  "FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_attribute a "
							  "ON a.attrelid OPERATOR(pg_catalog.=) d.adrelid AND a.attnum OPERATOR(pg_catalog.=) d.adnum "
							  "WHERE d.adrelid OPERATOR(pg_catalog.=) $1 AND NOT a.attisdropped "
							  "AND a.attgenerated OPERATOR(pg_catalog.=) ''",
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the defaults of relation %u", target);
	n = SPI_processed;
	for (i = 0; i < n; i++)
		alters = lappend(alters, psprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s", qshadow,
										  quote_identifier(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1)),
										  SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2)));
	medallion_own_ddl_begin();
	foreach(lc, alters)
		if (SPI_execute(lfirst(lc), false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "SPI_execute failed for: %s", (char *) lfirst(lc));
	medallion_own_ddl_end();
}

/*
 * A full backfill of a silver pipeline, in the caller's transaction (the
 * run lock held by the caller).  *removed: keys of the current version
 * the new one no longer has.
 */
void
backfill_silver_full(Pipeline *p, int64 run_id, const BackfillRequest *req,
					 RunCounts *counts, int64 *removed)
{
	SilverRun	r = {0};
	ActiveRun  *ar;
	MedallionUserContext save;
	Watermark	wm;
	Relation	rel;
	Oid			target;
	Oid			shadow;
	char	   *qtarget;
	int			nestlevel;
	int			slot;
	int64		merged = 0;
	Datum		seqs;

	target = get_relname_relid(p->relname, get_namespace_oid("silver", false));
	if (!OidIsValid(target))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table of pipeline \"%s\" does not exist", p->name)));

	silver_run_setup(&r, p, run_id);
	qtarget = r.qtarget;
	silver_run_open_changes(&r);
	/* rows leave the table without a note: the gold models reading it refresh whole */
	for (slot = 0; slot < list_length(medallion_changeset_columns(r.changes)); slot++)
		medallion_changeset_forget(r.changes, slot);
	ar = silver_active_run_register(&r);
	r.expectations = silver_run_load_expectations(p, r.cxt);

	/* the snapshot the rebuild reads, and the watermark after it */
	r.values[P_TARGET - 1] = medallion_current_snapshot();
	r.nulls[P_TARGET - 1] = ' ';
	r.values[P_XMAX_TARGET - 1] = medallion_snapshot_xmax(r.values[P_TARGET - 1]);
	r.nulls[P_XMAX_TARGET - 1] = ' ';

	/* the new version: the table's row layout (dropped columns too), owner, tablespace */
	rel = table_open(target, ExclusiveLock);
	medallion_own_ddl_begin();
	shadow = make_new_heap(target, rel->rd_rel->reltablespace, rel->rd_rel->relam,
						   rel->rd_rel->relpersistence, ExclusiveLock);
	medallion_own_ddl_end();
	table_close(rel, NoLock);
	CommandCounterIncrement();
	r.qtarget = quote_qualified_identifier(get_namespace_name(get_rel_namespace(shadow)),
										   get_rel_name(shadow));

	medallion_run_settings_push(r.c, &nestlevel);
	medallion_become_user(p->owner, &save);
	SPI_connect();

	copy_defaults(target, r.qtarget);
	seqs = backfill_silver_rows_read(&r);
	(void) not_retained(qtarget, req, seqs);

	/* the run's own MERGE and slow path, over every row of the snapshot */
	merged = backfill_silver_merge(&r, ar, counts);
	counts->inserted = merged;	/* every row of a new version is an insert */
	counts->updated = 0;
	if (req->force)
		carry_over(&r, qtarget, r.qtarget, seqs);
	*removed = count_sql(psprintf("SELECT pg_catalog.count(*) FROM %s t "
								  "WHERE NOT EXISTS (SELECT 1 FROM %s n WHERE true%s)",
								  qtarget, r.qtarget, same_key(&r, "n", "t")), (Datum) 0);
	{
		/* in the run's context: the snapshots must outlive this SPI connection */
		MemoryContext old = MemoryContextSwitchTo(r.cxt);

		silver_run_next_watermark(&r, &wm);
		MemoryContextSwitchTo(old);
	}

	SPI_finish();
	medallion_restore_user(&save);
	AtEOXact_GUC(true, nestlevel);

	medallion_backfill_swap_heap(target, shadow);

	silver_write_bad_rows(&r, counts);
	counts->replayed = backfill_silver_mark_reprocessed(&r, seqs);
	counts->unchanged = Max(counts->read - counts->inserted - counts->dlq -
							counts->quarantined - counts->dropped, 0);
	medallion_watermark_save(p->name, &wm);
	medallion_changeset_write(r.changes, run_id);
	silver_active_run_unregister(ar);
}
