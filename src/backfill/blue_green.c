/*-------------------------------------------------------------------------
 *
 * blue_green.c
 *	  The blue_green strategy of a silver backfill: the new version built
 *	  in a shadow table, validated, and swapped in; the old one kept for
 *	  rollback() until its time is up.
 *
 * The shadow starts as a copy of the current version and the range is
 * recomputed into it by the partition strategy (the rest is carried over).
 * It is valid when its row count is within max_row_change of the current
 * version's and every options.checks query returns true (the contract's
 * checks and expectations applied row by row as it was built).  The swap
 * rewrites the table's rows in the caller's transaction, so the table keeps
 * its OID: the user's views, grants and comments on it stay, and readers
 * see the old version until the commit, the new one after.  The previous
 * rows go to a kept table, recorded in medallion.backfill_versions with the
 * watermark the pipeline had, for rollback().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "backfill/backfill.h"

/* Executes one statement as the current role; returns the rows it touched. */
static uint64
exec(const char *sql, int expect)
{
	int			ret = SPI_execute(sql, false, 0);

	if (ret != expect)
		elog(ERROR, "SPI_execute failed (%s) for: %s", SPI_result_code_string(ret), sql);
	return SPI_processed;
}

static int64
count_rows(const char *qrel)
{
	bool		isnull;

	(void) exec(psprintf("SELECT pg_catalog.count(*) FROM %s", qrel), SPI_OK_SELECT);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* A copy of a table's shape (columns, defaults, constraints, indexes), empty. */
static void
create_like(const char *qnew, const char *qold)
{
	medallion_own_ddl_begin();
	(void) exec(psprintf("CREATE TABLE %s (LIKE %s INCLUDING ALL)", qnew, qold), SPI_OK_UTILITY);
	medallion_own_ddl_end();
}

static void
drop_table(const char *qrel)
{
	medallion_own_ddl_begin();
	(void) exec(psprintf("DROP TABLE %s", qrel), SPI_OK_UTILITY);
	medallion_own_ddl_end();
}

/*
 * Validates the shadow against the current version, as the owner; raises
 * MD083 with the reason when it is not valid.
 */
static void
validate(const BackfillRequest *req, const char *pipeline, const char *qtarget, const char *qshadow)
{
	int64		before = count_rows(qtarget);
	int64		after = count_rows(qshadow);
	double		change = fabs((double) (after - before)) / (double) Max(before, 1);
	ListCell   *lc;

	if (change > req->max_row_change)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_BACKFILL_INVALID),
				 errmsg("blue-green backfill of pipeline \"%s\" failed its validation", pipeline),
				 errdetail("The new version has %lld rows, the current one %lld: a change of %.1f%%, over max_row_change %.1f%%.",
						   (long long) after, (long long) before, change * 100, req->max_row_change * 100),
				 errhint("Nothing was swapped. Raise options.max_row_change if the change is expected.")));
	foreach(lc, req->checks)
	{
		const char *check = lfirst(lc);
		bool		isnull;
		bool		ok;

		(void) exec(psprintf("WITH shadow AS MATERIALIZED (SELECT * FROM %s) SELECT (%s\n)::pg_catalog.bool",
							 qshadow, check), SPI_OK_SELECT);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_BACKFILL_INVALID),
					 errmsg("blue-green backfill of pipeline \"%s\" failed its validation", pipeline),
					 errdetail("Check %s returned %llu rows instead of one.", check, (unsigned long long) SPI_processed),
					 errhint("Nothing was swapped.")));
		ok = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (isnull || !ok)
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_BACKFILL_INVALID),
					 errmsg("blue-green backfill of pipeline \"%s\" failed its validation", pipeline),
					 errdetail("Check %s did not return true.", check),
					 errhint("Nothing was swapped.")));
	}
}

/*
 * Validates a shadow as the owner (the caller is in the gateway as the
 * owner), the user's checks under the run's pinned path, as expectations
 * are; raises MD083 when it is not valid.
 */
