/*-------------------------------------------------------------------------
 *
 * ddl_watch.c
 *	  The DDL event triggers (ddl_command_end on ALTER TABLE, sql_drop on
 *	  drops) and the snapshots of the relations they watch.
 *
 * Every ALTER TABLE and DROP in the database fires these triggers, so the
 * common case must cost next to nothing: they return at once while
 * medallion runs its own DDL (the own-DDL mark), inside CREATE or ALTER
 * EXTENSION, and when no relation the command touched is tracked.  That
 * last test reads the command's objects straight from PostgreSQL (no SQL)
 * and looks their OIDs up in a backend-local set of the tracked relations,
 * reloaded only after medallion.column_snapshots changed (every change to
 * it sends a relcache invalidation for that table).
 *
 * Only then, in a subtransaction, the change is classified and recorded
 * (ddl_changes.c); an error there is reported as a WARNING and the user's
 * DDL goes on.
 *
 * The tracked relations come from medallion.tracked_relations(), which
 * reads the catalog (pipelines, dependencies, captures) only; statement
 * triggers on those tables keep medallion.column_snapshots in step, so a
 * new kind of pipeline is watched as soon as its catalog rows exist.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "medallion.h"
#include "schema/schema.h"

PG_FUNCTION_INFO_V1(medallion_ddl_watch_command_end);
PG_FUNCTION_INFO_V1(medallion_ddl_watch_sql_drop);
PG_FUNCTION_INFO_V1(medallion_column_snapshots_track);

/* ---------------------------------------------------------------------------
 * The backend's set of tracked relations
 * ---------------------------------------------------------------------------
 */

static HTAB *tracked = NULL;
static bool tracked_valid = false;
static uint64 tracked_invals = 0;	/* invalidations seen, to spot one during a load */
static Oid	snapshots_relid = InvalidOid;
static bool inval_registered = false;

static void
tracked_inval(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == snapshots_relid)
	{
		tracked_valid = false;
		tracked_invals++;
	}
}

/*
 * medallion.column_snapshots, or InvalidOid in a catalog without it.
 */
static Oid
lookup_snapshots_relid(void)
{
	Oid			nsp = get_namespace_oid("medallion", true);

	return OidIsValid(nsp) ? get_relname_relid("column_snapshots", nsp) : InvalidOid;
}

/*
 * Reads the tracked relations into the backend's set, as the catalog owner.
 */
static void
tracked_load(void)
{
	HASHCTL		ctl;
	uint64		invals = tracked_invals;
	MedallionGateway gw;
	uint64		i;

	if (!inval_registered)
	{
		CacheRegisterRelcacheCallback(tracked_inval, (Datum) 0);
		inval_registered = true;
	}
	if (tracked)
		hash_destroy(tracked);
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(Oid);
	tracked = hash_create("medallion tracked relations", 64, &ctl, HASH_ELEM | HASH_BLOBS);

	snapshots_relid = lookup_snapshots_relid();
	if (OidIsValid(snapshots_relid))
	{
		medallion_catalog_enter(&gw);
		(void) medallion_gateway_exec("SELECT relid FROM medallion.column_snapshots",
									  0, NULL, NULL, NULL, 0, SPI_OK_SELECT);
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
															   SPI_tuptable->tupdesc, 1, &isnull));

			(void) hash_search(tracked, &relid, HASH_ENTER, NULL);
		}
		medallion_gateway_leave(&gw);
	}
	/* an invalidation that arrived meanwhile means: load again next time */
	tracked_valid = (invals == tracked_invals);
}

static bool
is_tracked(Oid relid)
{
	return tracked != NULL && hash_search(tracked, &relid, HASH_FIND, NULL) != NULL;
}

/*
 * Tells every backend (this one at the next command) that the set of
 * tracked relations may have changed.
 */
void
medallion_tracked_relations_changed(void)
{
	Oid			relid = lookup_snapshots_relid();

	if (OidIsValid(relid))
		CacheInvalidateRelcacheByRelid(relid);
}

/*
 * Snapshots the relations newly tracked and forgets the untracked ones,
 * absorbing medallion's own DDL, as the catalog owner.
 */
