/*-------------------------------------------------------------------------
 *
 * create.c
 *	  medallion.create_gold(): validating a model's query, its table, its
 *	  dependencies.
 *
 * The query is parsed, analysed and planned as the creator, with a run's
 * settings pinned, before anything is created: a bad query, a bad
 * partition_by, a missing privilege leave nothing behind.  Its upstreams
 * come from the analysed query's range table (never declared by hand), and
 * so does the column each maps the model's partitions through, where the
 * partition column is that column, date(col), col::date or
 * date_trunc('day'|'month', col).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parse_node.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteHandler.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"

#include "medallion.h"
#include "gold/gold.h"

PG_FUNCTION_INFO_V1(medallion_create_gold);

/* The options of create_gold, as given. */
typedef struct GoldOptions
{
	bool		monthly;
	bool		has_granularity;
	char	   *lookback;
	Jsonb	   *partition_sources;	/* object: upstream -> column, or NULL */
	char	   *description;
	List	   *column_docs;	/* of GoldColumnDoc * (option columns) */
	Contract	settings;
} GoldOptions;

/* A relation the query reads, and how often. */
typedef struct ReadRelation
{
	Oid			relid;
	int			count;
} ReadRelation;

static char *
jb_text(JsonbValue *v)
{
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (v->type == jbvBool)
		return pstrdup(v->val.boolean ? "on" : "off");
	return NULL;
}

/*
 * options.settings of a model into settings (the allow-list of silver's).
 */
void
gold_parse_settings(Jsonb *options, Contract *settings)
{
	JsonbValue	k;
	JsonbValue *v;
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	memset(settings, 0, sizeof(*settings));
	if (options == NULL || !JB_ROOT_IS_OBJECT(options))
		return;
	k.type = jbvString;
	k.val.string.val = "settings";
	k.val.string.len = strlen("settings");
	v = findJsonbValueFromContainer(&options->root, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option settings must be an object of setting names and values")));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = pnstrdup(e.val.string.val, e.val.string.len);
			if (!medallion_setting_allowed(key))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("setting \"%s\" cannot be set by option settings", key),
						 errhint("Option settings may set TimeZone, DateStyle, IntervalStyle, extra_float_digits, lc_*, work_mem and jit.")));
		}
		else if (tok == WJB_VALUE)
		{
			char	   *val = jb_text(&e);

			if (val == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("setting \"%s\" must be a string, a number or a boolean", key)));
			settings->setting_names = lappend(settings->setting_names, key);
			settings->setting_values = lappend(settings->setting_values, val);
		}
	}
}

/*
 * Parses and checks create_gold's options.
 */
static void
parse_options(Jsonb *options, GoldOptions *o)
{
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	memset(o, 0, sizeof(*o));
	if (options == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	gold_parse_settings(options, &o->settings);
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = pnstrdup(e.val.string.val, e.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		if (strcmp(key, "granularity") == 0)
		{
			char	   *g = (e.type == jbvString) ? jb_text(&e) : "";

			if (strcmp(g, "day") != 0 && strcmp(g, "month") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option granularity must be \"day\" or \"month\"")));
			o->monthly = (strcmp(g, "month") == 0);
			o->has_granularity = true;
		}
		else if (strcmp(key, "lookback") == 0)
		{
			if (e.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option lookback must be an interval, such as \"3 days\"")));
			o->lookback = jb_text(&e);
			/* it must read as an interval (22007 otherwise) and not go backwards */
			if (DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(o->lookback),
													  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)))->time < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option lookback must not be negative")));
		}
		else if (strcmp(key, "partition_sources") == 0)
		{
			if (e.type != jbvBinary || !JsonContainerIsObject(e.val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option partition_sources must be an object of upstream tables and columns"),
						 errhint("For example {\"silver.orders\": \"order_date\"}.")));
			o->partition_sources = JsonbValueToJsonb(&e);
		}
		else if (strcmp(key, "description") == 0)
		{
			if (e.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option description must be a string")));
			o->description = jb_text(&e);
		}
		else if (strcmp(key, "columns") == 0)
			o->column_docs = gold_column_docs_parse(&e);
		else if (strcmp(key, "settings") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized option \"%s\"", key),
					 errhint("Valid options of create_gold are granularity, partition_sources, lookback, settings, description and columns.")));
	}
}

