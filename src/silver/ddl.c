/*-------------------------------------------------------------------------
 *
 * ddl.c
 *	  Defining silver pipelines: create_silver and expect, and the checks a
 *	  contract passes before it is stored (alter_contract's too).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/xid8.h"

#include "medallion.h"
#include "silver/silver.h"

PG_FUNCTION_INFO_V1(medallion_create_silver);
PG_FUNCTION_INFO_V1(medallion_expect);

/* ---------------------------------------------------------------------------
 * Definition
 * ---------------------------------------------------------------------------
 */

/*
 * Rejects a name that cannot become a table name of ours: empty, or too long
 * once our suffixes are added (PostgreSQL would truncate it silently).
 */
void
medallion_check_name(MedallionNameKind kind, const char *name, int max_len)
{
	if (name[0] == '\0')
	{
		if (kind == MEDALLION_NAME_COLUMN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("column name must not be empty")));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("silver table name must not be empty")));
	}
	if ((int) strlen(name) <= max_len)
		return;
	switch (kind)
	{
		case MEDALLION_NAME_COLUMN:
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("column name \"%s\" is too long", name),
					 errdetail_plural("The name may have at most %d byte.",
									  "The name may have at most %d bytes.",
									  max_len, max_len)));
			break;
		case MEDALLION_NAME_SILVER:
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("silver table name \"%s\" is too long", name),
					 errdetail_plural("The name may have at most %d byte.",
									  "The name may have at most %d bytes.",
									  max_len, max_len)));
			break;
		case MEDALLION_NAME_SILVER_DELETES:
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("silver table name \"%s\" is too long for a pipeline with delete_when", name),
					 errdetail_plural("Its tombstone table needs a longer name: the name may have at most %d byte.",
									  "Its tombstone table needs a longer name: the name may have at most %d bytes.",
									  max_len, max_len)));
			break;
	}
}

/*
 * Prepares SQL generated from a pipeline's contract, to check that every
 * expression, condition and reference in it plans.  An error says which
 * pipeline was being validated instead of quoting the whole generated
 * statement, which is not the user's text.
 */
static void
prepare_generated(const char *sql, SilverRun *r, const char *pipeline)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		if (SPI_prepare(sql, NPARAMS, r->types) == NULL)
			elog(ERROR, "could not prepare the pipeline's SQL: %s", SPI_result_code_string(SPI_result));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		edata->context = psprintf(_("while validating the contract of pipeline \"%s\""), pipeline);
		edata->internalquery = NULL;
		edata->internalpos = 0;
		edata->cursorpos = 0;
		ReThrowError(edata);
	}
	PG_END_TRY();
}

/*
 * Refuses a contract whose references name a table or column that does not
 * exist; returns the pipelines whose tables they reference (graph edges).
 */
List *
silver_check_references(Contract *c)
{
	ListCell   *lc;
	List	   *upstreams = NIL;

	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		if (col->ref_table)
		{
			char	   *upstream;
			char	   *d = strchr(col->ref_table, '.');
			Oid			rnsp = get_namespace_oid(pnstrdup(col->ref_table, d - col->ref_table), true);
			Oid			rrel = OidIsValid(rnsp) ? get_relname_relid(d + 1, rnsp) : InvalidOid;

			if (!OidIsValid(rrel))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_TABLE),
						 errmsg("referenced table \"%s\" of column \"%s\" does not exist",
								col->ref_table, col->name)));
			if (get_attnum(rrel, col->ref_column) == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("referenced column \"%s\" of \"%s\" does not exist",
								col->ref_column, col->ref_table)));
			/* a pipeline's table: an edge of the graph (run_all runs it first) */
			upstream = medallion_pipeline_of_relation(rrel);
			if (upstream)
				upstreams = lappend(upstreams, upstream);
		}
	}
	return upstreams;
}

/*
 * Plans a run's MERGE of contract c from qsource into qtarget (and qtomb)
 * as role, under the run's settings: every expression, condition and
 * reference of the contract must plan now, not at the first run.
 */
void
silver_plan_contract(Contract *c, const char *qsource, const char *qtarget, const char *qtomb,
					 Oid role, const char *pipeline)
{
	SilverRun	r = {0};
	int			nestlevel;
	MedallionUserContext save;

	r.c = c;
	r.qsource = (char *) qsource;
	r.qtarget = (char *) qtarget;
	r.qtomb = (char *) qtomb;
	r.has_prev = true;
	r.prev_has_xip = true;
	silver_init_params(&r);
	medallion_run_settings_push(c, &nestlevel);
	medallion_become_user(role, &save);
	SPI_connect();
	prepare_generated(silver_merge_sql(&r), &r, pipeline);
	SPI_finish();
	medallion_restore_user(&save);
	AtEOXact_GUC(true, nestlevel);
}

/*
 * Plans an expectation's check over the typed columns of contract c read
 * from source ('layer.table'), as the pipeline's owner.
 */
