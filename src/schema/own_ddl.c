/*-------------------------------------------------------------------------
 *
 * own_ddl.c
 *	  A backend-local mark saying "medallion is running its own DDL".
 *
 * The DDL event triggers record and classify changes users make to tracked
 * relations.  medallion's own DDL (bronze partitions made on ingest or
 * dropped by retention, create_*, evolve, alter_contract, gold swaps) is not
 * drift: it runs between medallion_own_ddl_begin() and _end(), and the
 * triggers return at once while the mark is set.  An error between the two
 * leaves the mark set only until the transaction (or subtransaction) that
 * raised it ends.
 *
 * Own DDL may still change a tracked relation (alter_contract, evolve, gold
 * swaps): a trigger that fired under the mark says so, and the outermost
 * _end() brings the snapshots of tracked relations up to date, so that the
 * next user DDL is compared with the relation as medallion left it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"

#include "medallion.h"
#include "schema/schema.h"

static int	own_ddl_depth = 0;
static bool own_ddl_touched = false;
/* the depth when each open subtransaction started, to restore on abort */
static int	own_ddl_subxact_depth[64];
static bool callbacks_registered = false;

static void
own_ddl_xact_callback(XactEvent event, void *arg)
{
	own_ddl_depth = 0;
	own_ddl_touched = false;
}

static void
own_ddl_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (level >= (int) lengthof(own_ddl_subxact_depth))
		return;
	if (event == SUBXACT_EVENT_START_SUB)
		own_ddl_subxact_depth[level] = own_ddl_depth;
	else if (event == SUBXACT_EVENT_ABORT_SUB)
		own_ddl_depth = own_ddl_subxact_depth[level];
}

void
medallion_own_ddl_begin(void)
{
	if (!callbacks_registered)
	{
		RegisterXactCallback(own_ddl_xact_callback, NULL);
		RegisterSubXactCallback(own_ddl_subxact_callback, NULL);
		callbacks_registered = true;
	}
	own_ddl_depth++;
}

/*
 * Ends a stretch of own DDL; the outermost end refreshes the snapshots if a
 * DDL trigger fired meanwhile.  A failure to refresh is a WARNING: the DDL
 * medallion made stands.
 */
void
medallion_own_ddl_end(void)
{
	if (own_ddl_depth > 0)
		own_ddl_depth--;
	if (own_ddl_depth > 0 || !own_ddl_touched)
		return;
	own_ddl_touched = false;
	medallion_column_snapshots_refresh();
}

/*
 * Called by a DDL trigger that fired under the mark.
 */
void
medallion_own_ddl_touched(void)
{
	own_ddl_touched = true;
}

bool
medallion_own_ddl_active(void)
{
	return own_ddl_depth > 0;
}