/* Collects every relation the query reads, at any level, with counts. */
static bool
collect_relations(Node *node, List **rels)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;
		ListCell   *lc;

		if (rte->rtekind == RTE_RELATION)
		{
			foreach(lc, *rels)
			{
				ReadRelation *r = lfirst(lc);

				if (r->relid == rte->relid)
				{
					r->count++;
					return false;
				}
			}
			{
				ReadRelation *r = palloc0(sizeof(ReadRelation));

				r->relid = rte->relid;
				r->count = 1;
				*rels = lappend(*rels, r);
			}
		}
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, collect_relations, rels, QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, collect_relations, rels);
}

/*
 * The Var of the query's top level under a partition expression of a
 * mappable form (the column, date(col), col::date, date_trunc('day' or
 * 'month', col)), or NULL.  *exact: the bare column, or a date of a
 * timestamp without time zone: no time zone between the upstream's days
 * and the model's.
 */
static Var *
partition_var(Expr *expr, bool *exact)
{
	while (expr && IsA(expr, RelabelType))
		expr = ((RelabelType *) expr)->arg;
	*exact = true;
	if (expr && IsA(expr, Var))
		return (Var *) expr;
	if (expr && IsA(expr, FuncExpr))
	{
		FuncExpr   *f = (FuncExpr *) expr;
		Expr	   *arg = NULL;

		if ((f->funcid == F_DATE_TIMESTAMPTZ || f->funcid == F_DATE_TIMESTAMP) &&
			list_length(f->args) == 1)
			arg = linitial(f->args);
		else if ((f->funcid == F_DATE_TRUNC_TEXT_TIMESTAMPTZ || f->funcid == F_DATE_TRUNC_TEXT_TIMESTAMP) &&
				 list_length(f->args) == 2 && IsA(linitial(f->args), Const) &&
				 !((Const *) linitial(f->args))->constisnull)
		{
			char	   *unit = TextDatumGetCString(((Const *) linitial(f->args))->constvalue);

			if (pg_strcasecmp(unit, "day") == 0 || pg_strcasecmp(unit, "month") == 0)
				arg = lsecond(f->args);
		}
		while (arg && IsA(arg, RelabelType))
			arg = ((RelabelType *) arg)->arg;
		if (arg && IsA(arg, Var))
		{
			*exact = (exprType((Node *) arg) != TIMESTAMPTZOID);
			return (Var *) arg;
		}
	}
	return NULL;
}

/*
 * The column of an upstream the model's partition column is computed from,
 * as a Var of the query's top level, or NULL.  Only where a row of the
 * model's partition P can come from the upstream's rows of P alone: the
 * upstream read once in the whole query, at the top level, and no window
 * functions, LIMIT, set operations, grouping sets or DISTINCT ON there
 * (each can mix rows of several days into one).  Then the partition's rows
 * are the query's over the upstream rows whose column lies in P's range.
 * *exact: no time zone between the column's days and the model's.
 */
Var *
gold_partition_source(Query *q, TargetEntry *part, bool *exact)
{
	Var		   *var;
	RangeTblEntry *rte;
	List	   *rels = NIL;
	ListCell   *lc;

	if (q->setOperations || q->hasWindowFuncs || q->limitCount ||
		q->limitOffset || q->groupingSets || q->hasDistinctOn || q->hasTargetSRFs)
		return NULL;
	var = partition_var(part->expr, exact);
	if (var == NULL || var->varlevelsup != 0 || var->varattno <= 0 ||
		var->varno < 1 || var->varno > list_length(q->rtable))
		return NULL;
	rte = rt_fetch(var->varno, q->rtable);
	if (rte->rtekind != RTE_RELATION)
		return NULL;
	(void) query_tree_walker(q, collect_relations, &rels, QTW_EXAMINE_RTES_BEFORE);
	foreach(lc, rels)
		if (((ReadRelation *) lfirst(lc))->relid == rte->relid && ((ReadRelation *) lfirst(lc))->count != 1)
			return NULL;
	return var;
}

/*
 * The upstream column the model's partitions map through, inferred from
 * the query (gold_partition_source), or NULL.
 */
static char *
infer_column(Query *q, TargetEntry *part, ReadRelation *rel, bool *widen)
{
	bool		exact;
	Var		   *var = gold_partition_source(q, part, &exact);

	*widen = false;
	if (var == NULL || rt_fetch(var->varno, q->rtable)->relid != rel->relid)
		return NULL;
	*widen = !exact;
	return get_attname(rel->relid, var->varattno, false);
}

