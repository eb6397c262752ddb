/*-------------------------------------------------------------------------
 *
 * ddl_changes.c
 *	  What a DDL statement did to one tracked relation: classified, recorded
 *	  in medallion.schema_changes with its command tag, the snapshot brought
 *	  up to date, and, when it breaks them, the pipelines that read or write
 *	  the relation halted and alerted.
 *
 * Everything here runs as the catalog owner through the gateway, inside
 * the event trigger's subtransaction: a failure leaves nothing behind and
 * becomes a WARNING, never a failed DDL.  Rows written roll back with a
 * rolled-back DDL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "medallion.h"
#include "ops/ops.h"
#include "schema/schema.h"

/* The snapshot's columns (old) and the relation's now (new), one row each. */
#define COLUMNS_SQL(FROM) \
	"SELECT x.attnum, x.name, x.type, x.typname, x.format, x.typmod, x.\"notnull\", " \
	"x.hasdef, x.dropped FROM pg_catalog.jsonb_to_recordset(" FROM ") AS x(" \
	"attnum pg_catalog.int4, name pg_catalog.text, type pg_catalog.oid, typname pg_catalog.text, " \
	"format pg_catalog.text, typmod pg_catalog.int4, \"notnull\" pg_catalog.bool, " \
	"hasdef pg_catalog.bool, dropped pg_catalog.bool) ORDER BY x.attnum"

/*
 * The rows of the last gateway statement as ColumnStates, in "cxt".
 */
static ColumnState *
read_columns(int *n, MemoryContext cxt)
{
	ColumnState *cols = MemoryContextAllocZero(cxt, sizeof(ColumnState) * Max(SPI_processed, 1));
	MemoryContext old = MemoryContextSwitchTo(cxt);
	uint64		i;

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		ColumnState *c = &cols[i];
		char	   *s;

		c->attnum = DatumGetInt32(SPI_getbinval(t, d, 1, &isnull));
		c->name = SPI_getvalue(t, d, 2);
		c->type = DatumGetObjectId(SPI_getbinval(t, d, 3, &isnull));
		c->typname = (s = SPI_getvalue(t, d, 4)) ? s : "";
		c->format = (s = SPI_getvalue(t, d, 5)) ? s : "";
		c->typmod = DatumGetInt32(SPI_getbinval(t, d, 6, &isnull));
		c->notnull = DatumGetBool(SPI_getbinval(t, d, 7, &isnull));
		c->hasdef = DatumGetBool(SPI_getbinval(t, d, 8, &isnull));
		c->dropped = DatumGetBool(SPI_getbinval(t, d, 9, &isnull));
		if (c->name == NULL)
			c->name = "";
	}
	MemoryContextSwitchTo(old);
	*n = (int) SPI_processed;
	return cols;
}

/*
 * A text[] of C strings.
 */
