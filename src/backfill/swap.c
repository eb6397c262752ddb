/*-------------------------------------------------------------------------
 *
 * swap.c
 *	  Swapping the storage of a table built aside into the table it
 *	  replaces, the table keeping its OID.
 *
 * The way CLUSTER, VACUUM FULL and REFRESH MATERIALIZED VIEW do it
 * (finish_heap_swap, commands/cluster.c): the two relations exchange their
 * files, the target's indexes are rebuilt over the new rows (unique ones
 * checked), and the shadow, now holding the old files, is dropped.  The
 * target's pg_class row stays: its OID, and so the user's views, grants,
 * comments and row-level security policies bound to it, keep working, and
 * readers see the old rows until the commit, the new ones after.  A
 * rename swap would leave them all on the old table.
 *
 * The shadow must have the target's physical row layout, dropped columns
 * included: make it with make_new_heap(target, ...).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/multixact.h"
#include "access/table.h"
#include "commands/cluster.h"
#include "commands/tablecmds.h"
#include "storage/lmgr.h"
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
