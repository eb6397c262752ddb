/*-------------------------------------------------------------------------
 *
 * alter.c
 *	  alter_pipeline(model, '{"query": ...}'): a new query for a gold model,
 *	  as the next version of its definition; and a version put back
 *	  (rollback()).
 *
 * The new query is validated as create_gold validates one
 * (gold_definition_validate), with the model's partitioning and options.
 * Its definition becomes the next version in medallion.contract_versions
 * (the model's definition history) and the model's edges follow its
 * query.  Same output columns: the next refresh uses it; the partitions
 * already built keep the earlier query's rows until a backfill recomputes
 * them.  Other output columns: the table is left as it is, and runs refuse
 * (shape.c, MD012) until a full or blue-green backfill builds the new
 * columns and rows together.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "medallion.h"
#include "gold/gold.h"
#include "schema/contract_versions.h"

/* A string key of a definition, or NULL. */
static char *
def_string(Jsonb *def, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&def->root, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* The create_gold options a definition keeps, or NULL. */
static Jsonb *
def_options(Jsonb *def)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&def->root, "options", strlen("options"), NULL);

	if (v == NULL || v->type != jbvBinary)
		return NULL;
	return JsonbValueToJsonb(v);
}

/* options without its "query" key. */
static Jsonb *
without_query(Jsonb *options)
{
	JsonbParseState *st = NULL;
	JsonbIterator *it = JsonbIteratorInit(&options->root);
	JsonbIteratorToken tok;
	JsonbValue	k,
				v;

	(void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		if (k.val.string.len == 5 && strncmp(k.val.string.val, "query", 5) == 0)
			continue;
		(void) pushJsonbValue(&st, WJB_KEY, &k);
		(void) pushJsonbValue(&st, WJB_VALUE, &v);
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/* The schema_changes row of a query change. */
static void
record_change(const char *pipeline, const char *relation, int32 version, bool shape_changed)
{
	Jsonb	   *detail = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(
		psprintf("{\"version\": %d, \"query_changed\": true, \"columns_changed\": %s}",
				 version, shape_changed ? "true" : "false"))));

	medallion_contract_change_record(pipeline, relation, shape_changed ? "breaking" : "safe", detail);
}

/*
 * alter_pipeline() of a gold model: a "query" option makes the next version
 * of its definition (the caller owns the model: alter_pipeline checked);
 * returns the other options, for the options every pipeline has.
 */
Jsonb *
medallion_gold_alter(const char *name, Jsonb *options)
{
	JsonbValue *qv = getKeyJsonValueFromContainer(&options->root, "query", 5, NULL);
	Pipeline	p = {0};
	GoldDefinition d;
	Jsonb	   *olddef;
	Jsonb	   *newdef;
	char	   *old_type;
	Oid			nsp;
	Oid			relid;
	bool		same_shape;
	int32		version;

	if (qv == NULL)
		return options;
	if (qv->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option query must be a string holding one SELECT statement")));

	/* the run lock: a run in progress finishes with the query it began with */
	if (!medallion_pipeline_lookup(name, &p, true, false, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", name)));
	if (!has_privs_of_role(GetUserId(), p.owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of pipeline \"%s\"", name)));
	olddef = p.definition;
	nsp = get_namespace_oid("gold", false);
	relid = get_relname_relid(p.relname, nsp);
	if (olddef == NULL || !OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table \"gold.%s\" of pipeline \"%s\" does not exist", p.relname, p.name)));

	/* validated as create_gold validates, with the model's partitioning and options */
	gold_definition_validate(p.name, pnstrdup(qv->val.string.val, qv->val.string.len),
							 def_string(olddef, "partition_by"), def_options(olddef), &d);
	old_type = def_string(olddef, "partition_type");
	if (d.partition_by && old_type &&
		strcmp(old_type, d.part_type == DATEOID ? "date" : d.part_type == TIMESTAMPOID ? "timestamp" : "timestamptz") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the new query changes the type of partition column \"%s\" of gold model \"%s\"",
						d.partition_by, p.name),
				 errdetail("It was of type %s; the table is partitioned on it.", old_type),
				 errhint("Keep the column's type in the query (a cast), or create a new model.")));
	same_shape = gold_shape_equal(d.shape, gold_table_shape(relid));

	/* the model's history starts with the definition it had (0.2.0 models made before) */
	if (p.definition_version == 0)
		(void) medallion_contract_version_add(p.name, olddef, "none", false, p.owner);
	newdef = gold_definition_json(&d);
	version = medallion_contract_version_add(p.name, newdef, "none", false, GetUserId());
	gold_dependencies_store(p.name, d.upstreams);
	medallion_gold_changes_forget_unread();
	record_change(p.name, quote_qualified_identifier("gold", p.relname), version, !same_shape);
	/* the scheduler looks again at the model, whose columns may be pending, or no longer */
	medallion_wake_scheduler_at_commit();

	if (same_shape)
		ereport(NOTICE,
				(errmsg("the query of gold model \"%s\" is now version %d; it takes effect at the next refresh",
						p.name, version),
				 errdetail("Partitions already built keep the earlier query's rows until they are backfilled."),
				 errhint("Recompute history with SELECT medallion.backfill(%s, from_date, to_date); or with NULL dates and strategy 'full'.",
						 quote_literal_cstr(p.name))));
	else
		ereport(NOTICE,
				(errmsg("the query of gold model \"%s\" is now version %d, with other output columns: the change is pending",
						p.name, version),
				 errdetail("Runs of the model are refused until a full or blue-green backfill builds the new columns and rows."),
				 errhint("Run SELECT medallion.backfill(%s, NULL, NULL, 'full'); (or strategy 'blue_green').",
						 quote_literal_cstr(p.name))));
	return without_query(options);
}

