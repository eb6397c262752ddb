/*-------------------------------------------------------------------------
 *
 * subxact.c
 *	  Catching an error without aborting the transaction: a subtransaction.
 *
 * PG15 has no soft input errors: the only safe way to survive an error is a
 * subtransaction, rolled back on error with the memory context and resource
 * owner restored (the pattern of src/pl/plpython/plpy_spi.c).  Only the
 * errors the caller can handle are returned; anything else (a cancel, out of
 * memory, an internal error) propagates after the rollback.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "medallion.h"

/*
 * Runs fn(arg) in a subtransaction.  Returns NULL when it succeeded; after
 * an error the subtransaction is rolled back and the error returned (in the
 * caller's memory context) if it is a data error or if any_error; any other
 * error is raised again.
 */
ErrorData *
medallion_try(MedallionTryFn fn, void *arg, bool any_error)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (!any_error && !medallion_error_is_data(edata->sqlerrcode))
			ReThrowError(edata);
	}
	PG_END_TRY();
	return edata;
}
