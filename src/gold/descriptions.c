/*-------------------------------------------------------------------------
 *
 * descriptions.c
 *	  A gold model's business documentation: the descriptions of its output
 *	  columns (option columns: {"col": {"description": "..."}}) become the
 *	  table's column comments, at create_gold and at alter_pipeline.
 *
 * The comments are the one place a description lives once applied: the
 * lineage view and the checklist read them back from the table, so what
 * they show is what psql's \d+ shows.  Option columns replaces the set: a
 * column it does not describe has no comment.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/comment.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "medallion.h"
#include "gold/gold.h"

/*
 * Parses option columns: an object whose keys are output columns and whose
 * values are objects with one key, description (a string, or null for
 * none).  NULL or a JSON null: no column described.  Returns a list of
 * GoldColumnDoc.
 */
List *
gold_column_docs_parse(JsonbValue *v)
{
	JsonbIterator *it;
	JsonbValue	k,
				e;
	JsonbIteratorToken tok;
	List	   *docs = NIL;

	if (v == NULL || v->type == jbvNull)
		return NIL;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option columns must be an object of output columns"),
				 errhint("For example {\"columns\": {\"total\": {\"description\": \"sum of the day's orders\"}}}.")));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		GoldColumnDoc *doc;
		JsonbValue *d;
		char	   *column;

		if (tok != WJB_KEY)
			continue;
		column = pnstrdup(k.val.string.val, k.val.string.len);
		(void) JsonbIteratorNext(&it, &e, true);
		if (e.type != jbvBinary || !JsonContainerIsObject(e.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option columns: the entry of column \"%s\" must be an object", column),
					 errhint("For example {\"%s\": {\"description\": \"...\"}}.", column)));
		/* description is the one key an entry has */
		if (JsonContainerSize(e.val.binary.data) != 1 ||
			(d = getKeyJsonValueFromContainer(e.val.binary.data, "description",
											  strlen("description"), NULL)) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option columns: the entry of column \"%s\" has keys other than description", column),
					 errhint("The only key of a column's entry is description.")));
		if (d->type != jbvString && d->type != jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option columns: the description of column \"%s\" must be a string", column)));
		doc = palloc0(sizeof(GoldColumnDoc));
		doc->column = column;
		if (d->type == jbvString)
			doc->description = pnstrdup(d->val.string.val, d->val.string.len);
		docs = lappend(docs, doc);
	}
	return docs;
}

/*
 * Refuses a described column that is not one of names (the model's output
 * columns): a typo must not pass unnoticed.
 */
void
gold_column_docs_check(List *docs, List *names, const char *pipeline)
{
	ListCell   *lc;

	foreach(lc, docs)
	{
		GoldColumnDoc *doc = lfirst(lc);
		ListCell   *n;
		bool		found = false;

		foreach(n, names)
			found |= (strcmp(lfirst(n), doc->column) == 0);
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option columns names \"%s\", which is not an output column of model \"%s\"",
							doc->column, pipeline),
					 errhint("Keys of option columns are the output columns of the model's query.")));
	}
}

/* The description docs give a column, or NULL. */
static const char *
doc_of(List *docs, const char *column)
{
	ListCell   *lc;

	foreach(lc, docs)
		if (strcmp(((GoldColumnDoc *) lfirst(lc))->column, column) == 0)
			return ((GoldColumnDoc *) lfirst(lc))->description;
	return NULL;
}

/*
 * Makes the column comments of a model's table (relid) those docs give,
 * every other column's none; only the comments that differ are written.
 * As the current user (create_gold's creator, alter_pipeline's caller, who
 * has the owner's privileges: COMMENT needs them), the table by OID, marked
 * as medallion's own DDL.
 */
void
gold_column_docs_apply(Oid relid, List *docs)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *qrel = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												  RelationGetRelationName(rel));
	StringInfoData sql;

	initStringInfo(&sql);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *want;
		char	   *have;

		if (att->attisdropped)
			continue;
		want = doc_of(docs, NameStr(att->attname));
		have = GetComment(relid, RelationRelationId, att->attnum);
		if ((want == NULL && have == NULL) || (want && have && strcmp(want, have) == 0))
			continue;
		appendStringInfo(&sql, "COMMENT ON COLUMN %s.%s IS %s;", qrel,
						 quote_identifier(NameStr(att->attname)),
						 want ? quote_literal_cstr(want) : "NULL");
	}
	relation_close(rel, AccessShareLock);
	if (sql.len == 0)
		return;
	medallion_own_ddl_begin();
	SPI_connect();
	if (SPI_execute(sql.data, false, 0) < 0)
		elog(ERROR, "could not comment on the columns of %s", qrel);
	SPI_finish();
	medallion_own_ddl_end();
}

/*
 * alter_pipeline(model, '{"columns": {...}}'): the model's column comments
 * become those given (null: none), checked against the table's columns.
 * The option itself is kept with the pipeline's other options.
 */
void
medallion_gold_alter_columns(const Pipeline *p, JsonbValue *columns)
{
	List	   *docs = gold_column_docs_parse(columns);
	Oid			nsp = get_namespace_oid("gold", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(p->relname, nsp) : InvalidOid;
	List	   *names = NIL;
	Relation	rel;
	TupleDesc	desc;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("gold table of pipeline \"%s\" does not exist", p->name)));
	rel = relation_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	for (int i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped)
			names = lappend(names, pstrdup(NameStr(TupleDescAttr(desc, i)->attname)));
	relation_close(rel, AccessShareLock);
	gold_column_docs_check(docs, names, p->name);
	gold_column_docs_apply(relid, docs);
}
