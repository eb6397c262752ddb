/*-------------------------------------------------------------------------
 *
 * swap.c
 *	  The two ways a version built aside replaces a pipeline's table, the
 *	  table keeping its OID (so the user's views, grants, comments and
 *	  row-level security policies bound to it keep working; a rename swap
 *	  would leave them all on the old table).
 *
 * medallion_backfill_swap_heap: the way CLUSTER, VACUUM FULL and REFRESH
 * MATERIALIZED VIEW do it (finish_heap_swap, commands/cluster.c): the two
 * relations exchange their files, the target's indexes are rebuilt over the
 * new rows (unique ones checked), and the shadow, now holding the old files,
 * is dropped.  Cheap (no second write of the rows) but it takes ACCESS
 * EXCLUSIVE for the swap and, like CLUSTER, is not MVCC-safe for snapshots
 * older than the swap.  The shadow must have the target's physical row
 * layout, dropped columns included: make it with make_new_heap(target, ...).
 * A silver full rebuild uses it.
 *
 * medallion_backfill_swap_rows: the rows are rewritten (DELETE, then INSERT
 * ... SELECT from the shadow) in the caller's transaction.  Readers never
 * wait and never see an empty table: both statements are MVCC (the reasoning
 * of src/gold/refresh.c, whose runs write the same way); a partitioned table
 * needs nothing else: rows are routed to its partitions (which must exist),
 * and pruning keeps the DELETE cheap.  The price is dead rows for
 * autovacuum.  Gold rebuilds and swaps back use it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/multixact.h"
#include "access/table.h"
#include "commands/cluster.h"
#include "commands/tablecmds.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "backfill/backfill.h"

/*
 * Swaps the storage of shadow into target (AccessExclusiveLock on target
 * until the end of the transaction); shadow is dropped.
 */
void
medallion_backfill_swap_heap(Oid target, Oid shadow)
{
	Relation	rel;
	char		relpersistence;

	/* readers went on reading the old version until now */
	rel = table_open(target, AccessExclusiveLock);
	/* an open cursor of this session over the table would read freed files */
	CheckTableNotInUse(rel, "medallion.backfill");
	relpersistence = rel->rd_rel->relpersistence;
	table_close(rel, NoLock);

	medallion_own_ddl_begin();
	/* every row of the shadow was written by this transaction: RecentXmin is a safe horizon */
	finish_heap_swap(target, shadow, false, false, true, true,
					 RecentXmin, ReadNextMultiXactId(), relpersistence);
	medallion_own_ddl_end();
}

/* A relation's name, qualified and quoted, from its OID. */
static char *
qualified_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));
}

/*
 * Replaces the rows of target by those of shadow, as the current user (the
 * pipeline's owner: the caller is in the gateway or has become the owner):
 * columns by name, those of target that shadow has (the caller made their
 * sets equal); target keeps its OID.  Returns the rows written.
 */
uint64
medallion_backfill_swap_rows(Oid target, Oid shadow)
{
	Relation	rel = table_open(target, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData cols;
	char	   *qtarget = qualified_name(target);
	char	   *qshadow = qualified_name(shadow);
	uint64		rows;
	int			i;

	initStringInfo(&cols);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || get_attnum(shadow, NameStr(att->attname)) == InvalidAttrNumber)
			continue;
		appendStringInfo(&cols, "%s%s", cols.len ? ", " : "", quote_identifier(NameStr(att->attname)));
	}
	table_close(rel, AccessShareLock);

	SPI_connect();
	if (SPI_execute(psprintf("DELETE FROM %s", qtarget), false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete the rows of %s", qtarget);
	if (SPI_execute(psprintf("INSERT INTO %s (%s) SELECT %s FROM %s", qtarget, cols.data, cols.data, qshadow),
					false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not copy %s into %s", qshadow, qtarget);
	rows = SPI_processed;
	SPI_finish();
	return rows;
}