void
medallion_column_snapshots_sync(void)
{
	MedallionGateway gw;
	bool		isnull;
	int64		changed;

	if (!OidIsValid(lookup_snapshots_relid()))
		return;					/* a 0.1.0 catalog, not yet updated */
	medallion_catalog_enter(&gw);
	(void) medallion_gateway_exec("SELECT medallion.column_snapshots_sync()",
								  0, NULL, NULL, NULL, 1, SPI_OK_SELECT);
	changed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	medallion_gateway_leave(&gw);
	/* other backends reload their set only when it may have changed */
	if (changed > 0)
		medallion_tracked_relations_changed();
}

/*
 * An error caught by the watch becomes a WARNING, except a cancel or a
 * shutdown: those stop the command, as they would have anyway.
 */
static void
rethrow_if_stopped(ErrorData *edata)
{
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED || edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
		ProcDiePending)
		ReThrowError(edata);
}

static void
sync_work(void *arg)
{
	medallion_column_snapshots_sync();
}

/*
 * The sync, in a subtransaction: a failure is a WARNING (what changed the
 * catalog or made the DDL stands; the snapshots catch up at the next sync).
 */
void
medallion_column_snapshots_refresh(void)
{
	ErrorData  *edata = medallion_try(sync_work, NULL, true);

	if (edata == NULL)
		return;
	rethrow_if_stopped(edata);
	ereport(WARNING,
			(errmsg("medallion could not refresh the snapshots of tracked relations: %s", edata->message)));
}

/* ---------------------------------------------------------------------------
 * The event triggers
 * ---------------------------------------------------------------------------
 */

/* A relation a command touched. */
typedef struct Touched
{
	Oid			relid;
	bool		table_dropped;	/* sql_drop of the relation itself */
} Touched;

/*
 * The relations the current event's command touched (pg_class objects, not
 * temporary), from PostgreSQL's own set-returning function for the event
 * (called directly: no SQL, no privilege check).  Column numbers are those
 * of its result: classid, objid, objsubid, and for sql_drop is_temporary.
 */
static List *
touched_relations(Oid srf, int temp_col)
{
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 0);
	ReturnSetInfo rsinfo = {0};
	ExprContext *econtext = CreateStandaloneExprContext();
	TupleTableSlot *slot;
	List	   *touched = NIL;

	fmgr_info(srf, &flinfo);
	rsinfo.type = T_ReturnSetInfo;
	rsinfo.econtext = econtext;
	rsinfo.allowedModes = SFRM_Materialize;
	rsinfo.returnMode = SFRM_ValuePerCall;
	InitFunctionCallInfoData(*fcinfo, &flinfo, 0, InvalidOid, NULL, (Node *) &rsinfo);
	(void) FunctionCallInvoke(fcinfo);
	if (rsinfo.returnMode != SFRM_Materialize || rsinfo.setResult == NULL)
	{
		FreeExprContext(econtext, true);
		return NIL;
	}

	slot = MakeSingleTupleTableSlot(rsinfo.setDesc, &TTSOpsMinimalTuple);
	while (tuplestore_gettupleslot(rsinfo.setResult, true, false, slot))
	{
		bool		isnull;
		Oid			classid = DatumGetObjectId(slot_getattr(slot, 1, &isnull));
		Oid			objid = DatumGetObjectId(slot_getattr(slot, 2, &isnull));
		int32		objsubid = DatumGetInt32(slot_getattr(slot, 3, &isnull));
		Touched    *t;

		if (classid != RelationRelationId)
			continue;
		if (temp_col > 0 && DatumGetBool(slot_getattr(slot, temp_col, &isnull)))
			continue;
		t = palloc(sizeof(Touched));
		t->relid = objid;
		t->table_dropped = (temp_col > 0 && objsubid == 0);
		touched = lappend(touched, t);
	}
	ExecDropSingleTupleTableSlot(slot);
	tuplestore_end(rsinfo.setResult);
	FreeExprContext(econtext, true);
	return touched;
}

/*
 * Keeps the touched relations that are tracked, once each (a drop of the
 * relation wins over a change of its columns).
 */