/*
 * The pipeline whose table a relation is (a silver or gold pipeline), or
 * NULL when the relation is outside the layers medallion tracks.
 */
static char *
relation_pipeline(Oid relid)
{
	Oid			nsp = get_rel_namespace(relid);
	const char *layer = NULL;
	Oid			t[2] = {TEXTOID, TEXTOID};
	Datum		v[2];
	MedallionGateway gw;
	char	   *name = NULL;
	MemoryContext caller = CurrentMemoryContext;

	if (nsp == get_namespace_oid("silver", true))
		layer = "silver";
	else if (nsp == get_namespace_oid("gold", true))
		layer = "gold";
	if (layer == NULL || get_rel_relispartition(relid))
		return NULL;
	v[0] = CStringGetTextDatum(layer);
	v[1] = CStringGetTextDatum(get_rel_name(relid));
	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec("SELECT p.name FROM medallion.pipelines p "
							   "WHERE p.layer OPERATOR(pg_catalog.=) $1 AND p.relname OPERATOR(pg_catalog.=) $2",
							   2, t, v, NULL, 1, SPI_OK_SELECT) == 1)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		name = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return name;
}

/* Whether a type is one a model can be partitioned on. */
static bool
is_partition_type(Oid typid)
{
	return typid == DATEOID || typid == TIMESTAMPOID || typid == TIMESTAMPTZOID;
}

/*
 * The column partition_sources declares for an upstream, checked, or NULL.
 */
static char *
declared_column(GoldOptions *o, const char *pipeline, Oid relid)
{
	JsonbValue	k;
	JsonbValue *v;
	char	   *col;
	AttrNumber	att;

	if (o->partition_sources == NULL)
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) pipeline;
	k.val.string.len = strlen(pipeline);
	v = findJsonbValueFromContainer(&o->partition_sources->root, JB_FOBJECT, &k);
	if (v == NULL)
		return NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partition_sources of \"%s\" must be a column name", pipeline)));
	col = jb_text(v);
	att = get_attnum(relid, col);
	if (att == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of \"%s\" does not exist", col, pipeline),
				 errdetail("It is named in option partition_sources.")));
	if (!is_partition_type(getBaseType(get_atttype(relid, att))))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of \"%s\" is not a date, timestamp or timestamptz column", col, pipeline),
				 errdetail("It is named in option partition_sources.")));
	return col;
}

/*
 * Every key of partition_sources must name an upstream the query reads.
 */
static void
check_declared_upstreams(GoldOptions *o, List *pipelines)
{
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;

	if (o->partition_sources == NULL)
		return;
	it = JsonbIteratorInit(&o->partition_sources->root);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		char	   *key;
		ListCell   *lc;
		bool		found = false;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(e.val.string.val, e.val.string.len);
		foreach(lc, pipelines)
			if (strcmp(lfirst(lc), key) == 0)
				found = true;
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("partition_sources names \"%s\", which is not a silver or gold upstream of the query", key),
					 errhint("Keys of partition_sources are pipelines the query reads, such as \"silver.orders\".")));
	}
}

/*
 * Analyses and plans the query as the current user, with the settings of a
 * run pinned; checks the privileges the query needs (SELECT on every
 * relation, column privileges included, as the executor would).
 */
