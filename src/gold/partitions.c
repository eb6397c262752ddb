/*-------------------------------------------------------------------------
 *
 * partitions.c
 *	  The day or month partitions of gold models: names, bounds, creation on
 *	  demand.
 *
 * A partition is made as bronze makes its days: a standalone table LIKE the
 * model (with its indexes, so that ATTACH adopts them instead of building
 * them under its lock), a CHECK that implies the bounds (so ATTACH skips
 * its scan), then ATTACH PARTITION, which takes SHARE UPDATE EXCLUSIVE on
 * the model: readers never wait.  CREATE TABLE ... PARTITION OF would take
 * ACCESS EXCLUSIVE on it.  NULL partition values are refused (no DEFAULT
 * partition: rows there would block creating the matching partition later,
 * and its ATTACH check would lock it against readers).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"

#include "medallion.h"
#include "gold/gold.h"

/* A day (days since 2000-01-01) as year, month, day. */
static void
split_day(int day, int *y, int *m, int *d)
{
	j2date(day + POSTGRES_EPOCH_JDATE, y, m, d);
}

/* The first day of the partition holding a day. */
int
gold_partition_start(int day, bool monthly)
{
	int			y,
				m,
				d;

	if (!monthly)
		return day;
	split_day(day, &y, &m, &d);
	return date2j(y, m, 1) - POSTGRES_EPOCH_JDATE;
}

/* The first day after the partition starting at a day. */
int
gold_partition_end(int start, bool monthly)
{
	int			y,
				m,
				d;

	if (!monthly)
		return start + 1;
	split_day(start, &y, &m, &d);
	if (++m > 12)
	{
		m = 1;
		y++;
	}
	return date2j(y, m, 1) - POSTGRES_EPOCH_JDATE;
}

/* "<relname>_pYYYYMMDD" (a month partition: its first day). */
char *
gold_partition_name(const char *relname, int day)
{
	int			y,
				m,
				d;

	split_day(day, &y, &m, &d);
	return psprintf("%s_p%04d%02d%02d", relname, y, m, d);
}

/*
 * The start of a day as a literal of the partition column's type
 * (timestamptz: the UTC day, as bronze's partitions).
 */
char *
gold_bound_literal(Oid part_type, int day)
{
	int			y,
				m,
				d;

	split_day(day, &y, &m, &d);
	switch (part_type)
	{
		case DATEOID:
			return psprintf("'%04d-%02d-%02d'::pg_catalog.date", y, m, d);
		case TIMESTAMPOID:
			return psprintf("'%04d-%02d-%02d 00:00:00'::pg_catalog.\"timestamp\"", y, m, d);
		default:
			return psprintf("'%04d-%02d-%02d 00:00:00+00'::pg_catalog.timestamptz", y, m, d);
	}
}

/*
 * Makes sure the partition starting at a day exists.  Called inside a run,
 * as the model's owner (runs of a model are serialised, so there is no
 * concurrent creator to wait for).
 */
void
gold_ensure_partition(GoldModel *m, int start)
{
	Oid			nsp = get_namespace_oid("gold", false);
	char	   *partname = gold_partition_name(m->p->relname, start);
	Oid			relid = get_relname_relid(partname, nsp);
	const char *qpart;
	const char *col;
	char	   *lo;
	char	   *hi;
	char	   *sql;

	if (OidIsValid(relid) && get_rel_relispartition(relid))
		return;
	qpart = quote_qualified_identifier("gold", partname);
	col = quote_identifier(m->partition_by);
	lo = gold_bound_literal(m->part_type, start);
	hi = gold_bound_literal(m->part_type, gold_partition_end(start, m->monthly));
	sql = psprintf("CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);"
				   "ALTER TABLE %s ADD CONSTRAINT medallion_bound CHECK "
				   "(%s IS NOT NULL AND %s OPERATOR(pg_catalog.>=) %s AND %s OPERATOR(pg_catalog.<) %s);"
				   "ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s);",
				   qpart, m->qrel, qpart, col, col, lo, col, hi, m->qrel, qpart, lo, hi);
	medallion_own_ddl_begin();
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "could not create partition %s", qpart);
	medallion_own_ddl_end();
}