/*
 * Makes a stored version of a model's definition its current one again
 * (rollback()), with the edges it had.  The caller holds the run lock.
 */
void
medallion_gold_definition_restore(const char *pipeline, int32 version)
{
	Oid			t[2] = {TEXTOID, INT4OID};
	Datum		v[2];
	List	   *rows;
	Jsonb	   *def;
	JsonbValue *ups;
	List	   *upstreams = NIL;

	v[0] = CStringGetTextDatum(pipeline);
	v[1] = Int32GetDatum(version);
	(void) medallion_catalog_exec("UPDATE medallion.pipelines p SET definition = cv.definition, "
								  "definition_version = cv.version "
								  "FROM medallion.contract_versions cv "
								  "WHERE p.name OPERATOR(pg_catalog.=) $1 "
								  "AND cv.pipeline OPERATOR(pg_catalog.=) $1 "
								  "AND cv.version OPERATOR(pg_catalog.=) $2",
								  2, t, v, NULL, SPI_OK_UPDATE);
	rows = medallion_catalog_query("SELECT cv.definition FROM medallion.contract_versions cv "
								   "WHERE cv.pipeline OPERATOR(pg_catalog.=) $1 "
								   "AND cv.version OPERATOR(pg_catalog.=) $2",
								   2, t, v, NULL);
	if (rows == NIL)
		return;
	def = DatumGetJsonbP(((MedallionRow *) linitial(rows))->values[0]);
	ups = getKeyJsonValueFromContainer(&def->root, "upstreams", strlen("upstreams"), NULL);
	if (ups == NULL || ups->type != jbvBinary)
		return;					/* a version that did not record its edges: left as they are */
	{
		JsonbIterator *it = JsonbIteratorInit(ups->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			JsonbValue *n;
			JsonbValue *c;
			GoldUpstream *u;

			if (tok != WJB_ELEM || e.type != jbvBinary)
				continue;
			n = getKeyJsonValueFromContainer(e.val.binary.data, "pipeline", 8, NULL);
			c = getKeyJsonValueFromContainer(e.val.binary.data, "column", 6, NULL);
			if (n == NULL || n->type != jbvString)
				continue;
			u = palloc0(sizeof(GoldUpstream));
			u->pipeline = pnstrdup(n->val.string.val, n->val.string.len);
			if (c && c->type == jbvString)
				u->column = pnstrdup(c->val.string.val, c->val.string.len);
			upstreams = lappend(upstreams, u);
		}
	}
	gold_dependencies_store(pipeline, upstreams);
}