static List *
keep_tracked(List *touched)
{
	List	   *kept = NIL;
	ListCell   *lc,
			   *lk;

	foreach(lc, touched)
	{
		Touched    *t = lfirst(lc);
		bool		seen = false;

		if (!is_tracked(t->relid))
			continue;
		foreach(lk, kept)
		{
			Touched    *k = lfirst(lk);

			if (k->relid == t->relid)
			{
				k->table_dropped |= t->table_dropped;
				seen = true;
			}
		}
		if (!seen)
			kept = lappend(kept, t);
	}
	return kept;
}

/* The work of one event on tracked relations, as a subtransaction's. */
typedef struct WatchWork
{
	List	   *touched;
	const char *tag;
} WatchWork;

static void
watch_work(void *arg)
{
	WatchWork  *w = arg;
	ListCell   *lc;

	if (!tracked_valid)
	{
		tracked_load();
		w->touched = keep_tracked(w->touched);
	}
	foreach(lc, w->touched)
	{
		Touched    *t = lfirst(lc);

		medallion_ddl_changes_apply(t->relid, t->table_dropped, w->tag);
	}
}

/*
 * The shared body of both event triggers.
 */
static void
watch_event(FunctionCallInfo fcinfo, const char *event, Oid srf, int temp_col)
{
	EventTriggerData *trigdata;
	WatchWork	w;
	ErrorData  *edata;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo) ||
		strcmp(((EventTriggerData *) fcinfo->context)->event, event) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function must be called as a %s event trigger", event)));
	trigdata = (EventTriggerData *) fcinfo->context;

	/* medallion's own DDL is no drift; its snapshots are refreshed at the end */
	if (medallion_own_ddl_active())
	{
		medallion_own_ddl_touched();
		return;
	}
	if (creating_extension)
		return;

	w.touched = touched_relations(srf, temp_col);
	if (w.touched == NIL)
		return;
	if (tracked_valid)
	{
		w.touched = keep_tracked(w.touched);
		if (w.touched == NIL)
			return;
	}
	w.tag = GetCommandTagName(trigdata->tag);

	edata = medallion_try(watch_work, &w, true);
	if (edata == NULL)
		return;
	rethrow_if_stopped(edata);
	ereport(WARNING,
			(errmsg("medallion could not record a schema change made by %s: %s", w.tag, edata->message),
			 errdetail("The command itself went through; medallion.schema_changes may miss it.")));
}

/*
 * medallion.ddl_watch_command_end(): ddl_command_end, for ALTER TABLE.
 */
Datum
medallion_ddl_watch_command_end(PG_FUNCTION_ARGS)
{
	watch_event(fcinfo, "ddl_command_end", F_PG_EVENT_TRIGGER_DDL_COMMANDS, 0);
	PG_RETURN_NULL();
}

/*
 * medallion.ddl_watch_sql_drop(): sql_drop, for tables (and columns, e.g. by
 * DROP TYPE ... CASCADE) dropped.  Column 6 of pg_event_trigger_dropped_objects()
 * is is_temporary.
 */
Datum
medallion_ddl_watch_sql_drop(PG_FUNCTION_ARGS)
{
	watch_event(fcinfo, "sql_drop", F_PG_EVENT_TRIGGER_DROPPED_OBJECTS, 6);
	PG_RETURN_NULL();
}

/*
 * medallion.column_snapshots_track(): statement trigger on the catalog
 * tables the tracked relations are read from.  It refuses to run anywhere
 * else; a failure is a WARNING (the catalog change stands, the snapshots
 * catch up at the next sync).
 */
Datum
medallion_column_snapshots_track(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("medallion.column_snapshots_track() must be called as an AFTER statement trigger")));
	rel = trigdata->tg_relation;
	if (RelationGetNamespace(rel) != get_namespace_oid("medallion", true) ||
		rel->rd_rel->relowner != medallion_catalog_owner())
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("medallion.column_snapshots_track() fires on medallion's catalog tables only")));

	medallion_column_snapshots_refresh();
	return PointerGetDatum(NULL);
}