static Query *
analyse_query(const char *query, Contract *settings, char **statement)
{
	List	   *raw;
	RawStmt    *rs;
	Query	   *q;
	List	   *rewritten;
	ListCell   *lc;
	int			nestlevel;

	medallion_run_settings_push(settings, &nestlevel);
	raw = pg_parse_query(query);
	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must be exactly one SELECT statement")));
	rs = linitial_node(RawStmt, raw);
	if (!IsA(rs->stmt, SelectStmt) || ((SelectStmt *) rs->stmt)->intoClause != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must be a SELECT statement"),
				 errdetail("A gold model is a query over silver and gold tables.")));
	/* the statement alone (no trailing semicolon): runs wrap it in a subquery */
	*statement = rs->stmt_len > 0 ? pnstrdup(query + rs->stmt_location, rs->stmt_len)
		: pstrdup(query + rs->stmt_location);
	q = parse_analyze_fixedparams(rs, query, NULL, 0, NULL);
	if (q->commandType != CMD_SELECT || q->utilityStmt != NULL || q->hasModifyingCTE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must be a SELECT statement without data-modifying statements")));
	if (q->rowMarks != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must not lock rows (FOR UPDATE, FOR SHARE)")));
	rewritten = QueryRewrite(copyObject(q));
	foreach(lc, rewritten)
	{
		PlannedStmt *ps = pg_plan_query(lfirst(lc), query, CURSOR_OPT_PARALLEL_OK, NULL);

		(void) ExecCheckRTPerms(ps->rtable, true);
	}
	AtEOXact_GUC(true, nestlevel);
	return q;
}

/*
 * The table's column list: exactly the query's output columns, in order.
 */
static char *
column_list(Query *q, const char *partition_by, Oid *part_type)
{
	StringInfoData buf;
	ListCell   *lc;
	List	   *seen = NIL;
	bool		found = (partition_by == NULL);

	initStringInfo(&buf);
	foreach(lc, q->targetList)
	{
		TargetEntry *te = lfirst(lc);
		Oid			typid;
		Oid			coll;
		ListCell   *s;

		if (te->resjunk)
			continue;
		typid = exprType((Node *) te->expr);
		foreach(s, seen)
			if (strcmp(lfirst(s), te->resname) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("query has two output columns named \"%s\"", te->resname),
						 errhint("Give every output column its own name with AS.")));
		seen = lappend(seen, te->resname);
		if (get_typtype(typid) == TYPTYPE_PSEUDO)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("output column \"%s\" has pseudo-type %s", te->resname, format_type_extended(typid, -1, FORMAT_TYPE_FORCE_QUALIFY)),
					 errhint("Cast it to a type a table column can have.")));
		appendStringInfo(&buf, "%s%s %s", buf.len ? ", " : "", quote_identifier(te->resname),
						 format_type_extended(typid, exprTypmod((Node *) te->expr),
											  FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY));
		coll = exprCollation((Node *) te->expr);
		if (OidIsValid(coll) && coll != get_typcollation(typid))
			appendStringInfo(&buf, " COLLATE %s", generate_collation_name(coll));
		if (partition_by && strcmp(te->resname, partition_by) == 0)
		{
			found = true;
			*part_type = getBaseType(typid);
			if (!is_partition_type(*part_type))
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("partition_by column \"%s\" is of type %s", partition_by, format_type_extended(typid, -1, FORMAT_TYPE_FORCE_QUALIFY)),
						 errdetail("A model is partitioned on a date, timestamp or timestamptz column.")));
		}
	}
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("partition_by column \"%s\" is not an output column of the query", partition_by)));
	if (buf.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("query has no output columns")));
	return buf.data;
}

/*
 * Refuses a model whose upstreams reach it, or lie on a cycle: runs could
 * not be ordered.  (A new model has no downstream yet; a cycle among its
 * upstreams, made by hand or by references, is refused all the same.)
 */
static void
check_no_cycle(const char *pipeline)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(pipeline)};
	MedallionGateway gw;
	uint64		n;
	char	   *on = NULL;

	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec("WITH RECURSIVE up AS ("
							   " SELECT d.upstream AS name, ARRAY[$1, d.upstream]::pg_catalog.text[] AS path, "
							   "        d.upstream OPERATOR(pg_catalog.=) $1 AS cycle"
							   " FROM medallion.dependencies d WHERE d.pipeline OPERATOR(pg_catalog.=) $1"
							   " UNION ALL"
							   " SELECT d.upstream, up.path OPERATOR(pg_catalog.||) d.upstream, "
							   "        d.upstream OPERATOR(pg_catalog.=) ANY (up.path)"
							   " FROM up JOIN medallion.dependencies d ON d.pipeline OPERATOR(pg_catalog.=) up.name"
							   " WHERE NOT up.cycle)"
							   "SELECT pg_catalog.array_to_string(path, ' <- '::pg_catalog.text) FROM up WHERE cycle LIMIT 1",
							   1, t, v, NULL, 1, SPI_OK_SELECT);
	if (n == 1)
		on = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	medallion_gateway_leave(&gw);
	if (on)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_GOLD_CYCLE),
				 errmsg("pipeline \"%s\" would be part of a dependency cycle", pipeline),
				 errdetail("Its upstreams lead back in a cycle: %s.", on),
				 errhint("A model reads silver and gold tables that do not depend on it.")));
}

