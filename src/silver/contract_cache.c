/*-------------------------------------------------------------------------
 *
 * contract_cache.c
 *	  Parsed contracts, kept across runs and statements.
 *
 * A scheduler looks at the same pipelines again and again, and every run
 * needs its pipeline's parsed contract.  Each contract is parsed once per
 * backend and kept under its pipeline's name and definition version
 * (medallion.pipelines.definition_version, which alter_contract raises).
 *
 * The version alone does not make an entry safe to serve: a pipeline can be
 * dropped and made again under the same name (version 1 again), and a
 * rolled-back alter_contract leaves a version number that the next one
 * takes.  So every statement that writes definitions or removes pipelines
 * fires a statement trigger (medallion.contract_cache_invalidate) that
 * invalidates medallion.pipelines' relcache entry: plain DML sends no
 * invalidation of its own.  That reaches this backend at once (and again if
 * its transaction aborts) and every other backend when the writer commits;
 * the relcache callback below then marks every entry stale.  What a parsed
 * contract holds besides the definition is type OIDs: any change to pg_type
 * marks the cache stale too.
 *
 * A cached contract is shared: callers must not change it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "medallion.h"
#include "silver/silver.h"

PG_FUNCTION_INFO_V1(medallion_contract_cache_invalidate);

/* contracts kept; more only while a run may hold one */
#define CONTRACT_CACHE_SIZE 32

typedef struct CachedContract
{
	MemoryContext cxt;			/* holds this entry */
	char	   *pipeline;		/* the key: pipeline name ... */
	int32		version;		/* ... and definition version */
	Contract   *contract;
	bool		stale;			/* invalidated since it was parsed */
} CachedContract;

static List *contract_cache = NIL;	/* of CachedContract *, newest first */
static bool contract_cache_registered = false;

/* medallion.pipelines, whose relcache invalidations clear the cache */
static Oid	pipelines_relid = InvalidOid;

static void
contract_cache_mark_stale(void)
{
	ListCell   *lc;

	foreach(lc, contract_cache)
		((CachedContract *) lfirst(lc))->stale = true;
}

/* pg_type changed: a type a contract names may have another OID now */
static void
contract_cache_type_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	contract_cache_mark_stale();
}

/*
 * medallion.pipelines was invalidated (its trigger below, DDL, or a cache
 * reset): no catalog access here, only marking.  The table's OID is looked
 * up again next time, in case the extension was dropped and made again.
 */
static void
contract_cache_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == pipelines_relid)
	{
		contract_cache_mark_stale();
		pipelines_relid = InvalidOid;
	}
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
 * The parsed contract of a silver pipeline, as looked up (not validated: it
 * was when the contract was stored).  Read-only.  A definition without a
 * version (a catalog not yet updated to 0.2.0) is parsed every time.
 */
Contract *
silver_contract_get(const Pipeline *p)
{
	CachedContract *e;
	MemoryContext cxt;
	MemoryContext old;
	ListCell   *lc;

	if (p->definition_version <= 0)
		return medallion_contract_parse(p->definition, false);

	if (!contract_cache_registered)
	{
		CacheRegisterSyscacheCallback(TYPEOID, contract_cache_type_callback, (Datum) 0);
		CacheRegisterRelcacheCallback(contract_cache_relcache_callback, (Datum) 0);
		contract_cache_registered = true;
	}
	/* a writer that committed since this transaction's last look */
	AcceptInvalidationMessages();
	if (!OidIsValid(pipelines_relid))
	{
		/* before any entry is served: entries made before now may be stale */
		contract_cache_mark_stale();
		pipelines_relid = get_relname_relid("pipelines", get_namespace_oid("medallion", false));
	}
	foreach(lc, contract_cache)
	{
		e = lfirst(lc);
		if (!e->stale && e->version == p->definition_version && strcmp(e->pipeline, p->name) == 0)
			return e->contract;
	}
	contract_cache_prune();

	cxt = AllocSetContextCreate(CacheMemoryContext, "medallion contract", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	e = palloc0(sizeof(CachedContract));
	e->cxt = cxt;
	e->pipeline = pstrdup(p->name);
	e->version = p->definition_version;
	PG_TRY();
	{
		e->contract = medallion_contract_parse(p->definition, false);
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

/*
 * medallion.contract_cache_invalidate(): the statement trigger on
 * medallion.pipelines.  Invalidates the table's relcache entry, which every
 * backend's callback above takes as "parsed contracts are stale".
 */
Datum
medallion_contract_cache_invalidate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("medallion.contract_cache_invalidate() must be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