void
silver_plan_expectation(Contract *c, const char *source, Oid owner, const char *pipeline,
						const char *check_sql)
{
	SilverRun	r = {0};
	int			nestlevel;
	MedallionUserContext save;
	const char *dot = strchr(source, '.');

	r.c = c;
	r.qsource = quote_qualified_identifier(pnstrdup(source, dot - source), dot + 1);
	silver_init_params(&r);
	medallion_run_settings_push(c, &nestlevel);
	medallion_become_user(owner, &save);
	SPI_connect();
	prepare_generated(psprintf("SELECT ((%s\n) IS FALSE) FROM (%s) s",
							   check_sql, silver_checked_sql(&r, true, false)),
					  &r, pipeline);
	SPI_finish();
	medallion_restore_user(&save);
	AtEOXact_GUC(true, nestlevel);
}

/*
 * medallion.create_silver(name, source, columns, unique_key, order_by, options)
 */
Datum
medallion_create_silver(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			source;
	BronzeTarget bronze;
	Jsonb	   *definition;
	Contract   *c;
	StringInfoData ddl;
	StringInfoData def;
	ListCell   *lc;
	Oid			nsp = get_namespace_oid("silver", false);
	Oid			relid;
	char	   *qrel;
	char	   *description = NULL;
	int			i;
	List	   *referenced = NIL;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name, source, columns and unique_key must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	source = PG_GETARG_OID(1);
	medallion_check_name(MEDALLION_NAME_SILVER, name, NAMEDATALEN - 1);
	medallion_bronze_open(source, &bronze);
	if (pg_class_aclcheck(source, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", quote_qualified_identifier("bronze", bronze.relname)),
				 errhint("The owner of a silver pipeline needs SELECT on its bronze source.")));
	if (pg_namespace_aclcheck(nsp, GetUserId(), ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create silver tables"),
				 errdetail("Creating a silver table needs the CREATE privilege on schema \"silver\"."),
				 errhint("An administrator can run: GRANT CREATE ON SCHEMA silver TO %s;",
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
	if (OidIsValid(get_relname_relid(name, nsp)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"silver.%s\" already exists", name)));

	/* the stored definition: {"columns", "unique_key", "order_by", "options"} */
	initStringInfo(&def);
	appendStringInfoString(&def, "{\"columns\": ");
	appendStringInfoString(&def, JsonbToCString(NULL, &PG_GETARG_JSONB_P(2)->root, 0));
	appendStringInfoString(&def, ", \"unique_key\": [");
	{
		Datum	   *keys;
		bool	   *knulls;
		int			n;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TEXTOID, -1, false, TYPALIGN_INT, &keys, &knulls, &n);
		for (i = 0; i < n; i++)
		{
			if (knulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("unique_key must not contain NULL")));
			if (i > 0)
				appendStringInfoChar(&def, ',');
			escape_json(&def, TextDatumGetCString(keys[i]));
		}
	}
	appendStringInfoString(&def, "], \"order_by\": ");
	if (PG_ARGISNULL(4))
		appendStringInfoString(&def, "null");
	else
		escape_json(&def, text_to_cstring(PG_GETARG_TEXT_PP(4)));
	appendStringInfoString(&def, ", \"options\": ");
	appendStringInfoString(&def, PG_ARGISNULL(5) ? "{}" : JsonbToCString(NULL, &PG_GETARG_JSONB_P(5)->root, 0));
	appendStringInfoChar(&def, '}');
	definition = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(def.data)));
	c = medallion_contract_parse(definition, true);
	if (c->delete_when)
		medallion_check_name(MEDALLION_NAME_SILVER_DELETES, name, SILVER_MAX_NAME_WITH_DELETES);

	referenced = silver_check_references(c);

	qrel = quote_qualified_identifier("silver", name);
	initStringInfo(&ddl);
	appendStringInfo(&ddl, "CREATE TABLE %s (", qrel);
	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		/* a required column is never NULL: say so to the planner and to readers */
		if (silver_is_stored(col))
			appendStringInfo(&ddl, "%s %s%s, ", silver_qcol(col->name), silver_stored_type(col),
							 col->required ? " NOT NULL" : "");
	}
	appendStringInfoString(&ddl,
						   "_source_seq pg_catalog.int8 NOT NULL, _batch_id pg_catalog.text, "
						   "_loaded_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(), "
						   "_run_id pg_catalog.int8, _created_run_id pg_catalog.int8, PRIMARY KEY (");
	foreach(lc, c->unique_key)
		appendStringInfo(&ddl, "%s%s", lc == list_head(c->unique_key) ? "" : ", ", silver_qcol(lfirst(lc)));
	appendStringInfoString(&ddl, "));");
	if (c->delete_when)
	{
		/* the newest delete of each deleted key (see tombstone_sql) */
		appendStringInfo(&ddl, "CREATE TABLE %s (", silver_tombstone_table(name));
		foreach(lc, c->unique_key)
			appendStringInfo(&ddl, "%s %s, ", silver_qcol(lfirst(lc)),
							 silver_stored_type(medallion_contract_column(c, lfirst(lc))));
		if (c->order_by)
			appendStringInfo(&ddl, "%s %s, ", silver_qcol(c->order_by),
							 silver_stored_type(medallion_contract_column(c, c->order_by)));
		appendStringInfoString(&ddl, "_source_seq pg_catalog.int8 NOT NULL, _run_id pg_catalog.int8, PRIMARY KEY (");
		foreach(lc, c->unique_key)
			appendStringInfo(&ddl, "%s%s", lc == list_head(c->unique_key) ? "" : ", ", silver_qcol(lfirst(lc)));
		appendStringInfo(&ddl, "));COMMENT ON TABLE %s IS %s;", silver_tombstone_table(name),
						 quote_literal_cstr(psprintf("medallion: deleted keys of silver.%s, newest delete kept", name)));
	}
	/* the business documentation: the pipeline's description, the columns' */
	{
		JsonbValue *v = NULL;

		if (!PG_ARGISNULL(5) && JB_ROOT_IS_OBJECT(PG_GETARG_JSONB_P(5)))
			v = getKeyJsonValueFromContainer(&PG_GETARG_JSONB_P(5)->root, "description",
											 strlen("description"), NULL);
		if (v && v->type == jbvString)
			description = pnstrdup(v->val.string.val, v->val.string.len);
	}
	appendStringInfo(&ddl, "COMMENT ON TABLE %s IS %s;", qrel,
					 quote_literal_cstr(description ? description :
										psprintf("medallion silver table, fed from bronze.%s", bronze.relname)));
	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		if (col->description && silver_is_stored(col))
			appendStringInfo(&ddl, "COMMENT ON COLUMN %s.%s IS %s;", qrel, silver_qcol(col->name),
							 quote_literal_cstr(col->description));
	}

	SPI_connect();
	medallion_own_ddl_begin();
	if (SPI_execute(ddl.data, false, 0) < 0)
		elog(ERROR, "could not create silver table: %s", ddl.data);
	medallion_own_ddl_end();
	SPI_finish();
	CommandCounterIncrement();

	/* Every expression, condition and reference must plan now, not at the first run. */
	silver_plan_contract(c, quote_qualified_identifier("bronze", bronze.relname), qrel,
						 c->delete_when ? silver_tombstone_table(name) : NULL,
						 GetUserId(), medallion_pipeline_name("silver", name));
	relid = get_relname_relid(name, nsp);

	medallion_catalog_add_pipeline(medallion_pipeline_name("silver", name), "silver", name,
								   GetUserId(), NULL, (Datum) 0, true,
								   PG_ARGISNULL(5) ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")))
								   : PG_GETARG_JSONB_P(5),
								   description);
	medallion_catalog_set_definition(medallion_pipeline_name("silver", name), bronze.pipeline, definition);
	(void) medallion_contract_version_add(medallion_pipeline_name("silver", name), definition,
										  c->compatibility, false, GetUserId());
	/* the graph: its bronze source, and the pipelines whose tables it references */
	medallion_dependencies_set(medallion_pipeline_name("silver", name), "source",
							   list_make1(bronze.pipeline), NIL);
	medallion_dependencies_set(medallion_pipeline_name("silver", name), "reference", referenced, NIL);
	PG_RETURN_OID(relid);
}

