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
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	List	   *readers = NIL;
	List	   *rows;
	ListCell   *lc;

	values[0] = CStringGetTextDatum(bronze_pipeline);
	rows = medallion_catalog_query("SELECT p.name, w.done_snapshot, w.target_snapshot, w.resume_xid, w.resume_seq "
								   "FROM medallion.pipelines p "
								   "LEFT JOIN medallion.watermarks w ON w.pipeline OPERATOR(pg_catalog.=) p.name "
								   "WHERE p.source OPERATOR(pg_catalog.=) $1 ORDER BY p.name",
								   1, argtypes, values, NULL);
	foreach(lc, rows)
	{
		MedallionRow *row = lfirst(lc);
		Reader	   *r = palloc0(sizeof(Reader));

		r->name = TextDatumGetCString(row->values[0]);
		for (int col = 0; col < 4; col++)
		{
			r->values[col] = row->values[col + 1];
			r->nulls[col] = row->nulls[col + 1] ? 'n' : ' ';
		}
		readers = lappend(readers, r);
	}
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
	Oid			nsp = get_namespace_oid("bronze", false);
	List	   *tables;
	ListCell   *lc;
	MedallionGateway gw;

	/*
	 * The cutoff is computed in UTC, as a partition holds one UTC day, so
	 * that the session's TimeZone (and its daylight-saving shifts) cannot
	 * move it.
	 */
	tables = medallion_catalog_query("SELECT p.name, p.relname, "
									 "(pg_catalog.now() AT TIME ZONE 'UTC'::pg_catalog.text) "
									 "  OPERATOR(pg_catalog.-) p.retention "
									 "FROM medallion.pipelines p "
									 "WHERE p.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text "
									 "AND p.retention IS NOT NULL ORDER BY p.name",
									 0, NULL, NULL, NULL);

	foreach(lc, tables)
	{
		MedallionRow *table = lfirst(lc);
		char	   *pipeline = TextDatumGetCString(table->values[0]);
		char	   *relname = TextDatumGetCString(table->values[1]);
		Timestamp	cutoff = DatumGetTimestamp(table->values[2]);
		Oid			parent = get_relname_relid(relname, nsp);
		Oid			owner;
		List	   *children;
		List	   *readers = NIL;
		bool		readers_loaded = false;
		ListCell   *lch;

		if (!OidIsValid(parent) || get_rel_relkind(parent) != RELKIND_PARTITIONED_TABLE)
			continue;
		owner = medallion_rel_owner(parent);
		if (!has_privs_of_role(GetUserId(), owner))
			continue;

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
				!medallion_bronze_partition_day(relname, childname, &day) ||
				(int64) (day + 1) * USECS_PER_DAY > cutoff)
				continue;

			if (!readers_loaded)
			{
				readers = readers_of(pipeline);
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