void
backfill_validate_as_owner(const BackfillRequest *req, const char *pipeline, const char *qtarget,
						   const char *qshadow)
{
	int			nestlevel = NewGUCNestLevel();

	/* the user's checks run under the run's pinned path, as expectations do */
	(void) set_config_option("search_path", "pg_catalog, public, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	validate(req, pipeline, qtarget, qshadow);
	AtEOXact_GUC(true, nestlevel);
}

/*
 * Records the kept version (as the catalog owner), with the watermark and
 * the definition version to restore.  The kept rows were built by the
 * version before the current one when the current one has not reached
 * history yet (no earlier full or blue-green backfill built it: a backfill
 * is how a new version does); otherwise by the current one.
 */
void
backfill_record_kept(const Pipeline *p, int64 run_id, Oid kept, const BackfillRequest *req)
{
	Oid			t[4] = {TEXTOID, INT8OID, OIDOID, TEXTOID};
	Datum		v[4];

	v[0] = CStringGetTextDatum(p->name);
	v[1] = Int64GetDatum(run_id);
	v[2] = ObjectIdGetDatum(kept);
	v[3] = CStringGetTextDatum(req->keep);
	(void) medallion_catalog_exec("INSERT INTO medallion.backfill_versions (pipeline, run_id, kept_table, watermark, "
								  "kept_until, definition_version) "
								  "SELECT $1, $2, $3::pg_catalog.regclass, "
								  "(SELECT pg_catalog.to_jsonb(w) FROM medallion.watermarks w "
								  " WHERE w.pipeline OPERATOR(pg_catalog.=) $1), "
								  "pg_catalog.now() OPERATOR(pg_catalog.+) $4::pg_catalog.interval, "
								  "(SELECT CASE WHEN p.definition_version OPERATOR(pg_catalog.<=) 1 "
								  "   OR EXISTS (SELECT 1 FROM medallion.runs r "
								  "     WHERE r.pipeline OPERATOR(pg_catalog.=) $1 "
								  "     AND r.run_id OPERATOR(pg_catalog.<>) $2 "
								  "     AND r.kind OPERATOR(pg_catalog.=) 'backfill'::pg_catalog.text "
								  "     AND r.status OPERATOR(pg_catalog.=) 'succeeded'::pg_catalog.text "
								  "     AND r.detail OPERATOR(pg_catalog.->>) 'strategy'::pg_catalog.text "
								  "         OPERATOR(pg_catalog.=) ANY ('{full,blue_green}'::pg_catalog.text[]) "
								  "     AND r.detail OPERATOR(pg_catalog.->>) 'definition_version'::pg_catalog.text "
								  "         OPERATOR(pg_catalog.=) p.definition_version::pg_catalog.text) "
								  "   THEN p.definition_version "
								  "   ELSE p.definition_version OPERATOR(pg_catalog.-) 1 END "
								  " FROM medallion.pipelines p WHERE p.name OPERATOR(pg_catalog.=) $1)",
								  4, t, v, NULL, SPI_OK_INSERT);
}

/*
 * A blue-green backfill of a silver pipeline (the run lock held by the
 * caller).  Raises MD083 when the new version is not valid, having
 * changed nothing the caller's subtransaction does not roll back.
 */
void
backfill_blue_green(Pipeline *p, int64 run_id, const BackfillRequest *req, RunCounts *counts,
					int64 *removed)
{
	Oid			nsp = get_namespace_oid("silver", false);
	Oid			target = get_relname_relid(p->relname, nsp);
	char	   *qtarget;
	char	   *shadow_name = psprintf("_bf%lld_new", (long long) run_id);
	char	   *kept_name = psprintf("_bf%lld_old", (long long) run_id);
	char	   *qshadow = quote_qualified_identifier("silver", shadow_name);
	char	   *qkept = quote_qualified_identifier("silver", kept_name);
	MedallionGateway gw;
	Oid			kept;

	if (!OidIsValid(target))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table of pipeline \"%s\" does not exist", p->name)));
	qtarget = quote_qualified_identifier(get_namespace_name(get_rel_namespace(target)), get_rel_name(target));

	/* the shadow: the current version, then the range recomputed into it */
	medallion_gateway_enter(p->owner, &gw);
	create_like(qshadow, qtarget);
	(void) exec(psprintf("INSERT INTO %s SELECT * FROM %s", qshadow, qtarget), SPI_OK_INSERT);
	medallion_gateway_leave(&gw);
	CommandCounterIncrement();
	backfill_silver_partition(p, run_id, req, qshadow, counts, removed);

	/* validated, swapped: the table keeps its OID; the old rows are kept aside */
	medallion_gateway_enter(p->owner, &gw);
	backfill_validate_as_owner(req, p->name, qtarget, qshadow);
	create_like(qkept, qtarget);
	(void) exec(psprintf("INSERT INTO %s SELECT * FROM %s", qkept, qtarget), SPI_OK_INSERT);
	(void) medallion_backfill_swap_rows(target, get_relname_relid(shadow_name, nsp));
	drop_table(qshadow);
	medallion_gateway_leave(&gw);
	CommandCounterIncrement();
	kept = get_relname_relid(kept_name, nsp);
	backfill_record_kept(p, run_id, kept, req);
}

