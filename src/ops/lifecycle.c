/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  The end of a pipeline: medallion.drop_pipeline().
 *
 * A pipeline is a catalog row plus what hangs off it (watermark, schedule
 * and pg_cron job, expectations, batches, dead letters, quarantine, edges of
 * the graph, contract versions) and, usually, a table.  Dropping the table
 * alone used to leave the name taken for good; drop_pipeline() removes the
 * pipeline and, if asked, its table, in one transaction.
 *
 * What stays: run history (medallion.runs) and resolved alerts, which are a
 * record of what happened; schema_changes likewise.  What goes: dead letters
 * and quarantined rows (they belong to a pipeline that no longer exists, and
 * a new pipeline of the same name must not replay them).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "medallion.h"
#include "ops/ops.h"

PG_FUNCTION_INFO_V1(medallion_drop_pipeline);

/* the layers that own a table in the schema of the same name */
bool
medallion_layer_has_table(const char *layer)
{
	return strcmp(layer, "bronze") == 0 || strcmp(layer, "silver") == 0 ||
		strcmp(layer, "gold") == 0;
}

/*
 * The pipelines that read "name": edges of the graph, and silver pipelines
 * whose source column names it (pipelines made before the graph existed).
 */
List *
medallion_pipeline_downstream(const char *name)
{
	MedallionGateway gw;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	List	   *result;
	MemoryContext cxt = CurrentMemoryContext;

	medallion_catalog_enter(&gw);
	medallion_gateway_exec("SELECT d.pipeline FROM medallion.dependencies d "
						   "WHERE d.upstream OPERATOR(pg_catalog.=) $1 "
						   "  AND d.pipeline OPERATOR(pg_catalog.<>) $1 "
						   "UNION "
						   "SELECT p.name FROM medallion.pipelines p "
						   "WHERE p.source OPERATOR(pg_catalog.=) $1 "
						   "  AND p.name OPERATOR(pg_catalog.<>) $1 "
						   "ORDER BY 1",
						   1, types, values, NULL, 0, SPI_OK_SELECT);
	result = medallion_gateway_text_column(1, cxt);
	medallion_gateway_leave(&gw);
	return result;
}

/*
 * Runs DDL as the caller (who has the privileges of the table's owner),
 * marked as medallion's own so the DDL watch does not call it drift.
 */
static void
exec_own_ddl(const char *sql)
{
	MedallionGateway gw;

	medallion_own_ddl_begin();
	medallion_gateway_enter(GetUserId(), &gw);
	medallion_gateway_exec(sql, 0, NULL, NULL, NULL, 0, SPI_OK_UTILITY);
	medallion_gateway_leave(&gw);
	medallion_own_ddl_end();
}

/*
 * A bronze table's captures: the capture triggers on each source table and
 * the registry rows go with it.  The triggers are medallion's own objects
 * on a table the caller may not own, so the catalog owner drops them.
 */
static void
drop_captures_into(Oid bronze)
{
	MedallionGateway gw;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(bronze)};
	List	   *sources;
	ListCell   *lc;
	MemoryContext cxt = CurrentMemoryContext;

	medallion_catalog_enter(&gw);
	medallion_gateway_exec("DELETE FROM medallion.captures c "
						   "WHERE c.bronze OPERATOR(pg_catalog.=) $1::pg_catalog.regclass "
						   "RETURNING c.source::pg_catalog.oid::pg_catalog.text",
						   1, types, values, NULL, 0, SPI_OK_DELETE_RETURNING);
	sources = medallion_gateway_text_column(1, cxt);
	medallion_own_ddl_begin();
	foreach(lc, sources)
	{
		Oid			source = (Oid) strtoul(lfirst(lc), NULL, 10);
		char	   *relname = get_rel_name(source);
		char	   *qualified;

		if (relname == NULL)
			continue;
		qualified = quote_qualified_identifier(get_namespace_name(get_rel_namespace(source)),
											   relname);
		medallion_gateway_exec(psprintf("DROP TRIGGER IF EXISTS medallion_capture ON %s; "
										"DROP TRIGGER IF EXISTS medallion_capture_truncate ON %s",
										qualified, qualified),
							   0, NULL, NULL, NULL, 0, 0);
	}
	medallion_own_ddl_end();
	medallion_gateway_leave(&gw);
}

/*
 * Removes the pipeline's table (and a silver pipeline's tombstone table),
 * or, when the table stays, the triggers that make a bronze table
 * append-only and tie it to the catalog: it becomes a plain table.
 */
