/*-------------------------------------------------------------------------
 *
 * plan.c
 *	  A backfill's plan: the days of its range, the rows each holds, and
 *	  what the backfill does with each.
 *
 * Silver ranges are ingestion days: bronze's daily partitions (or with the
 * contract option event_time, the days of the typed event time).  Gold ranges
 * are the model's partitions (days or months); a model without partitions
 * is recomputed whole.  Row counts come from the partitions' statistics,
 * or, for a partition never analyzed, from counting it as the pipeline's
 * owner (the data's owner reads it, never a more privileged role).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "backfill/backfill.h"
#include "silver/silver.h"

/* The day (days since 2000-01-01) as 'YYYY-MM-DD'. */
char *
backfill_day_text(int day)
{
	int			y,
				m,
				d;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	return psprintf("%04d-%02d-%02d", y, m, d);
}

/* The day a partition named <relname>_pYYYYMMDD holds, or BACKFILL_NO_DAY. */
static int
partition_day(const char *partname)
{
	size_t		len = strlen(partname);
	int			y,
				m,
				d;

	if (len < 10 || partname[len - 10] != '_' || partname[len - 9] != 'p' ||
		strspn(partname + len - 8, "0123456789") != 8)
		return BACKFILL_NO_DAY;
	if (sscanf(partname + len - 8, "%4d%2d%2d", &y, &m, &d) != 3)
		return BACKFILL_NO_DAY;
	return date2j(y, m, d) - POSTGRES_EPOCH_JDATE;
}

/* The rows of a relation: its statistics, or counted as the owner. */
static int64
relation_rows(Oid relid, Oid owner)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	float4		reltuples = -1;
	MedallionGateway gw;
	bool		isnull;
	int64		n;

	if (HeapTupleIsValid(tup))
	{
		reltuples = ((Form_pg_class) GETSTRUCT(tup))->reltuples;
		ReleaseSysCache(tup);
	}
	if (reltuples >= 0)
		return (int64) reltuples;
	medallion_gateway_enter(owner, &gw);
	(void) medallion_gateway_exec(psprintf("SELECT pg_catalog.count(*) FROM %s",
										   quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
																	  get_rel_name(relid))),
								  0, NULL, NULL, NULL, 1, SPI_OK_SELECT);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	medallion_gateway_leave(&gw);
	return n;
}

/*
 * The partitions of a table, as (day, relid) pairs; *first and *last: the
 * days held (BACKFILL_NO_DAY when none).
 */
static List *
partitions_by_day(Oid relid, int *first, int *last)
{
	List	   *children = find_inheritance_children(relid, AccessShareLock);
	List	   *out = NIL;
	ListCell   *lc;

	*first = *last = BACKFILL_NO_DAY;
	foreach(lc, children)
	{
		Oid			child = lfirst_oid(lc);
		char	   *name = get_rel_name(child);
		int			day = name ? partition_day(name) : BACKFILL_NO_DAY;

		if (day == BACKFILL_NO_DAY)
			continue;
		out = lappend(out, list_make2_int(day, (int) child));
		if (*first == BACKFILL_NO_DAY || day < *first)
			*first = day;
		if (*last == BACKFILL_NO_DAY || day > *last)
			*last = day;
	}
	return out;
}

static Oid
partition_of_day(List *parts, int day)
{
	ListCell   *lc;

	foreach(lc, parts)
	{
		List	   *pair = lfirst(lc);

		if (linitial_int(pair) == day)
			return (Oid) lsecond_int(pair);
	}
	return InvalidOid;
}

static void
add_day(BackfillPlan *plan, int day, int64 rows, const char *action)
{
	BackfillDay *d = palloc(sizeof(BackfillDay));

	d->day = day;
	d->est_rows = rows;
	d->action = action;
	plan->days = lappend(plan->days, d);
	if (strcmp(action, "skip") != 0)
	{
		plan->ndays++;
		plan->est_rows += rows;
	}
}

/* The relation of a pipeline's table (layer.relname), or InvalidOid. */
static Oid
layer_relid(const char *qualified)
{
	const char *dot = strchr(qualified, '.');
	Oid			nsp;

	if (dot == NULL)
		return InvalidOid;
	nsp = get_namespace_oid(pnstrdup(qualified, dot - qualified), true);
	return OidIsValid(nsp) ? get_relname_relid(dot + 1, nsp) : InvalidOid;
}