/*
 * medallion.expect(pipeline, name, check_sql, on_fail)
 */
Datum
medallion_expect(PG_FUNCTION_ARGS)
{
	char	   *pipeline;
	char	   *on_fail;
	Pipeline	p = {0};
	MedallionGateway gw;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline, name, check_sql and on_fail must not be NULL")));
	pipeline = text_to_cstring(PG_GETARG_TEXT_PP(0));
	on_fail = text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (strcmp(on_fail, "warn") != 0 && strcmp(on_fail, "drop") != 0 &&
		strcmp(on_fail, "quarantine") != 0 && strcmp(on_fail, "fail") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("on_fail must be \"warn\", \"drop\", \"quarantine\" or \"fail\"")));
	if (!medallion_pipeline_lookup(pipeline, &p, false, false, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", pipeline)));
	if (strcmp(p.layer, "silver") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("pipeline \"%s\" is not a silver pipeline", pipeline),
				 errdetail("Expectations apply to silver pipelines only.")));
	if (!OidIsValid(p.owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", p.owner_name),
				 errdetail("It owns pipeline \"%s\".", pipeline)));
	if (!has_privs_of_role(GetUserId(), p.owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of pipeline \"%s\"", pipeline)));

	/* The check must plan over the pipeline's columns. */
	silver_plan_expectation(silver_contract_get(&p), p.source, p.owner, pipeline,
							text_to_cstring(PG_GETARG_TEXT_PP(2)));

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_GETARG_DATUM(2);
	values[3] = CStringGetTextDatum(on_fail);
	medallion_catalog_enter(&gw);
	if (SPI_execute_with_args("INSERT INTO medallion.expectations (pipeline, name, check_sql, on_fail) "
							  "VALUES ($1, $2, $3, $4) ON CONFLICT (pipeline, name) DO UPDATE "
							  "SET check_sql = EXCLUDED.check_sql, on_fail = EXCLUDED.on_fail",
							  4, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the expectation");
	medallion_gateway_leave(&gw);
	PG_RETURN_VOID();
}
