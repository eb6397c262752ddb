/*-------------------------------------------------------------------------
 *
 * pushdown.c
 *	  A model's query for some partitions, with their range put on the
 *	  upstream column the partition column is computed from.
 *
 * An incremental refresh filters the query's output on the partition
 * column; PostgreSQL pushes that filter through a GROUP BY, but as written:
 * date(ordered_at) >= '2024-01-02' cannot use an index on ordered_at, and
 * the refresh of one day would read the whole upstream.  Where the
 * partition column is the column, date(col), col::date or date_trunc('day'
 * or 'month', col) of an upstream read once at the query's top level
 * (gold_partition_source), the same range on col itself selects exactly
 * the rows those partitions are made of; it is added to the query's WHERE
 * and the query printed back (ruleutils, as views are).  The bounds are
 * read as the column's type under the run's settings, the time zone the
 * query's date() uses.  The filter on the output stays: this one only
 * makes the read follow the changed days.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "parser/analyze.h"
#include "parser/parsetree.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"

#include "medallion.h"
#include "gold/gold.h"

/*
 * A day as a Const of a date/time type: read under the current settings,
 * or at UTC midnight (utc: a timestamptz partition column, whose
 * partitions are UTC days).
 */
static Const *
day_const(Oid typid, int day, bool utc)
{
	int			y,
				m,
				d;
	Oid			input;
	Oid			ioparam;
	char	   *text;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	text = psprintf(typid == DATEOID ? "%04d-%02d-%02d" : utc ? "%04d-%02d-%02d 00:00:00+00" : "%04d-%02d-%02d 00:00:00",
					y, m, d);
	getTypeInputInfo(typid, &input, &ioparam);
	return makeConst(typid, -1, InvalidOid, get_typlen(typid),
					 OidInputFunctionCall(input, text, ioparam, -1), false, get_typbyval(typid));
}

/* var OP value, with pg_catalog's operator of that name for the type. */
static Expr *
compare(const char *op, Var *var, Const *value)
{
	Oid			opno = OpernameGetOprid(list_make2(makeString("pg_catalog"), makeString(pstrdup(op))),
										var->vartype, var->vartype);

	if (!OidIsValid(opno))
		return NULL;
	return make_opclause(opno, BOOLOID, false, (Expr *) copyObject(var), (Expr *) value,
						 InvalidOid, InvalidOid);
}

/*
 * The model's query, restricted on its upstream's column to the ranges of
 * the partitions starting at the given days (sorted), or the query as it
 * is when its partition column is not computed from one.  Called as the
 * model's owner with the run's settings pinned.
 */
char *
gold_query_for_partitions(GoldModel *m, List *starts)
{
	List	   *raw = pg_parse_query(m->query);
	Query	   *q;
	TargetEntry *part = NULL;
	ListCell   *lc;
	Var		   *var;
	bool		exact;
	bool		utc;
	List	   *ors = NIL;
	int			lo = 0;
	int			hi = 0;
	bool		open = false;

	if (list_length(raw) != 1)
		return m->query;
	q = parse_analyze_fixedparams(linitial_node(RawStmt, raw), m->query, NULL, 0, NULL);
	foreach(lc, q->targetList)
	{
		TargetEntry *te = lfirst(lc);

		if (!te->resjunk && strcmp(te->resname, m->partition_by) == 0)
			part = te;
	}
	if (part == NULL || (var = gold_partition_source(q, part, &exact)) == NULL ||
		!(var->vartype == DATEOID || var->vartype == TIMESTAMPOID || var->vartype == TIMESTAMPTZOID))
		return m->query;

	/*
	 * A timestamptz partition column has UTC days: the column itself maps
	 * at UTC midnights; date_trunc() of it gives local midnights, which a
	 * time zone may put in the UTC day before (no pushdown then).
	 */
	utc = (m->part_type == TIMESTAMPTZOID && var->vartype == TIMESTAMPTZOID);
	if (utc && !exact)
		return m->query;

	/* contiguous partitions as one range */
	foreach(lc, starts)
	{
		int			s = lfirst_int(lc);
		bool		last = (lnext(starts, lc) == NULL);

		if (open && s == hi)
			hi = gold_partition_end(s, m->monthly);
		else
		{
			if (open)
				ors = lappend(ors, make_andclause(list_make2(compare(">=", var, day_const(var->vartype, lo, utc)),
															 compare("<", var, day_const(var->vartype, hi, utc)))));
			lo = s;
			hi = gold_partition_end(s, m->monthly);
			open = true;
		}
		if (last)
			ors = lappend(ors, make_andclause(list_make2(compare(">=", var, day_const(var->vartype, lo, utc)),
														 compare("<", var, day_const(var->vartype, hi, utc)))));
	}
	foreach(lc, ors)
	{
		ListCell   *c;

		foreach(c, ((BoolExpr *) lfirst(lc))->args)
			if (lfirst(c) == NULL)
				return m->query;
	}
	if (ors == NIL)
		return m->query;
	q->jointree->quals = make_and_qual(q->jointree->quals,
									   list_length(ors) == 1 ? linitial(ors) : (Node *) make_orclause(ors));
	return pg_get_querydef(q, false);
}
