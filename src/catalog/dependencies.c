/*-------------------------------------------------------------------------
 *
 * dependencies.c
 *	  The pipeline graph: the rows of medallion.dependencies.
 *
 * Edges are found from definitions (a silver pipeline's bronze source, the
 * pipelines whose tables its contract references, a gold query's range
 * table), never declared by hand.  The layers that define pipelines record
 * their edges here; run_all() and the lineage view read them.  A loop is
 * refused by the table's own trigger (medallion.dependencies_acyclic), so
 * every writer is held to it: run_all() could not order a loop, and a
 * pipeline that feeds itself has no meaning.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "medallion.h"

/*
 * The name of the pipeline whose table a relation is, or NULL when the
 * relation is no pipeline's (a table a user made in a layer's schema, say).
 * Found from the relation's OID, never from a name a user could shadow.
 */
char *
medallion_pipeline_of_relation(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname = get_namespace_name(get_rel_namespace(relid));
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	MedallionGateway gw;
	char	   *pipeline = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	if (relname == NULL || nspname == NULL)
		return NULL;
	values[0] = CStringGetTextDatum(nspname);
	values[1] = CStringGetTextDatum(relname);
	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec("SELECT p.name FROM medallion.pipelines p "
							   "WHERE p.layer OPERATOR(pg_catalog.=) $1 "
							   "AND p.relname OPERATOR(pg_catalog.=) $2",
							   2, argtypes, values, NULL, 1, SPI_OK_SELECT) == 1)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		pipeline = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return pipeline;
}

/*
 * Whether the catalog has the graph (0.2.0).  The library may serve a 0.1.0
 * catalog until ALTER EXTENSION UPDATE, which records the edges of the
 * pipelines made meanwhile.
 */
bool
medallion_catalog_has_dependencies(void)
{
	Oid			nsp = get_namespace_oid("medallion", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("dependencies", nsp));
}

/*
 * Sets the upstreams of one kind of a pipeline (a list of pipeline names):
 * the rows of that kind not in the list are removed, the others added or
 * updated.  partition_columns is NIL, or a list as long as upstreams whose
 * elements (NULL allowed) are each edge's partition_column (gold).  A
 * pipeline is never its own upstream (a table that references itself reads
 * its own rows: no edge).  The table's trigger raises MD020, and so rolls
 * the caller's change back, when the graph would have a loop.
 *
 * Writers of the graph take turns (a lock that conflicts with itself, held
 * to commit; readers are not blocked): two transactions adding the two
 * halves of a loop at once would each see no loop in the other's absence.
 */
void
medallion_dependencies_set(const char *pipeline, const char *kind, List *upstreams,
						   List *partition_columns)
{
	MedallionGateway gw;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[4];
	Datum	   *names;
	Datum	   *columns;
	bool	   *column_nulls;
	int			dims[1];
	int			lbs[1] = {1};
	int			n = 0;
	ListCell   *lc;

	Assert(partition_columns == NIL || list_length(partition_columns) == list_length(upstreams));
	if (!medallion_catalog_has_dependencies())
		return;
	names = palloc(sizeof(Datum) * (list_length(upstreams) + 1));
	columns = palloc(sizeof(Datum) * (list_length(upstreams) + 1));
	column_nulls = palloc(sizeof(bool) * (list_length(upstreams) + 1));
	foreach(lc, upstreams)
	{
		const char *column = partition_columns ?
			list_nth(partition_columns, foreach_current_index(lc)) : NULL;

		if (strcmp(lfirst(lc), pipeline) == 0)
			continue;
		names[n] = CStringGetTextDatum(lfirst(lc));
		columns[n] = column ? CStringGetTextDatum(column) : (Datum) 0;
		column_nulls[n] = (column == NULL);
		n++;
	}
	dims[0] = n;
	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(kind);
	values[2] = PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_md_array(columns, column_nulls, 1, dims, lbs,
												   TEXTOID, -1, false, TYPALIGN_INT));

	medallion_catalog_enter(&gw);
	(void) medallion_gateway_exec("LOCK TABLE medallion.dependencies IN SHARE ROW EXCLUSIVE MODE",
								  0, NULL, NULL, NULL, 0, SPI_OK_UTILITY);
	(void) medallion_gateway_exec("DELETE FROM medallion.dependencies d "
								  "WHERE d.pipeline OPERATOR(pg_catalog.=) $1 "
								  "AND d.kind OPERATOR(pg_catalog.=) $2 "
								  "AND NOT d.upstream OPERATOR(pg_catalog.=) ANY ($3)",
								  4, argtypes, values, NULL, 0, SPI_OK_DELETE);
	/* one row per upstream, whose first partition column given wins */
	(void) medallion_gateway_exec("INSERT INTO medallion.dependencies AS d "
								  "(pipeline, upstream, kind, partition_column) "
								  "SELECT DISTINCT ON (u.name) $1, u.name, $2, u.col "
								  "FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4)) WITH ORDINALITY AS u(name, col, i) "
								  "ORDER BY u.name, u.col IS NULL, u.i "
								  "ON CONFLICT (pipeline, upstream, kind) "
								  "DO UPDATE SET partition_column = EXCLUDED.partition_column",
								  4, argtypes, values, NULL, 0, SPI_OK_INSERT);
	medallion_gateway_leave(&gw);
}
