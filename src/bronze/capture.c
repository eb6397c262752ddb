/*-------------------------------------------------------------------------
 *
 * capture.c
 *	  Change capture of a local table into a bronze table, by trigger.
 *
 * Every INSERT, UPDATE and DELETE of the captured table lands, in the same
 * transaction, as one bronze row: {"op": "I"|"U"|"D", "table": ...,
 * "data": row image (the old one for D), "old": previous image for U,
 * "xid": the source transaction}.  TRUNCATE would lose the deletes it
 * implies, so it is refused while the table is captured.
 *
 * The trigger function trusts nothing about where it was put: any role may
 * attach it to a table of its own.  It captures only for a trigger named
 * medallion_capture on a table that medallion.capture() registered in
 * medallion.captures (or on a partition of one, where the trigger is a
 * clone), into the bronze table registered there, and only while the
 * source's owner may write that bronze table.  The row is converted to JSON
 * as the role that changed it, before the switch to the bronze table's
 * owner.  The verdict is kept per trigger, until the next relcache
 * invalidation (renames, attaches, owner and privilege changes send one).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "medallion.h"
#include "bronze/bronze.h"

PG_FUNCTION_INFO_V1(medallion_capture);
PG_FUNCTION_INFO_V1(medallion_capture_change);

/*
 * Whether the catalog has medallion.captures (0.2.0 and later).
 */
static bool
have_registry(void)
{
	Oid			nsp = get_namespace_oid("medallion", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("captures", nsp));
}

/* What one medallion_capture trigger may do, once checked. */
typedef struct CaptureVerdict
{
	Oid			tgoid;
	MemoryContext cxt;			/* holds this struct and what it points to */
	BronzeTarget target;		/* the bronze table fed */
	char	   *source_name;	/* the captured (root) table, qualified */
	FmgrInfo	to_jsonb;		/* to_jsonb() of the row type */
	SPIPlanPtr	plan;			/* the INSERT into the bronze table */
} CaptureVerdict;

static List *verdicts = NIL;
static bool verdicts_stale = false;
static bool callbacks_registered = false;

/*
 * Verdicts set aside after an invalidation.  One may still be in use up the
 * stack (user code that runs inside a capture can change another captured
 * table), so they are freed only at the end of the transaction.
 */
static List *stale_verdicts = NIL;

/*
 * Any relcache invalidation may change a verdict (renames, attaches, owner
 * and privilege changes all send one): check again at the next capture.
 */
static void
capture_relcache_inval(Datum arg, Oid relid)
{
	verdicts_stale = true;
}

static void
capture_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_PARALLEL_ABORT)
		return;
	foreach(lc, stale_verdicts)
	{
		CaptureVerdict *v = lfirst(lc);

		if (v->plan)
			SPI_freeplan(v->plan);
		MemoryContextDelete(v->cxt);
	}
	list_free(stale_verdicts);
	stale_verdicts = NIL;
}

static void
set_verdicts_aside(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	stale_verdicts = list_concat(stale_verdicts, verdicts);
	MemoryContextSwitchTo(old);
	list_free(verdicts);
	verdicts = NIL;
	verdicts_stale = false;
}

/*
 * medallion.capture(source, name): creates bronze.<name> (default: the
 * source's name), registers the capture and creates the triggers that feed
 * it.
 */
