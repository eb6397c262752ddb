/*-------------------------------------------------------------------------
 *
 * swap.c
 *	  The swap of a rebuilt version into a pipeline's table: the shadow's
 *	  rows become the table's, and the table keeps its OID.
 *
 * The rows are rewritten (DELETE, then INSERT ... SELECT from the shadow)
 * in the caller's transaction rather than the two relations' files being
 * exchanged (finish_heap_swap, as REFRESH MATERIALIZED VIEW does) or the
 * shadow being renamed in:
 *   - the table keeps its OID, so the user's views, grants and comments on
 *     it stay (a rename would leave them on the old table);
 *   - readers never wait and never see an empty table: both statements are
 *     MVCC, while a file swap takes ACCESS EXCLUSIVE and a REPEATABLE READ
 *     reader whose snapshot predates it would find no row (the reasoning of
 *     src/gold/refresh.c, whose runs write the same way);
 *   - a partitioned table needs nothing else: rows are routed to its
 *     partitions (which must exist), and pruning keeps the DELETE cheap.
 * The price is dead rows for autovacuum, as for a full refresh.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "backfill/backfill.h"

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
medallion_backfill_swap_heap(Oid target, Oid shadow)
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