/*
 * rollback: the newest kept version of a silver or gold pipeline swapped
 * back in, with the definition version it was built with (contract or
 * query, edges included) and, for silver, the watermark it had: the next
 * run reapplies what landed since.  A gold model's watermark is removed
 * instead, so that its next run recomputes it whole with the restored
 * query: the change records consumed since the swap may be gone.  Returns
 * false when no version is kept.
 */
bool
backfill_rollback(Pipeline *p)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(p->name)};
	List	   *rows;
	MedallionRow *row;
	Oid			kept;
	Oid			target;
	char	   *qkept;
	MedallionGateway gw;
	Oid			t2[3] = {TEXTOID, JSONBOID, INT8OID};
	Datum		v2[3];
	char		n2[3] = {' ', ' ', ' '};
	bool		gold = (strcmp(p->layer, "gold") == 0);

	rows = medallion_catalog_query("SELECT kept_table::pg_catalog.oid, watermark, run_id, definition_version "
								   "FROM medallion.backfill_versions "
								   "WHERE pipeline OPERATOR(pg_catalog.=) $1 ORDER BY run_id DESC LIMIT 1",
								   1, t, v, NULL);
	if (rows == NIL)
		return false;
	row = linitial(rows);
	kept = DatumGetObjectId(row->values[0]);
	target = get_relname_relid(p->relname, get_namespace_oid(p->layer, false));
	if (!OidIsValid(target) || get_rel_relkind(kept) != RELKIND_RELATION ||
		get_rel_namespace(kept) != get_rel_namespace(target))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the kept version of pipeline \"%s\" is gone", p->name)));
	qkept = quote_qualified_identifier(get_namespace_name(get_rel_namespace(kept)), get_rel_name(kept));

	medallion_gateway_enter(p->owner, &gw);
	if (gold)
		backfill_gold_swap_back(target, kept);
	else
		(void) medallion_backfill_swap_rows(target, kept);
	drop_table(qkept);
	medallion_gateway_leave(&gw);

	v2[0] = v[0];
	v2[1] = row->values[1];
	n2[1] = (row->nulls[1] || gold) ? 'n' : ' ';
	v2[2] = row->values[2];
	(void) medallion_catalog_exec("DELETE FROM medallion.backfill_versions "
								  "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND run_id OPERATOR(pg_catalog.=) $3",
								  3, t2, v2, n2, SPI_OK_DELETE);
	if (n2[1] == 'n')
		(void) medallion_catalog_exec("DELETE FROM medallion.watermarks WHERE pipeline OPERATOR(pg_catalog.=) $1",
									  1, t, v, NULL, SPI_OK_DELETE);
	else
		(void) medallion_catalog_exec("INSERT INTO medallion.watermarks AS w (pipeline, system_identifier, "
									  "done_snapshot, target_snapshot, resume_xid, resume_seq) "
									  "SELECT $1, ($2 OPERATOR(pg_catalog.->>) 'system_identifier'::pg_catalog.text)::pg_catalog.int8, "
									  "($2 OPERATOR(pg_catalog.->>) 'done_snapshot'::pg_catalog.text)::pg_catalog.pg_snapshot, "
									  "($2 OPERATOR(pg_catalog.->>) 'target_snapshot'::pg_catalog.text)::pg_catalog.pg_snapshot, "
									  "($2 OPERATOR(pg_catalog.->>) 'resume_xid'::pg_catalog.text)::pg_catalog.xid8, "
									  "($2 OPERATOR(pg_catalog.->>) 'resume_seq'::pg_catalog.text)::pg_catalog.int8 "
									  "ON CONFLICT (pipeline) DO UPDATE SET system_identifier = EXCLUDED.system_identifier, "
									  "done_snapshot = EXCLUDED.done_snapshot, target_snapshot = EXCLUDED.target_snapshot, "
									  "resume_xid = EXCLUDED.resume_xid, resume_seq = EXCLUDED.resume_seq, "
									  "updated_at = pg_catalog.now()",
									  3, t2, v2, n2, SPI_OK_INSERT);

	/* the definition version the kept rows were built with */
	if (!row->nulls[3] && DatumGetInt32(row->values[3]) != p->definition_version)
	{
		if (gold)
			medallion_gold_definition_restore(p->name, DatumGetInt32(row->values[3]));
		else
		{
			Oid			t3[2] = {TEXTOID, INT4OID};
			Datum		v3[2] = {v[0], row->values[3]};

			(void) medallion_catalog_exec("UPDATE medallion.pipelines p SET definition = cv.definition, "
										  "definition_version = cv.version "
										  "FROM medallion.contract_versions cv "
										  "WHERE p.name OPERATOR(pg_catalog.=) $1 "
										  "AND cv.pipeline OPERATOR(pg_catalog.=) $1 "
										  "AND cv.version OPERATOR(pg_catalog.=) $2",
										  2, t3, v3, NULL, SPI_OK_UPDATE);
		}
	}
	return true;
}

