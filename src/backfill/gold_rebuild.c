/*-------------------------------------------------------------------------
 *
 * gold_rebuild.c
 *	  The full and blue_green strategies of a gold backfill: the model's
 *	  new version built aside from its query, then swapped into its table.
 *
 * The shadow is a plain table gold._bf<run>_new with the columns the
 * model's definition says (those of a query changed by alter_pipeline(),
 * maybe not yet the table's).  full fills it from the whole query;
 * blue_green from the query for the range's partitions plus the current
 * rows of the others (a model without partitions, or NULL dates: the whole
 * query), then validates it (blue_green.c) and keeps the current rows in
 * gold._bf<run>_old for rollback().  The swap is one step of the caller's
 * transaction: the table's columns altered to the new shape if it changed
 * (shape.c: a user's view over a dropped column makes the whole backfill
 * fail, nothing applied), the partitions the rows need created, the rows
 * rewritten (swap.c).  The table keeps its OID; a partitioned model gets
 * its rows routed to its partitions through the parent, so its partitions
 * keep their OIDs too (no partition is exchanged).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "backfill/backfill.h"
#include "gold/gold.h"

static uint64
exec(const char *sql, int expect)
{
	int			ret = SPI_execute(sql, false, 0);

	if (ret != expect)
		elog(ERROR, "SPI_execute failed (%s) for: %s", SPI_result_code_string(ret), sql);
	return SPI_processed;
}

/* "name type, ..." of a shape, for CREATE TABLE. */
static char *
shape_columns_sql(List *shape)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, shape)
	{
		GoldColumn *c = lfirst(lc);

		appendStringInfo(&buf, "%s%s %s", buf.len ? ", " : "", quote_identifier(c->name), c->type);
	}
	return buf.data;
}

/*
 * Builds the shadow as the owner with the model's run settings pinned (the
 * query is the user's SQL); returns its row count.
 */
static int64
build_shadow(GoldModel *m, List *shape, const BackfillRequest *req, bool whole, const char *qshadow)
{
	MedallionUserContext save;
	int			nestlevel;
	char	   *names = gold_shape_names(shape, "");
	char	   *qnames = gold_shape_names(shape, "q.");
	uint64		rows;

	medallion_run_settings_push(&m->settings, &nestlevel);
	medallion_become_user(m->p->owner, &save);
	SPI_connect();
	medallion_own_ddl_begin();
	(void) exec(psprintf("CREATE TABLE %s (%s)", qshadow, shape_columns_sql(shape)), SPI_OK_UTILITY);
	medallion_own_ddl_end();
	if (whole)
		rows = exec(psprintf("INSERT INTO %s (%s) SELECT %s FROM (%s\n) q", qshadow, names, qnames, m->query),
					SPI_OK_INSERT);
	else
	{
		List	   *starts = gold_range_starts(m, req->from_day, req->to_day);

		/* the rest carried over, the range recomputed */
		rows = exec(psprintf("INSERT INTO %s (%s) SELECT %s FROM %s t WHERE NOT (%s)",
							 qshadow, names, gold_shape_names(shape, "t."), m->qrel,
							 gold_ranges_sql(m, starts, "t.")), SPI_OK_INSERT);
		rows += exec(psprintf("INSERT INTO %s (%s) SELECT %s FROM (%s\n) q WHERE %s",
							  qshadow, names, qnames, gold_query_for_partitions(m, starts),
							  gold_ranges_sql(m, starts, "q.")), SPI_OK_INSERT);
	}
	/* refuses NULL partition values (MD011) before anything is swapped */
	if (m->partition_by)
		gold_ensure_partitions_for(m, qshadow);
	SPI_finish();
	medallion_restore_user(&save);
	AtEOXact_GUC(true, nestlevel);
	return (int64) rows;
}

/*
 * A full or blue_green backfill of a gold model (the run lock held by the
 * caller).  blue_green raises MD083 when the new version is not valid,
 * having changed nothing the caller's subtransaction does not roll back.
 * Returns the rows of the new version.
 */
int64
backfill_gold_rebuild(Pipeline *p, int64 run_id, const BackfillRequest *req)
{
	GoldModel	m;
	List	   *have;
	List	   *want;
	bool		reshape;
	bool		blue_green = (strcmp(req->strategy, "blue_green") == 0);
	bool		whole;
	char	   *shadow_name = psprintf("_bf%lld_new", (long long) run_id);
	char	   *kept_name = psprintf("_bf%lld_old", (long long) run_id);
	char	   *qshadow = quote_qualified_identifier("gold", shadow_name);
	char	   *qkept = quote_qualified_identifier("gold", kept_name);
	Oid			nsp = get_namespace_oid("gold", false);
	Oid			shadow;
	int64		rows;
	MedallionGateway gw;

	gold_model_load(p, &m, true);
	have = gold_table_shape(m.relid);
	want = gold_definition_shape(p->definition);
	if (want == NIL)
		want = have;			/* a definition without its columns: the table's */
	reshape = !gold_shape_equal(want, have);
	whole = req->whole || m.partition_by == NULL;
	if (reshape && !whole)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the output columns of gold model \"%s\" changed: a backfill of a range cannot build them",
						p->name),
				 errdetail("The rows outside the range have the earlier columns."),
				 errhint("Backfill the whole history: pass NULL for from_date and to_date.")));

	rows = build_shadow(&m, want, req, whole, qshadow);
	CommandCounterIncrement();
	shadow = get_relname_relid(shadow_name, nsp);

	medallion_gateway_enter(p->owner, &gw);
	if (blue_green)
	{
		backfill_validate_as_owner(req, p->name, m.qrel, qshadow);
		medallion_own_ddl_begin();
		(void) exec(psprintf("CREATE TABLE %s AS SELECT * FROM %s", qkept, m.qrel), SPI_OK_UTILITY);
		medallion_own_ddl_end();
	}
	if (reshape)
	{
		medallion_own_ddl_begin();
		gold_shape_apply(m.relid, want);
		medallion_own_ddl_end();
		CommandCounterIncrement();
	}
	(void) medallion_backfill_swap_rows(m.relid, shadow);
	medallion_own_ddl_begin();
	(void) exec(psprintf("DROP TABLE %s", qshadow), SPI_OK_UTILITY);
	medallion_own_ddl_end();
	medallion_gateway_leave(&gw);
	CommandCounterIncrement();

	if (blue_green)
		backfill_record_kept(p, run_id, get_relname_relid(kept_name, nsp), req);
	/* the models reading this one refresh it whole */
	gold_record_own_changes(&m, run_id, true, NIL);
	/* the scheduler looks again: a model whose columns were pending is runnable now */
	medallion_wake_scheduler_at_commit();
	return rows;
}

/*
 * rollback() of a gold model: the kept rows back in its table, whose
 * columns become the kept version's again (as the owner, in the gateway).
 */
void
backfill_gold_swap_back(Oid target, Oid kept)
{
	medallion_own_ddl_begin();
	gold_shape_apply(target, gold_table_shape(kept));
	medallion_own_ddl_end();
	CommandCounterIncrement();
	(void) medallion_backfill_swap_rows(target, kept);
}