/*
 * The SQL type of a column or an output expression, qualified, with its
 * COLLATE when it is not the type's own: the same text for the query's
 * output and the table's column of it, so that shapes compare as text.
 */
char *
gold_column_type(Oid typid, int32 typmod, Oid collation)
{
	char	   *type = format_type_extended(typid, typmod,
											FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);

	if (OidIsValid(collation) && collation != get_typcollation(typid))
		return psprintf("%s COLLATE %s", type, generate_collation_name(collation));
	return type;
}

/*
 * The output columns of the query as GoldColumns, in order.
 */
static List *
query_shape(Query *q)
{
	List	   *shape = NIL;
	ListCell   *lc;

	foreach(lc, q->targetList)
	{
		TargetEntry *te = lfirst(lc);
		GoldColumn *c;

		if (te->resjunk)
			continue;
		c = palloc0(sizeof(GoldColumn));
		c->name = pstrdup(te->resname);
		c->type = gold_column_type(exprType((Node *) te->expr), exprTypmod((Node *) te->expr),
								   exprCollation((Node *) te->expr));
		shape = lappend(shape, c);
	}
	return shape;
}

/*
 * Validates a model's query, partition_by and options as the current user
 * (create_gold and alter_pipeline's "query" both call this): the query
 * parsed, analysed, planned and its privileges checked with a run's
 * settings pinned; its output columns, the partition column and type; the
 * upstreams and the column each maps the partitions through.  Creates
 * nothing.
 */
void
gold_definition_validate(const char *pipeline, const char *query, const char *partition_by,
						 Jsonb *options, GoldDefinition *d)
{
	GoldOptions o;
	Query	   *q;
	List	   *rels = NIL;
	List	   *dep_names = NIL;
	TargetEntry *part = NULL;
	ListCell   *lc;

	memset(d, 0, sizeof(*d));
	parse_options(options, &o);
	if (partition_by == NULL && (o.has_granularity || o.lookback || o.partition_sources))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options granularity, lookback and partition_sources need partition_by")));
	d->pipeline = pstrdup(pipeline);
	d->partition_by = partition_by ? pstrdup(partition_by) : NULL;
	d->monthly = o.monthly;
	d->lookback = o.lookback;
	d->description = o.description;
	d->options = options;

	q = analyse_query(query, &o.settings, &d->query);
	d->columns = column_list(q, partition_by, &d->part_type);
	d->shape = query_shape(q);
	if (partition_by)
		foreach(lc, q->targetList)
			if (!((TargetEntry *) lfirst(lc))->resjunk &&
				strcmp(((TargetEntry *) lfirst(lc))->resname, partition_by) == 0)
				part = lfirst(lc);

	/* the upstreams, and how each maps to the partitions */
	(void) query_tree_walker(q, collect_relations, &rels, QTW_EXAMINE_RTES_BEFORE);
	foreach(lc, rels)
	{
		ReadRelation *rel = lfirst(lc);
		char	   *up = relation_pipeline(rel->relid);
		GoldUpstream *u;

		if (up == NULL)
		{
			ereport(NOTICE,
					(errmsg("relation %s is not a silver or gold pipeline's table: its changes never refresh \"%s\"",
							quote_qualified_identifier(get_namespace_name(get_rel_namespace(rel->relid)), get_rel_name(rel->relid)), pipeline),
					 errhint("Run the model to refresh it after such a change.")));
			continue;
		}
		if (list_member(dep_names, makeString(up)))
			continue;
		dep_names = lappend(dep_names, makeString(up));
		u = palloc0(sizeof(GoldUpstream));
		u->pipeline = up;
		if (part)
		{
			u->column = declared_column(&o, up, rel->relid);
			if (u->column == NULL)
				u->column = infer_column(q, part, rel, &u->widen);
			else
				u->widen = (getBaseType(get_atttype(rel->relid, get_attnum(rel->relid, u->column))) == TIMESTAMPTZOID);
			if (u->column == NULL)
				ereport(NOTICE,
						(errmsg("changes to \"%s\" refresh the whole model \"%s\"", up, pipeline),
						 errdetail("Its rows cannot be mapped to partitions of column \"%s\".", partition_by),
						 errhint("Name the column of \"%s\" they map through in option partition_sources, e.g. {\"partition_sources\": {\"%s\": \"...\"}}.",
								 up, up)));
		}
		d->upstreams = lappend(d->upstreams, u);
	}
	{
		List	   *names = NIL;

		foreach(lc, d->upstreams)
			names = lappend(names, ((GoldUpstream *) lfirst(lc))->pipeline);
		check_declared_upstreams(&o, names);
	}
}

