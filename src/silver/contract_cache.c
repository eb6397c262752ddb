/*-------------------------------------------------------------------------
 *
 * contract_cache.c
 *	  Parsed contracts, kept across runs and statements.
 *
 * A run and the medallion.silver_check() calls of its slow path need the
 * parsed contract of the same definition; a scheduler looks at the same
 * pipelines again and again.  Each definition is parsed once per backend:
 * the key is the definition itself (its bytes), so a changed definition can
 * never be served a stale contract.  What a parsed contract holds besides
 * the definition is type OIDs: any change to pg_type marks the cache stale.
 *
 * A cached contract is shared: callers must not change it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "medallion.h"
#include "silver/silver.h"

/* contracts kept; more only while a run may hold one */
#define CONTRACT_CACHE_SIZE 32

typedef struct CachedContract
{
	MemoryContext cxt;			/* holds this entry */
	Jsonb	   *definition;		/* the key */
	Contract   *contract;
	bool		stale;			/* a type changed since it was parsed */
} CachedContract;

static List *contract_cache = NIL;	/* of CachedContract *, newest first */
static bool contract_cache_registered = false;

/* pg_type changed: a type a contract names may have another OID now */
static void
contract_cache_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	ListCell   *lc;

	foreach(lc, contract_cache)
		((CachedContract *) lfirst(lc))->stale = true;
}

/*
 * Frees stale entries and those beyond the cache's size, unless a run is
 * executing: it may hold one of them.
 */
static void
contract_cache_prune(void)
{
	ListCell   *lc;
	int			i = 0;

	if (silver_active_run_exists())
		return;
	foreach(lc, contract_cache)
	{
		CachedContract *e = lfirst(lc);

		if (e->stale || ++i >= CONTRACT_CACHE_SIZE)
		{
			MemoryContextDelete(e->cxt);
			contract_cache = foreach_delete_current(contract_cache, lc);
		}
	}
}

/*
 * The parsed contract of a stored definition (not validated: it was when
 * the pipeline was created).  Read-only.
 */
Contract *
silver_contract_get(Jsonb *definition)
{
	Size		size = VARSIZE(definition);
	CachedContract *e;
	MemoryContext cxt;
	MemoryContext old;
	ListCell   *lc;

	if (!contract_cache_registered)
	{
		CacheRegisterSyscacheCallback(TYPEOID, contract_cache_invalidate, (Datum) 0);
		contract_cache_registered = true;
	}
	foreach(lc, contract_cache)
	{
		e = lfirst(lc);
		if (!e->stale && VARSIZE(e->definition) == size &&
			memcmp(e->definition, definition, size) == 0)
			return e->contract;
	}
	contract_cache_prune();

	cxt = AllocSetContextCreate(CacheMemoryContext, "medallion contract", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	e = palloc0(sizeof(CachedContract));
	e->cxt = cxt;
	e->definition = palloc(size);
	memcpy(e->definition, definition, size);
	PG_TRY();
	{
		e->contract = medallion_contract_parse(definition, false);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(CacheMemoryContext);
	contract_cache = lcons(e, contract_cache);
	MemoryContextSwitchTo(old);
	return e->contract;
}
