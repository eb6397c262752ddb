/*-------------------------------------------------------------------------
 *
 * shape.c
 *	  A model's output columns (its shape): as its definition says, as its
 *	  table has them, and the ALTER TABLE that makes the table follow a
 *	  changed query.
 *
 * alter_pipeline() may give a model a query whose output columns differ
 * from its table's.  The definition then says the new columns and the
 * table still has the old ones: runs refuse (MD012) until a full or
 * blue-green backfill rebuilds the rows and alters the table's columns in
 * the same transaction.  The table is altered, never replaced, so it keeps
 * its OID (the user's views, grants and comments stay); a column the new
 * query no longer has is dropped RESTRICT, so a user's view over it makes
 * the backfill fail as a whole.  New columns come last: rows are written
 * by column name, never by position.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "medallion.h"
#include "gold/gold.h"

/* The columns of a table (not dropped), in order, as GoldColumns. */
List *
gold_table_shape(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *shape = NIL;
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		GoldColumn *c;

		if (att->attisdropped)
			continue;
		c = palloc0(sizeof(GoldColumn));
		c->name = pstrdup(NameStr(att->attname));
		c->type = gold_column_type(att->atttypid, att->atttypmod, att->attcollation);
		shape = lappend(shape, c);
	}
	table_close(rel, AccessShareLock);
	return shape;
}

/*
 * The output columns a definition records, or NIL for a definition made
 * before they were recorded (its table is then taken as right).
 */
List *
gold_definition_shape(Jsonb *def)
{
	JsonbValue *cols;
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;
	List	   *shape = NIL;

	if (def == NULL)
		return NIL;
	cols = getKeyJsonValueFromContainer(&def->root, "columns", strlen("columns"), NULL);
	if (cols == NULL || cols->type != jbvBinary || !JsonContainerIsArray(cols->val.binary.data))
		return NIL;
	it = JsonbIteratorInit(cols->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		JsonbValue *n;
		JsonbValue *t;
		GoldColumn *c;

		if (tok != WJB_ELEM || e.type != jbvBinary)
			continue;
		n = getKeyJsonValueFromContainer(e.val.binary.data, "name", 4, NULL);
		t = getKeyJsonValueFromContainer(e.val.binary.data, "type", 4, NULL);
		if (n == NULL || t == NULL || n->type != jbvString || t->type != jbvString)
			elog(ERROR, "malformed column in a gold definition");
		c = palloc0(sizeof(GoldColumn));
		c->name = pnstrdup(n->val.string.val, n->val.string.len);
		c->type = pnstrdup(t->val.string.val, t->val.string.len);
		shape = lappend(shape, c);
	}
	return shape;
}

/* The column of a shape with this name, or NULL. */
static GoldColumn *
shape_find(List *shape, const char *name)
{
	ListCell   *lc;

	foreach(lc, shape)
		if (strcmp(((GoldColumn *) lfirst(lc))->name, name) == 0)
			return lfirst(lc);
	return NULL;
}

/*
 * Whether a model's query has other output columns than its table, read
 * from the catalog caches without locking the table: the scheduler's
 * pending check, which must not wait for a backfill altering it.  Such a
 * model is not started by the scheduler (its run would fail until a
 * backfill builds the columns, and its failures would open the breaker,
 * which refuses the very backfill); a manual run() says why (MD012).
 */
bool
medallion_gold_shape_pending(Pipeline *p)
{
	List	   *want = gold_definition_shape(p->definition);
	Oid			nsp = get_namespace_oid("gold", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(p->relname, nsp) : InvalidOid;
	List	   *have = NIL;
	int16		attnum;

	if (want == NIL || !OidIsValid(relid))
		return false;
	for (attnum = 1;; attnum++)
	{
		HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(attnum));
		Form_pg_attribute att;

		if (!HeapTupleIsValid(tup))
			break;
		att = (Form_pg_attribute) GETSTRUCT(tup);
		if (!att->attisdropped)
		{
			GoldColumn *c = palloc0(sizeof(GoldColumn));

			c->name = pstrdup(NameStr(att->attname));
			c->type = gold_column_type(att->atttypid, att->atttypmod, att->attcollation);
			have = lappend(have, c);
		}
		ReleaseSysCache(tup);
	}
	return !gold_shape_equal(want, have);
}