/*
 * Drops the kept versions whose time is up (the scheduler's hourly
 * housekeeping), as the catalog owner.
 */
void
medallion_backfill_housekeeping(void)
{
	List	   *rows;
	ListCell   *lc;

	rows = medallion_catalog_query("SELECT kept_table::pg_catalog.oid, pipeline, run_id FROM medallion.backfill_versions "
								   "WHERE kept_until OPERATOR(pg_catalog.<) pg_catalog.now()",
								   0, NULL, NULL, NULL);
	foreach(lc, rows)
	{
		MedallionRow *row = lfirst(lc);
		Oid			kept = DatumGetObjectId(row->values[0]);
		char	   *name = get_rel_name(kept);
		Oid			t[2] = {TEXTOID, INT8OID};
		MedallionGateway gw;

		(void) medallion_catalog_exec("DELETE FROM medallion.backfill_versions "
									  "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND run_id OPERATOR(pg_catalog.=) $2",
									  2, t, &row->values[1], NULL, SPI_OK_DELETE);
		if (name == NULL || get_rel_relkind(kept) != RELKIND_RELATION)
			continue;
		medallion_catalog_enter(&gw);
		drop_table(quote_qualified_identifier(get_namespace_name(get_rel_namespace(kept)), name));
		medallion_gateway_leave(&gw);
	}
}