static Datum
text_array(List *strings)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(strings), 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(list_length(strings), 1));
	int			dims[1] = {list_length(strings)};
	int			lbs[1] = {1};
	ListCell   *lc;
	int			i = 0;

	foreach(lc, strings)
	{
		nulls[i] = (lfirst(lc) == NULL);
		elems[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum((char *) lfirst(lc));
		i++;
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * The qualified, quoted name of a relation, or NULL if it is gone.
 */
static char *
relation_name(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname;

	if (relname == NULL)
		return NULL;
	nspname = get_namespace_name(get_rel_namespace(relid));
	return nspname ? quote_qualified_identifier(nspname, relname) : NULL;
}

/*
 * Halts the pipelines a breaking change hit, as the state machine says (a
 * paused one stays paused), and raises their schema_change alert.  Inside
 * the gateway; returns the pipelines whose state changed.
 */
static List *
halt_pipelines(List *pipelines, MemoryContext cxt)
{
	Oid			types[2] = {TEXTARRAYOID, TEXTOID};
	Datum		values[2];
	List	   *names;
	List	   *states;
	List	   *halted = NIL;
	ListCell   *ln,
			   *ls;

	values[0] = text_array(pipelines);
	(void) medallion_gateway_exec("SELECT name, state FROM medallion.pipelines "
								  "WHERE name OPERATOR(pg_catalog.=) ANY ($1) "
								  "ORDER BY name FOR NO KEY UPDATE",
								  1, types, values, NULL, 0, SPI_OK_SELECT);
	names = medallion_gateway_text_column(1, cxt);
	states = medallion_gateway_text_column(2, cxt);
	forboth(ln, names, ls, states)
	{
		const char *next = medallion_policy_next_state(lfirst(ls), PIPELINE_EVENT_FAILURE_HALTS);

		if (strcmp(next, lfirst(ls)) == 0)
			continue;
		values[0] = CStringGetTextDatum(lfirst(ln));
		values[1] = CStringGetTextDatum(next);
		(void) medallion_gateway_exec("UPDATE medallion.pipelines SET state = $2 "
									  "WHERE name OPERATOR(pg_catalog.=) $1",
									  2, (Oid[]) {TEXTOID, TEXTOID}, values, NULL, 0, SPI_OK_UPDATE);
		halted = lappend(halted, lfirst(ln));
	}
	return halted;
}

/*
 * Records what a DDL statement tagged "tag" did to tracked relation
 * "relid" (table_dropped: the sql_drop of the relation itself), and acts
 * on it.
 */
void
medallion_ddl_changes_apply(Oid relid, bool table_dropped, const char *tag)
{
	MedallionGateway gw;
	MemoryContext cxt = CurrentMemoryContext;
	Oid			types[7] = {OIDOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[7];
	char		nulls[7] = "       ";
	char	   *relation;
	char	   *now_name = NULL;
	List	   *pipelines;
	List	   *changes = NIL;
	List	   *paths = NIL,
			   *kinds = NIL,
			   *classes = NIL,
			   *details = NIL;
	List	   *halted = NIL;
	SchemaChange *first_breaking = NULL;
	ListCell   *lc;

	medallion_catalog_enter(&gw);
	values[0] = ObjectIdGetDatum(relid);
	if (medallion_gateway_exec("SELECT s.relation, p.name FROM medallion.column_snapshots s "
							   "JOIN medallion.pipelines p ON p.name OPERATOR(pg_catalog.=) ANY (s.pipelines) "
							   "WHERE s.relid OPERATOR(pg_catalog.=) $1 ORDER BY p.name",
							   1, types, values, NULL, 0, SPI_OK_SELECT) == 0)
	{
		/* tracked by no pipeline any longer: forget it */
		(void) medallion_gateway_exec("DELETE FROM medallion.column_snapshots "
									  "WHERE relid OPERATOR(pg_catalog.=) $1",
									  1, types, values, NULL, 0, SPI_OK_DELETE);
		medallion_gateway_leave(&gw);
		medallion_tracked_relations_changed();
		return;
	}
	relation = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	pipelines = medallion_gateway_text_column(2, cxt);

	if (!table_dropped)
		now_name = relation_name(relid);
	if (table_dropped || now_name == NULL)
	{
		changes = lappend(changes, medallion_table_change("table_dropped", relation, NULL));
		(void) medallion_gateway_exec("DELETE FROM medallion.column_snapshots "
									  "WHERE relid OPERATOR(pg_catalog.=) $1",
									  1, types, values, NULL, 0, SPI_OK_DELETE);
	}
	else
	{
		ColumnState *old,
				   *new;
		int			nold,
					nnew;

		(void) medallion_gateway_exec(COLUMNS_SQL("(SELECT s.columns FROM medallion.column_snapshots s "
												  "WHERE s.relid OPERATOR(pg_catalog.=) $1 FOR UPDATE)"),
									  1, types, values, NULL, 0, SPI_OK_SELECT);
		old = read_columns(&nold, cxt);
		(void) medallion_gateway_exec(COLUMNS_SQL("medallion.column_snapshot($1)"),
									  1, types, values, NULL, 0, SPI_OK_SELECT);
		new = read_columns(&nnew, cxt);
		changes = medallion_column_diff(old, nold, new, nnew);
		if (strcmp(relation, now_name) != 0)
			changes = lappend(changes, medallion_table_change("table_renamed", relation, now_name));
		/* the next DDL is compared with the relation as it is now */
		values[1] = CStringGetTextDatum(now_name);
		(void) medallion_gateway_exec("UPDATE medallion.column_snapshots "
									  "SET relation = $2, columns = medallion.column_snapshot($1), "
									  "taken_at = pg_catalog.clock_timestamp() "
									  "WHERE relid OPERATOR(pg_catalog.=) $1",
									  2, types, values, NULL, 0, SPI_OK_UPDATE);
	}

	foreach(lc, changes)
	{
		SchemaChange *c = lfirst(lc);

		paths = lappend(paths, c->path);
		kinds = lappend(kinds, (char *) c->change);
		classes = lappend(classes, (char *) medallion_change_class_name(c->class));
		details = lappend(details, c->detail);
		if (c->class == CHANGE_BREAKING && first_breaking == NULL)
			first_breaking = c;
	}
	if (changes != NIL)
	{
		values[0] = text_array(pipelines);
		values[1] = CStringGetTextDatum(relation);
		values[2] = CStringGetTextDatum(tag);
		values[3] = text_array(paths);
		values[4] = text_array(kinds);
		values[5] = text_array(classes);
		values[6] = text_array(details);
		(void) medallion_gateway_exec("INSERT INTO medallion.schema_changes "
									  "(pipeline, relation, path, change, classification, command_tag, detail) "
									  "SELECT p.p, $2, c.path, c.change, c.class, $3, c.detail::pg_catalog.jsonb "
									  "FROM pg_catalog.unnest($1) WITH ORDINALITY AS p(p, i), "
									  "ROWS FROM (pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), "
									  "  pg_catalog.unnest($7)) WITH ORDINALITY AS c(path, change, class, detail, i) "
									  "ORDER BY p.i, c.i",
									  7, (Oid[]) {TEXTARRAYOID, TEXTOID, TEXTOID, TEXTARRAYOID,
										  TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID},
									  values, nulls, 0, SPI_OK_INSERT);
	}
	if (first_breaking)
		halted = halt_pipelines(pipelines, cxt);
	medallion_gateway_leave(&gw);
	if (table_dropped || now_name == NULL)
		medallion_tracked_relations_changed();
	if (first_breaking == NULL)
		return;

	foreach(lc, pipelines)
	{
		const char *pipeline = lfirst(lc);
		bool		was_halted = false;
		ListCell   *lh;

		foreach(lh, halted)
			was_halted |= strcmp(lfirst(lh), pipeline) == 0;

		medallion_alert_raise(pipeline, "schema_change",
							  psprintf("%s on %s broke the pipeline: %s%s", tag, relation,
									   first_breaking->describe,
									   was_halted ? " The pipeline is halted until resume()." : ""));
		ereport(WARNING,
				(errmsg("%s on \"%s\" breaks pipeline \"%s\"", tag, relation, pipeline),
				 errdetail_internal("%s", first_breaking->describe),
				 strcmp(first_breaking->change, "table_dropped") == 0 ?
				 errhint("Drop the pipeline with medallion.drop_pipeline(%s), or restore the table and run medallion.resume(%s).",
						 quote_literal_cstr(pipeline), quote_literal_cstr(pipeline)) :
				 errhint("Adapt the pipeline or the table, then run medallion.resume(%s); the change is recorded in medallion.schema_changes.",
						 quote_literal_cstr(pipeline))));
	}
}