static void
drop_or_release_table(const Pipeline *p, bool drop_table)
{
	Oid			nsp = get_namespace_oid(p->layer, true);
	Oid			relid;
	char	   *qualified;

	if (!medallion_layer_has_table(p->layer) || !OidIsValid(nsp))
		return;
	relid = get_relname_relid(p->relname, nsp);

	if (strcmp(p->layer, "bronze") == 0 && OidIsValid(relid))
		drop_captures_into(relid);

	if (drop_table)
	{
		if (OidIsValid(relid))
			exec_own_ddl(psprintf("DROP TABLE %s",
								  quote_qualified_identifier(p->layer, p->relname)));
		if (strcmp(p->layer, "silver") == 0)
			exec_own_ddl(psprintf("DROP TABLE IF EXISTS %s",
								  quote_qualified_identifier("silver",
															 psprintf("_%s_deleted", p->relname))));
		return;
	}
	if (strcmp(p->layer, "bronze") != 0 || !OidIsValid(relid))
		return;
	qualified = quote_qualified_identifier("bronze", p->relname);
	exec_own_ddl(psprintf("DROP TRIGGER IF EXISTS medallion_append_only ON %s; "
						  "DROP TRIGGER IF EXISTS medallion_append_only_truncate ON %s; "
						  "DROP TRIGGER IF EXISTS medallion_landed ON %s; "
						  "DROP TRIGGER IF EXISTS medallion_redact ON %s",
						  qualified, qualified, qualified, qualified));
}

/*
 * Removes the catalog rows of one pipeline, in one statement.  Rows keyed
 * by a foreign key to medallion.pipelines (graph edges, contract versions)
 * go by cascade.
 */
static void
delete_catalog_rows(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	medallion_catalog_exec("WITH w AS (DELETE FROM medallion.watermarks WHERE pipeline OPERATOR(pg_catalog.=) $1), "
						   "e AS (DELETE FROM medallion.expectations WHERE pipeline OPERATOR(pg_catalog.=) $1), "
						   "r AS (DELETE FROM medallion.pause_requests WHERE pipeline OPERATOR(pg_catalog.=) $1), "
						   "b AS (DELETE FROM medallion.batches WHERE pipeline OPERATOR(pg_catalog.=) $1), "
						   "d AS (DELETE FROM medallion.dlq WHERE pipeline OPERATOR(pg_catalog.=) $1), "
						   "q AS (DELETE FROM medallion.quarantine WHERE pipeline OPERATOR(pg_catalog.=) $1), "
						   "a AS (UPDATE medallion.alerts SET resolved_at = pg_catalog.now() "
						   "      WHERE pipeline OPERATOR(pg_catalog.=) $1 AND resolved_at IS NULL) "
						   "DELETE FROM medallion.pipelines WHERE name OPERATOR(pg_catalog.=) $1",
						   1, types, values, NULL, SPI_OK_DELETE);
}

/*
 * Drops one pipeline, after the pipelines that read it when cascading.
 * "dropped" collects the names, downstream first.  Also DROP OWNED's
 * (ownership.c).
 */
void
medallion_pipeline_drop(const char *name, bool drop_table, bool cascade, List **dropped)
{
	Pipeline	p = {0};
	List	   *downstream;
	ListCell   *lc;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	/* the row lock is the run lock: a running run finishes first */
	medallion_require_owned(name, &p, true);

	downstream = medallion_pipeline_downstream(name);
	if (downstream != NIL && !cascade)
	{
		StringInfoData names;

		initStringInfo(&names);
		foreach(lc, downstream)
			appendStringInfo(&names, "%s%s", names.len ? ", " : "", (char *) lfirst(lc));
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop pipeline \"%s\" because other pipelines read it", name),
				 errdetail("Read by: %s.", names.data),
				 errhint("Drop them first, or use cascade => true.")));
	}
	foreach(lc, downstream)
	{
		const char *d = lfirst(lc);
		ListCell   *done;
		bool		seen = false;

		foreach(done, *dropped)
			seen |= strcmp(lfirst(done), d) == 0;
		if (!seen)
			medallion_pipeline_drop(d, drop_table, cascade, dropped);
	}

	medallion_drop_cron_job(name);
	drop_or_release_table(&p, drop_table);
	delete_catalog_rows(name);
	*dropped = lappend(*dropped, pstrdup(name));
}

/*
 * medallion.drop_pipeline(pipeline, drop_table, cascade) → text[]: the
 * pipelines dropped, downstream first.
 */
Datum
medallion_drop_pipeline(PG_FUNCTION_ARGS)
{
	List	   *dropped = NIL;
	Datum	   *elems;
	ListCell   *lc;
	int			i = 0;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the arguments of medallion.drop_pipeline() must not be NULL")));

	medallion_pipeline_drop(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_BOOL(1),
							PG_GETARG_BOOL(2), &dropped);

	elems = palloc(sizeof(Datum) * list_length(dropped));
	foreach(lc, dropped)
		elems[i++] = CStringGetTextDatum(lfirst(lc));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, i, TEXTOID, -1, false, TYPALIGN_INT));
}
