/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  apply_retention(): drops the day partitions of bronze tables older than
 *	  their retention, once every pipeline reading them has processed them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "bronze/bronze.h"

PG_FUNCTION_INFO_V1(medallion_apply_retention);

/* The watermark of one pipeline reading a bronze table. */
typedef struct Reader
{
	char	   *name;
	Datum		values[4];		/* done, target snapshots, resume xid, seq */
	char		nulls[4];
} Reader;

/*
 * The pipelines that read a bronze pipeline, with their watermarks, in name
 * order (read from the catalog as its owner).
 */
static List *
readers_of(const char *bronze_pipeline)
{
	MedallionGateway gw;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	List	   *readers = NIL;
	uint64		n,
				i;
	MemoryContext caller = CurrentMemoryContext;

	values[0] = CStringGetTextDatum(bronze_pipeline);
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec("SELECT p.name, w.done_snapshot, w.target_snapshot, w.resume_xid, w.resume_seq "
							   "FROM medallion.pipelines p "
							   "LEFT JOIN medallion.watermarks w ON w.pipeline OPERATOR(pg_catalog.=) p.name "
							   "WHERE p.source OPERATOR(pg_catalog.=) $1 ORDER BY p.name",
							   1, argtypes, values, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);
		Reader	   *r = palloc0(sizeof(Reader));
		int			col;

		r->name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		for (col = 0; col < 4; col++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
										  col + 2, &isnull);
			Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, col + 1);

			r->nulls[col] = isnull ? 'n' : ' ';
			r->values[col] = isnull ? (Datum) 0 : datumCopy(d, att->attbyval, att->attlen);
		}
		readers = lappend(readers, r);
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return readers;
}

/*
 * The first pipeline reading a bronze table that has not processed every
 * row of one of its partitions, or NULL.  A row is processed once its
 * transaction is visible in the pipeline's done snapshot (conservative for
 * a backlog being drained in bounded runs).  The partition is user data: it
 * is read as the table's owner, the watermarks passed as parameters.
 */
static char *
unprocessed_by(List *readers, Oid partition, Oid owner)
{
	Oid			argtypes[4] = {PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID};
	char	   *sql;
	char	   *reader = NULL;
	ListCell   *lc;
	MedallionGateway gw;

	if (readers == NIL)
		return NULL;
	sql = psprintf("SELECT FROM %s b "
				   "WHERE NOT COALESCE(pg_catalog.pg_visible_in_snapshot(b._xid, $1), false) "
				   "AND NOT COALESCE($2 IS NULL AND b._xid OPERATOR(pg_catalog.=) $3 "
				   "  AND b._seq OPERATOR(pg_catalog.<=) $4, false) "
				   "AND NOT COALESCE(pg_catalog.pg_visible_in_snapshot(b._xid, $2) "
				   "  AND b._seq OPERATOR(pg_catalog.<=) $4, false) "
				   "LIMIT 1",
				   medallion_qualified_relname(partition));
	medallion_gateway_enter(owner, &gw);
	foreach(lc, readers)
	{
		Reader	   *r = lfirst(lc);

		if (medallion_gateway_exec(sql, 4, argtypes, r->values, r->nulls, 1, SPI_OK_SELECT) > 0)
		{
			reader = r->name;
			break;
		}
	}
	medallion_gateway_leave(&gw);
	return reader;
}

/*
 * medallion.apply_retention(): drops the bronze partitions whose whole day is
 * older than their table's retention, for the tables the caller may manage.
 * Returns how many were dropped.
 *
 * Partitions are found from the bronze table's OID (pg_inherits), never by
 * a name: only plain tables in schema bronze owned by the table's owner and
 * named after it count.  Each table's data is read, and its partitions
 * dropped, as that table's owner.
 */
Datum
medallion_apply_retention(PG_FUNCTION_ARGS)
{
	int64		dropped = 0;
	uint64		n,
				i;
	Oid			nsp = get_namespace_oid("bronze", false);
	List	   *names = NIL;
	List	   *relnames = NIL;
	List	   *cutoffs = NIL;
	ListCell   *lc,
			   *lr,
			   *lt;
	MedallionGateway gw;
	MemoryContext caller = CurrentMemoryContext;

	/*
	 * The cutoff is computed in UTC, as a partition holds one UTC day, so
	 * that the session's TimeZone (and its daylight-saving shifts) cannot
	 * move it.
	 */
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec("SELECT p.name, p.relname, "
							   "(pg_catalog.now() AT TIME ZONE 'UTC'::pg_catalog.text) "
							   "  OPERATOR(pg_catalog.-) p.retention "
							   "FROM medallion.pipelines p "
							   "WHERE p.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text "
							   "AND p.retention IS NOT NULL ORDER BY p.name",
							   0, NULL, NULL, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		relnames = lappend(relnames, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
		{
			bool		isnull;
			Timestamp  *cutoff = palloc(sizeof(Timestamp));

			*cutoff = DatumGetTimestamp(SPI_getbinval(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 3, &isnull));
			cutoffs = lappend(cutoffs, cutoff);
		}
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);

	forthree(lc, names, lr, relnames, lt, cutoffs)
	{
		Oid			parent = get_relname_relid((char *) lfirst(lr), nsp);
		Oid			owner;
		Timestamp	cutoff;
		List	   *children;
		List	   *readers = NIL;
		bool		readers_loaded = false;
		ListCell   *lch;

		if (!OidIsValid(parent) || get_rel_relkind(parent) != RELKIND_PARTITIONED_TABLE)
			continue;
		owner = medallion_rel_owner(parent);
		if (!has_privs_of_role(GetUserId(), owner))
			continue;
		cutoff = *(Timestamp *) lfirst(lt);

		children = find_inheritance_children(parent, NoLock);
		foreach(lch, children)
		{
			Oid			child = lfirst_oid(lch);
			char	   *childname = get_rel_name(child);
			int			day;
			char	   *reader;

			if (childname == NULL ||
				get_rel_relkind(child) != RELKIND_RELATION ||
				get_rel_namespace(child) != nsp ||
				medallion_rel_owner(child) != owner ||
				!medallion_bronze_partition_day((char *) lfirst(lr), childname, &day) ||
				(int64) (day + 1) * USECS_PER_DAY > cutoff)
				continue;

			if (!readers_loaded)
			{
				readers = readers_of((char *) lfirst(lc));
				readers_loaded = true;
			}
			reader = unprocessed_by(readers, child, owner);
			if (reader)
			{
				ereport(WARNING,
						(errmsg("bronze partition \"bronze.%s\" kept: pipeline \"%s\" has not processed all its rows",
								childname, reader),
						 errhint("Run the pipeline, then apply retention again.")));
				continue;
			}
			medallion_gateway_enter(owner, &gw);
			medallion_own_ddl_begin();
			(void) medallion_gateway_exec(psprintf("DROP TABLE %s", medallion_qualified_relname(child)),
										  0, NULL, NULL, NULL, 0, SPI_OK_UTILITY);
			medallion_own_ddl_end();
			medallion_gateway_leave(&gw);
			dropped++;
		}
	}
	PG_RETURN_INT64(dropped);
}