/*
 * Whether two shapes have the same columns (names and types); order does
 * not matter: rows are written by name.
 */
bool
gold_shape_equal(List *a, List *b)
{
	ListCell   *lc;

	if (list_length(a) != list_length(b))
		return false;
	foreach(lc, a)
	{
		GoldColumn *x = lfirst(lc);
		GoldColumn *y = shape_find(b, x->name);

		if (y == NULL || strcmp(x->type, y->type) != 0)
			return false;
	}
	return true;
}

/* The quoted names of a shape's columns, each after prefix, comma-separated. */
char *
gold_shape_names(List *shape, const char *prefix)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, shape)
		appendStringInfo(&buf, "%s%s%s", buf.len ? ", " : "", prefix,
						 quote_identifier(((GoldColumn *) lfirst(lc))->name));
	return buf.data;
}

/*
 * Refuses to refresh a model whose definition's columns are not its
 * table's: a query with other output columns, waiting for a backfill.
 */
void
gold_shape_check(GoldModel *m)
{
	List	   *want = gold_definition_shape(m->p->definition);

	if (want == NIL || gold_shape_equal(want, gold_table_shape(m->relid)))
		return;
	ereport(ERROR,
			(errcode(MEDALLION_ERRCODE_GOLD_SHAPE_PENDING),
			 errmsg("the output columns of gold model \"%s\" changed and its table has the earlier ones",
					m->p->name),
			 errdetail("Its query (definition version %d) was changed by alter_pipeline(); its rows and columns are built by a full or blue-green backfill.",
					   m->p->definition_version),
			 errhint("Run SELECT medallion.backfill(%s, NULL, NULL, 'full'); (or strategy 'blue_green').",
					 quote_literal_cstr(m->p->name))));
}

static void
shape_apply_context(void *arg)
{
	errcontext("altering the columns of %s to its query's output columns (nothing of the backfill is applied)",
			   (const char *) arg);
}

static void
exec_ddl(const char *sql)
{
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "SPI_execute failed for: %s", sql);
}

/*
 * Alters a table's columns to a shape, as the current user (the owner,
 * inside SPI): columns not in it dropped (RESTRICT: a view over one stops
 * the whole change), changed types altered, new columns added last.  The
 * caller replaces every row right after (a type change sets the old ones
 * NULL) and wraps this in medallion_own_ddl_begin/end.  The partition column never
 * changes (alter_pipeline refuses it).
 */
void
gold_shape_apply(Oid relid, List *to)
{
	List	   *from = gold_table_shape(relid);
	char	   *qrel = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												  get_rel_name(relid));
	ListCell   *lc;
	ErrorContextCallback context;

	/* a user's view over a dropped column: say what medallion was doing */
	context.callback = shape_apply_context;
	context.arg = qrel;
	context.previous = error_context_stack;
	error_context_stack = &context;

	foreach(lc, from)
	{
		GoldColumn *c = lfirst(lc);
		GoldColumn *n = shape_find(to, c->name);

		if (n == NULL)
			exec_ddl(psprintf("ALTER TABLE %s DROP COLUMN %s RESTRICT", qrel, quote_identifier(c->name)));
		else if (strcmp(n->type, c->type) != 0)
			exec_ddl(psprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s USING NULL",
							  qrel, quote_identifier(c->name), n->type));
	}
	foreach(lc, to)
	{
		GoldColumn *n = lfirst(lc);

		if (shape_find(from, n->name) == NULL)
			exec_ddl(psprintf("ALTER TABLE %s ADD COLUMN %s %s", qrel, quote_identifier(n->name), n->type));
	}
	error_context_stack = context.previous;
}