/*
 * A validated model as its definition (medallion.pipelines.definition and
 * its versions in medallion.contract_versions): the query, the partitioning,
 * the options as given, the output columns (a changed shape is found by
 * comparing them with the table's) and the upstreams (rollback() restores
 * a version's edges from them).
 */
Jsonb *
gold_definition_json(GoldDefinition *d)
{
	StringInfoData def;
	ListCell   *lc;
	bool		first = true;

	initStringInfo(&def);
	appendStringInfoString(&def, "{\"query\": ");
	escape_json(&def, d->query);
	appendStringInfoString(&def, ", \"partition_by\": ");
	if (d->partition_by)
		escape_json(&def, d->partition_by);
	else
		appendStringInfoString(&def, "null");
	appendStringInfo(&def, ", \"partition_type\": \"%s\", \"granularity\": \"%s\", \"lookback\": ",
					 d->part_type == DATEOID ? "date" : d->part_type == TIMESTAMPOID ? "timestamp" :
					 d->part_type == TIMESTAMPTZOID ? "timestamptz" : "",
					 d->monthly ? "month" : "day");
	if (d->lookback)
		escape_json(&def, d->lookback);
	else
		appendStringInfoString(&def, "null");
	appendStringInfoString(&def, ", \"widen\": [");
	foreach(lc, d->upstreams)
	{
		GoldUpstream *u = lfirst(lc);

		if (!u->widen)
			continue;
		if (!first)
			appendStringInfoString(&def, ", ");
		first = false;
		escape_json(&def, u->pipeline);
	}
	appendStringInfoString(&def, "], \"columns\": [");
	foreach(lc, d->shape)
	{
		GoldColumn *c = lfirst(lc);

		appendStringInfoString(&def, lc == list_head(d->shape) ? "{\"name\": " : ", {\"name\": ");
		escape_json(&def, c->name);
		appendStringInfoString(&def, ", \"type\": ");
		escape_json(&def, c->type);
		appendStringInfoChar(&def, '}');
	}
	appendStringInfoString(&def, "], \"upstreams\": [");
	foreach(lc, d->upstreams)
	{
		GoldUpstream *u = lfirst(lc);

		appendStringInfoString(&def, lc == list_head(d->upstreams) ? "{\"pipeline\": " : ", {\"pipeline\": ");
		escape_json(&def, u->pipeline);
		appendStringInfoString(&def, ", \"column\": ");
		if (u->column)
			escape_json(&def, u->column);
		else
			appendStringInfoString(&def, "null");
		appendStringInfoChar(&def, '}');
	}
	appendStringInfoString(&def, "], \"options\": ");
	appendStringInfoString(&def, d->options ? JsonbToCString(NULL, &d->options->root, 0) : "{}");
	appendStringInfoChar(&def, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(def.data)));
}

/*
 * Replaces a model's query edges in medallion.dependencies by upstreams
 * (of GoldUpstream *), then refuses a cycle.
 */