Datum
medallion_capture(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *relname;
	char	   *name;
	char	   *qsource;
	char	   *source_system;
	Oid			bronze_relid;
	Datum		retention;
	char		relkind;
	MedallionGateway gw;
	Oid			argtypes[2] = {OIDOID, OIDOID};
	Datum		values[2];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source must not be NULL")));
	relid = PG_GETARG_OID(0);
	relname = get_rel_name(relid);
	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", relname),
				 errdetail("Only tables can be captured.")));
	if (get_rel_relispartition(relid))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot capture partition \"%s\"", relname),
				 errhint("Capture its partitioned table.")));
	if (get_rel_namespace(relid) == get_namespace_oid("bronze", false))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot capture bronze table \"%s\"", relname),
				 errdetail("Bronze tables are the destination of a capture.")));
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s to capture it", relname)));
	if (OidIsValid(get_trigger_oid(relid, "medallion_capture", true)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table \"%s\" is already captured", relname),
				 errhint("Its trigger \"medallion_capture\" names the bronze table it feeds.")));

	name = PG_ARGISNULL(1) ? relname : text_to_cstring(PG_GETARG_TEXT_PP(1));
	qsource = medallion_qualified_relname(relid);
	source_system = psprintf("capture:%s", qsource);
	retention = DirectFunctionCall3(interval_in, CStringGetDatum("90 days"),
									ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));

	bronze_relid = medallion_bronze_create(name, source_system, retention, false, NULL,
										   DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))),
										   psprintf("changes of %s", qsource));

	/* A table captured before and dropped may have left its row. */
	values[0] = ObjectIdGetDatum(relid);
	values[1] = ObjectIdGetDatum(bronze_relid);
	if (have_registry())		/* else 0.1.0's catalog: ALTER EXTENSION UPDATE fills it */
		(void) medallion_catalog_exec("INSERT INTO medallion.captures (source, bronze) "
								  "VALUES ($1::pg_catalog.regclass, $2::pg_catalog.regclass) "
								  "ON CONFLICT (source) DO UPDATE SET bronze = excluded.bronze, "
								  "created_at = pg_catalog.now()",
								  2, argtypes, values, NULL, SPI_OK_INSERT);

	/* As the source's owner (the caller), under the pinned path. */
	medallion_gateway_enter(GetUserId(), &gw);
	medallion_bronze_exec_ddl(psprintf("CREATE TRIGGER medallion_capture "
									   "AFTER INSERT OR UPDATE OR DELETE ON %s "
									   "FOR EACH ROW EXECUTE FUNCTION medallion.capture_change(%s);"
									   "CREATE TRIGGER medallion_capture_truncate BEFORE TRUNCATE ON %s "
									   "FOR EACH STATEMENT EXECUTE FUNCTION medallion.capture_change(%s);",
									   qsource, quote_literal_cstr(name),
									   qsource, quote_literal_cstr(name)));
	medallion_gateway_leave(&gw);

	PG_RETURN_OID(bronze_relid);
}

/*
 * Refuses a capture trigger that medallion.capture() did not make.  The
 * detail is a message marked with gettext_noop() by the caller.
 */
static void
refuse_capture(Relation rel, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("medallion.capture_change() refuses to capture changes of \"%s\"",
					RelationGetRelationName(rel)),
			 errdetail_internal("%s", _(detail)),
			 errhint("Capture a table with medallion.capture().")));
}

/*
 * Checks a capture trigger and returns its verdict (kept for the backend).
 */
