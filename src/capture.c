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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "medallion.h"

PG_FUNCTION_INFO_V1(medallion_capture);
PG_FUNCTION_INFO_V1(medallion_capture_change);

/* One prepared INSERT per captured table, for the life of the backend. */
typedef struct CapturePlan
{
	Oid			source_relid;
	Oid			bronze_relid;
	SPIPlanPtr	plan;
} CapturePlan;

static List *capture_plans = NIL;

/*
 * medallion.capture(source, name): creates bronze.<name> (default: the
 * source's name) and the triggers that feed it.
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
				 errhint("Its trigger medallion_capture names the bronze table it feeds.")));

	name = PG_ARGISNULL(1) ? relname : text_to_cstring(PG_GETARG_TEXT_PP(1));
	qsource = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), relname);
	source_system = psprintf("capture:%s", qsource);
	retention = DirectFunctionCall3(interval_in, CStringGetDatum("90 days"),
									ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));

	bronze_relid = medallion_bronze_create(name, source_system, retention, false, NULL,
										   DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))),
										   psprintf("changes of %s", qsource));

	SPI_connect();
	if (SPI_execute(psprintf("CREATE TRIGGER medallion_capture "
							 "AFTER INSERT OR UPDATE OR DELETE ON %s "
							 "FOR EACH ROW EXECUTE FUNCTION medallion.capture_change(%s);"
							 "CREATE TRIGGER medallion_capture_truncate BEFORE TRUNCATE ON %s "
							 "FOR EACH STATEMENT EXECUTE FUNCTION medallion.capture_change(%s);",
							 qsource, quote_literal_cstr(name),
							 qsource, quote_literal_cstr(name)),
					false, 0) < 0)
		elog(ERROR, "could not create the capture triggers on %s", qsource);
	SPI_finish();

	PG_RETURN_OID(bronze_relid);
}

/*
 * The prepared INSERT of a captured table's changes into its bronze table.
 */
static SPIPlanPtr
capture_plan(Relation source, Oid bronze_relid, const char *bronze_name)
{
	ListCell   *lc;
	CapturePlan *cp;
	Oid			argtypes[4];
	MemoryContext old;
	SPIPlanPtr	plan;

	foreach(lc, capture_plans)
	{
		cp = lfirst(lc);
		if (cp->source_relid == RelationGetRelid(source) && cp->bronze_relid == bronze_relid)
			return cp->plan;
	}

	argtypes[0] = TEXTOID;
	argtypes[1] = TEXTOID;
	argtypes[2] = source->rd_rel->reltype;
	argtypes[3] = source->rd_rel->reltype;
	plan = SPI_prepare(psprintf("INSERT INTO %s (_raw) VALUES (pg_catalog.jsonb_build_object("
								"'op', $1, 'table', $2, "
								"'data', pg_catalog.to_jsonb($3), 'old', pg_catalog.to_jsonb($4), "
								"'xid', pg_catalog.pg_current_xact_id()))",
								quote_qualified_identifier("bronze", bronze_name)),
					   4, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare the capture of \"%s\": %s",
			 RelationGetRelationName(source), SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);

	old = MemoryContextSwitchTo(TopMemoryContext);
	cp = palloc(sizeof(CapturePlan));
	cp->source_relid = RelationGetRelid(source);
	cp->bronze_relid = bronze_relid;
	cp->plan = plan;
	capture_plans = lappend(capture_plans, cp);
	MemoryContextSwitchTo(old);
	return plan;
}

/*
 * Trigger on captured tables.  Argument: the bronze table's name.
 */
Datum
medallion_capture_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	tupdesc;
	BronzeTarget target;
	MedallionUserContext save;
	Datum		values[4];
	char		nulls[4] = "    ";
	const char *op;
	HeapTuple	data;
	HeapTuple	old = NULL;
	HeapTuple	tup;
	Oid			nsp;
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
				 errdetail("Its changes are captured into bronze.%s; a TRUNCATE would lose the deletes.",
						   trigdata->tg_trigger->tgargs[0]),
				 errhint("DELETE the rows instead, or drop the trigger medallion_capture_truncate to stop refusing.")));

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

	nsp = get_namespace_oid("bronze", false);
	target.relname = trigdata->tg_trigger->tgargs[0];
	target.relid = get_relname_relid(target.relname, nsp);
	if (!OidIsValid(target.relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("bronze table \"%s\" capturing \"%s\" does not exist",
						target.relname, RelationGetRelationName(rel)),
				 errhint("Drop the medallion_capture triggers of the table to stop capturing.")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(target.relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", target.relid);
	target.owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	target.pipeline = medallion_pipeline_name("bronze", target.relname);

	tupdesc = RelationGetDescr(rel);
	values[0] = CStringGetTextDatum(op);
	values[1] = CStringGetTextDatum(quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
															   RelationGetRelationName(rel)));
	values[2] = heap_copy_tuple_as_datum(data, tupdesc);
	if (old)
		values[3] = heap_copy_tuple_as_datum(old, tupdesc);
	else
		nulls[3] = 'n';

	/* The capture writes with its owner's rights, whoever changed the table. */
	medallion_become_user(target.owner, &save);
	medallion_bronze_ensure_partitions(&target);
	SPI_connect();
	ret = SPI_execute_plan(capture_plan(rel, target.relid, target.relname),
						   values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not capture a change of \"%s\": SPI error %d",
			 RelationGetRelationName(rel), ret);
	SPI_finish();
	medallion_restore_user(&save);

	return PointerGetDatum(NULL);
}