void
gold_dependencies_store(const char *pipeline, List *upstreams)
{
	ListCell   *lc;
	Oid			t1[1] = {TEXTOID};
	Datum		v1[1] = {CStringGetTextDatum(pipeline)};

	(void) medallion_catalog_exec("DELETE FROM medallion.dependencies "
								  "WHERE pipeline OPERATOR(pg_catalog.=) $1 "
								  "AND kind OPERATOR(pg_catalog.=) 'query'::pg_catalog.text",
								  1, t1, v1, NULL, SPI_OK_DELETE);
	foreach(lc, upstreams)
	{
		GoldUpstream *u = lfirst(lc);
		Oid			t[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		v[3];
		char		nulls[3] = "  n";

		v[0] = CStringGetTextDatum(pipeline);
		v[1] = CStringGetTextDatum(u->pipeline);
		if (u->column)
		{
			v[2] = CStringGetTextDatum(u->column);
			nulls[2] = ' ';
		}
		(void) medallion_catalog_exec("INSERT INTO medallion.dependencies (pipeline, upstream, kind, partition_column) "
									  "VALUES ($1, $2, 'query', $3)",
									  3, t, v, nulls, SPI_OK_INSERT);
	}
	check_no_cycle(pipeline);
}

/*
 * medallion.create_gold(name, query, partition_by, options) → regclass
 */
Datum
medallion_create_gold(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *query;
	char	   *partition_by = NULL;
	Jsonb	   *options = NULL;
	Oid			nsp = get_namespace_oid("gold", false);
	GoldOptions o;
	GoldDefinition d;
	char	   *pipeline;
	char	   *qrel;
	Jsonb	   *def;
	Oid			relid;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name and query must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!PG_ARGISNULL(2))
		partition_by = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (!PG_ARGISNULL(3))
		options = PG_GETARG_JSONB_P(3);
	/* the options first: a bad one is the first error, before any name check */
	parse_options(options, &o);
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("gold table name must not be empty")));
	if ((int) strlen(name) > (partition_by ? GOLD_MAX_NAME : NAMEDATALEN - 1))
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("gold table name \"%s\" is too long", name),
				 errdetail_plural("The name of a model may have at most %d byte (its partitions add a suffix).",
								  "The name of a model may have at most %d bytes (its partitions add a suffix).",
								  partition_by ? GOLD_MAX_NAME : NAMEDATALEN - 1,
								  partition_by ? GOLD_MAX_NAME : NAMEDATALEN - 1)));
	if (partition_by == NULL && (o.has_granularity || o.lookback || o.partition_sources))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options granularity, lookback and partition_sources need partition_by")));
	if (pg_namespace_aclcheck(nsp, GetUserId(), ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create gold tables"),
				 errdetail("Creating a gold model needs the CREATE privilege on schema \"gold\"."),
				 errhint("An administrator can run: GRANT CREATE ON SCHEMA gold TO %s;",
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
	if (OidIsValid(get_relname_relid(name, nsp)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"gold.%s\" already exists", name)));
	pipeline = medallion_pipeline_name("gold", name);

	gold_definition_validate(pipeline, query, partition_by, options, &d);
	{
		List	   *names = NIL;
		ListCell   *lc;

		/* the described columns are output columns of the query */
		foreach(lc, d.shape)
			names = lappend(names, ((GoldColumn *) lfirst(lc))->name);
		gold_column_docs_check(o.column_docs, names, pipeline);
	}

	/* the table, as the creator: exactly the query's columns */
	qrel = quote_qualified_identifier("gold", name);
	medallion_own_ddl_begin();
	SPI_connect();
	if (SPI_execute(psprintf("CREATE TABLE %s (%s)%s; COMMENT ON TABLE %s IS %s",
							 qrel, d.columns,
							 partition_by ? psprintf(" PARTITION BY RANGE (%s)", quote_identifier(partition_by)) : "",
							 qrel, quote_literal_cstr(o.description ? o.description :
													  psprintf("medallion gold model %s", pipeline))),
					false, 0) < 0)
		elog(ERROR, "could not create %s", qrel);
	SPI_finish();
	medallion_own_ddl_end();
	CommandCounterIncrement();
	relid = get_relname_relid(name, nsp);
	gold_column_docs_apply(relid, o.column_docs);

	/* the pipeline, its definition (version 1) and its edges */
	medallion_catalog_add_pipeline(pipeline, "gold", name, GetUserId(), NULL, (Datum) 0, true,
								   options ? options : DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))),
								   d.description);
	def = gold_definition_json(&d);
	if (medallion_contract_version_add(pipeline, def, "none", false, GetUserId()) == 0)
	{
		Oid			t[2] = {TEXTOID, JSONBOID};
		Datum		v[2];

		/* a catalog without versions: the definition alone */
		v[0] = CStringGetTextDatum(pipeline);
		v[1] = JsonbPGetDatum(def);
		(void) medallion_catalog_exec("UPDATE medallion.pipelines SET definition = $2 "
									  "WHERE name OPERATOR(pg_catalog.=) $1",
									  2, t, v, NULL, SPI_OK_UPDATE);
	}
	gold_dependencies_store(pipeline, d.upstreams);
	PG_RETURN_OID(relid);
}