static CaptureVerdict *
capture_verdict(Relation rel, Trigger *trigger)
{
	ListCell   *lc;
	CaptureVerdict *v;
	Oid			root;
	Oid			bronze;
	MedallionGateway gw;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, JSONBOID, JSONBOID};
	Oid			qargtypes[1] = {OIDOID};
	Datum		qvalues[1];
	BronzeTarget target;
	MemoryContext old;
	MemoryContext cxt;
	FuncExpr   *expr;

	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(capture_relcache_inval, (Datum) 0);
		RegisterXactCallback(capture_xact_callback, NULL);
		callbacks_registered = true;
	}
	if (verdicts_stale)
		set_verdicts_aside();
	foreach(lc, verdicts)
	{
		v = lfirst(lc);
		if (v->tgoid == trigger->tgoid)
			return v;
	}

	if (strcmp(trigger->tgname, "medallion_capture") != 0)
		refuse_capture(rel, gettext_noop("Only a trigger named medallion_capture captures."));

	/* From a partition (a cloned trigger) up to the captured table. */
	root = RelationGetRelid(rel);
	if (rel->rd_rel->relispartition)
	{
		if (!trigger->tgisclone)
			refuse_capture(rel, gettext_noop("The trigger on a partition must be the clone of its partitioned table's."));
		while (get_rel_relispartition(root))
			root = get_partition_parent(root, false);
	}

	qvalues[0] = ObjectIdGetDatum(root);
	if (!have_registry())
	{
		/*
		 * A 0.1.0 catalog, not yet updated: the trigger argument names the
		 * bronze table, as 0.1.0 made it; the owner check below still holds.
		 */
		bronze = trigger->tgnargs == 1 ?
			get_relname_relid(trigger->tgargs[0], get_namespace_oid("bronze", false)) :
			InvalidOid;
		if (!OidIsValid(bronze))
			refuse_capture(rel, gettext_noop("The trigger does not name a bronze table."));
	}
	else
	{
		medallion_catalog_enter(&gw);
		if (medallion_gateway_exec("SELECT bronze::pg_catalog.oid FROM medallion.captures "
								   "WHERE source::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
								   1, qargtypes, qvalues, NULL, 1, SPI_OK_SELECT) == 1)
		{
			bool		isnull;

			bronze = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													1, &isnull));
		}
		else
			bronze = InvalidOid;
		medallion_gateway_leave(&gw);
	}
	if (!OidIsValid(bronze) || get_rel_name(bronze) == NULL)
		refuse_capture(rel, gettext_noop("The table is not registered in medallion.captures."));

	medallion_bronze_open(bronze, &target);
	if (pg_class_aclcheck(bronze, medallion_rel_owner(root), ACL_INSERT) != ACLCHECK_OK)
		refuse_capture(rel, gettext_noop("The owner of the captured table may not write its bronze table."));

	cxt = AllocSetContextCreate(TopMemoryContext, "medallion capture verdict",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	v = palloc0(sizeof(CaptureVerdict));
	v->cxt = cxt;
	v->tgoid = trigger->tgoid;
	v->target.relid = target.relid;
	v->target.owner = target.owner;
	v->target.relname = pstrdup(target.relname);
	v->target.pipeline = pstrdup(target.pipeline);
	v->source_name = medallion_qualified_relname(root);
	fmgr_info_cxt(F_TO_JSONB, &v->to_jsonb, cxt);
	expr = makeFuncExpr(F_TO_JSONB, JSONBOID,
						list_make1(makeNullConst(rel->rd_rel->reltype, -1, InvalidOid)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info_set_expr((Node *) expr, &v->to_jsonb);
	MemoryContextSwitchTo(old);

	medallion_gateway_enter(target.owner, &gw);
	v->plan = SPI_prepare(psprintf("INSERT INTO %s (_raw) VALUES (pg_catalog.jsonb_build_object("
								   "'op'::pg_catalog.text, $1, 'table'::pg_catalog.text, $2, "
								   "'data'::pg_catalog.text, $3, 'old'::pg_catalog.text, $4, "
								   "'xid'::pg_catalog.text, pg_catalog.pg_current_xact_id()))",
								   medallion_qualified_relname(target.relid)),
						  4, argtypes);
	if (v->plan == NULL)
		elog(ERROR, "could not prepare the capture of \"%s\": %s",
			 RelationGetRelationName(rel), SPI_result_code_string(SPI_result));
	SPI_keepplan(v->plan);
	medallion_gateway_leave(&gw);

	old = MemoryContextSwitchTo(TopMemoryContext);
	verdicts = lappend(verdicts, v);
	MemoryContextSwitchTo(old);
	return v;
}

/*
 * Trigger on captured tables.  Its argument (the bronze table's name) is
 * informational: the registry says where changes go.
 */
Datum
medallion_capture_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	tupdesc;
	CaptureVerdict *v;
	MedallionGateway gw;
	Datum		values[4];
	char		nulls[4] = "    ";
	const char *op;
	HeapTuple	data;
	HeapTuple	old = NULL;
	int			ret;

	if (!CALLED_AS_TRIGGER(fcinfo) || trigdata->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("medallion.capture_change() must be called as a trigger with the bronze table's name")));
	rel = trigdata->tg_relation;

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot truncate captured table \"%s\"", RelationGetRelationName(rel)),
				 errdetail("Its changes are captured into \"bronze.%s\"; a TRUNCATE would lose the deletes.",
						   trigdata->tg_trigger->tgargs[0]),
				 errhint("DELETE the rows instead, or drop the trigger \"medallion_capture_truncate\" to stop refusing.")));
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || !TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("medallion.capture_change() must be called as an AFTER row trigger")));

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		op = "I";
		data = trigdata->tg_trigtuple;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		op = "U";
		data = trigdata->tg_newtuple;
		old = trigdata->tg_trigtuple;
	}
	else
	{
		op = "D";
		data = trigdata->tg_trigtuple;
	}

	v = capture_verdict(rel, trigdata->tg_trigger);

	/* The row's JSON is made as the role that changed it (its types' casts run). */
	tupdesc = RelationGetDescr(rel);
	values[0] = CStringGetTextDatum(op);
	values[1] = CStringGetTextDatum(v->source_name);
	values[2] = FunctionCall1(&v->to_jsonb, heap_copy_tuple_as_datum(data, tupdesc));
	if (old)
		values[3] = FunctionCall1(&v->to_jsonb, heap_copy_tuple_as_datum(old, tupdesc));
	else
		nulls[3] = 'n';

	/* The capture writes with the bronze owner's rights, whoever changed the table. */
	medallion_bronze_ensure_partitions(&v->target);
	medallion_gateway_enter(v->target.owner, &gw);
	ret = SPI_execute_plan(v->plan, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not capture a change of \"%s\": SPI error %d",
			 RelationGetRelationName(rel), ret);
	medallion_gateway_leave(&gw);

	return PointerGetDatum(NULL);
}