/*
 * The plan of a silver range by event time (contract option event_time):
 * every day of the range is recomputed, and its estimate is the silver rows
 * whose event time falls on it (UTC days for timestamptz), counted as the
 * owner.  Bronze cannot prune by event time: the backfill reads all
 * retained bronze once, whatever the range.
 */
static void
plan_event_time(const Pipeline *p, const Contract *c, const BackfillRequest *req, BackfillPlan *plan)
{
	ColumnSpec *col = medallion_contract_column((Contract *) c, c->event_time);
	const char *qcol = quote_identifier(col->name);
	const char *day_of = col->typid == DATEOID ? psprintf("t.%s", qcol) :
		col->typid == TIMESTAMPOID ? psprintf("t.%s::pg_catalog.date", qcol) :
		psprintf("pg_catalog.timezone('UTC'::pg_catalog.text, t.%s)::pg_catalog.date", qcol);
	Oid			t[2] = {DATEOID, DATEOID};
	Datum		v[2] = {DateADTGetDatum(req->from_day), DateADTGetDatum(req->to_day)};
	MedallionGateway gw;
	int64	   *rows = palloc0(sizeof(int64) * (req->to_day - req->from_day + 1));
	uint64		i;
	uint64		n;
	int			day;

	medallion_gateway_enter(p->owner, &gw);
	n = medallion_gateway_exec(psprintf("SELECT d, pg_catalog.count(*) FROM (SELECT %s AS d FROM %s t) x "
										"WHERE d OPERATOR(pg_catalog.>=) $1 AND d OPERATOR(pg_catalog.<=) $2 GROUP BY d",
										day_of, quote_qualified_identifier("silver", p->relname)),
							   2, t, v, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		DateADT		d = DatumGetDateADT(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		rows[d - req->from_day] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}
	medallion_gateway_leave(&gw);
	plan->from_day = req->from_day;
	plan->to_day = req->to_day;
	for (day = req->from_day; day <= req->to_day; day++)
		add_day(plan, day, rows[day - req->from_day], "recompute");
}

/*
 * The plan of a backfill.  A whole-history request resolves its range to
 * the days the partitions hold.
 */
void
backfill_plan_make(const Pipeline *p, BackfillRequest *req, BackfillPlan *plan)
{
	bool		silver = (strcmp(p->layer, "silver") == 0);
	Oid			relid = layer_relid(silver ? p->source : p->name);
	const char *work = strcmp(req->strategy, "partition") == 0 ? "recompute" : "rebuild";
	List	   *parts;
	int			first;
	int			last;
	int			day;

	memset(plan, 0, sizeof(*plan));
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table of pipeline \"%s\" does not exist", p->name),
				 errdetail("Pipeline \"%s\" reads or writes %s.", p->name, silver ? p->source : p->name)));
	if (silver && !req->whole)
	{
		Contract   *c = silver_contract_get(p);

		if (c->event_time)
		{
			plan_event_time(p, c, req, plan);
			return;
		}
	}
	parts = partitions_by_day(relid, &first, &last);

	if (!silver && parts == NIL)
	{
		/* a model without partitions: one unit of work, the whole table */
		add_day(plan, BACKFILL_NO_DAY, relation_rows(relid, p->owner), work);
		plan->from_day = req->whole ? 0 : req->from_day;
		plan->to_day = req->whole ? 0 : req->to_day;
		return;
	}
	if (req->whole)
	{
		req->from_day = first;
		req->to_day = last;
	}
	plan->from_day = req->from_day;
	plan->to_day = req->to_day;
	if (req->whole && first == BACKFILL_NO_DAY)
		return;					/* nothing landed yet */
	for (day = req->from_day; day <= req->to_day; day++)
	{
		Oid			part = partition_of_day(parts, day);

		if (OidIsValid(part))
		{
			int64		rows = relation_rows(part, p->owner);

			add_day(plan, day, rows, (silver && rows == 0) ? "skip" : work);
		}
		else if (silver)
			add_day(plan, day, 0, "skip");
		else
			add_day(plan, day, 0, work);	/* a monthly model, or a day that had no rows */
	}
}
