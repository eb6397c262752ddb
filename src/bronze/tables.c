/*-------------------------------------------------------------------------
 *
 * tables.c
 *	  The bronze layer: append-only landing tables partitioned by day
 *	  (create_bronze, opening a table for ingestion, the append-only trigger).
 *
 * A bronze table holds the raw payload (_raw jsonb) and the metadata of its
 * landing, plus what incremental reads need: the inserting transaction id
 * (_xid, stamped by a column default: inside a subtransaction xmin would be
 * the subtransaction's id) and a sequence (_seq, an identity column: its
 * values need no privilege on the sequence, so a role granted INSERT on the
 * table can ingest, and no writer can choose them).  Partitions are made a few
 * days ahead, so that any writer's plain INSERT or COPY works; a missing day
 * is created on demand as a standalone table then ATTACHed, which takes only
 * SHARE UPDATE EXCLUSIVE on the parent: readers never block and concurrent
 * ingesters never deadlock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "bronze/bronze.h"

PG_FUNCTION_INFO_V1(medallion_create_bronze);
PG_FUNCTION_INFO_V1(medallion_bronze_append_only);

/*
 * The qualified, quoted name of a relation, from its OID.
 */
char *
medallion_qualified_relname(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname = get_namespace_name(get_rel_namespace(relid));

	if (relname == NULL || nspname == NULL)
		elog(ERROR, "cache lookup failed for relation %u", relid);
	return quote_qualified_identifier(nspname, relname);
}

/*
 * The owner of a relation.
 */
Oid
medallion_rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Runs generated statements that create bronze objects (tables, partitions,
 * triggers), inside the gateway the caller entered, under the own-DDL mark
 * (medallion's DDL is not drift).  An error they raise is
 * reported without the generated SQL as its context or internal query: the
 * user did not write that text, and it would bury the message.  The contexts
 * of the caller (e.g. the user's function that called create_bronze) remain.
 */
void
medallion_bronze_exec_ddl(const char *sql)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		medallion_own_ddl_begin();
		(void) medallion_gateway_exec(sql, 0, NULL, NULL, NULL, 0, 0);
		medallion_own_ddl_end();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		edata->context = NULL;
		edata->internalquery = NULL;
		edata->internalpos = 0;
		ThrowErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * Resolves a regclass argument to a bronze table medallion manages, or fails.
 */
void
medallion_bronze_open(Oid relid, BronzeTarget *target)
{
	char	   *relname = get_rel_name(relid);
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		found;

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (get_rel_namespace(relid) != get_namespace_oid("bronze", true) ||
		get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a bronze table", get_rel_name(relid)),
				 errhint("Create one with medallion.create_bronze().")));

	target->relid = relid;
	target->relname = relname;
	target->pipeline = medallion_pipeline_name("bronze", relname);

	values[0] = CStringGetTextDatum(target->pipeline);
	found = medallion_catalog_exec("SELECT FROM medallion.pipelines "
								   "WHERE name OPERATOR(pg_catalog.=) $1 "
								   "AND layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text",
								   1, argtypes, values, NULL, SPI_OK_SELECT) == 1;
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"bronze.%s\" is not a bronze table managed by medallion", relname),
				 errhint("Create one with medallion.create_bronze().")));

	/* Partitions are created as the table's owner, whoever ingests. */
	target->owner = medallion_rel_owner(relid);
}

/*
 * Validates create_bronze's options: a JSON object of known keys.
 */
static const char *
redact_mode_option(Jsonb *options)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	const char *mode = "remove";
	char	   *key = NULL;

	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));

	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
		{
			if (strcmp(key, "redact_mode") == 0)
			{
				if (v.type == jbvString)
					mode = pnstrdup(v.val.string.val, v.val.string.len);
				if (v.type != jbvString ||
					(strcmp(mode, "remove") != 0 && strcmp(mode, "hash") != 0 &&
					 strcmp(mode, "hash_v1") != 0))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("option \"redact_mode\" must be \"remove\", \"hash\" or \"hash_v1\""),
							 errdetail("\"hash\" keeps a keyed hash (HMAC-SHA256) of each value; \"hash_v1\" is the unkeyed SHA-256 of version 0.1.0.")));
			}
			else if (strcmp(key, "description") == 0)
			{
				if (v.type != jbvString)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("option \"description\" must be a string")));
			}
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unrecognized option \"%s\"", key),
						 errhint("Valid options of create_bronze are \"redact_mode\" and \"description\".")));
		}
	}
	return mode;
}

/*
 * Creates bronze.<name> with its partitions and triggers and records the
 * pipeline.  Everything happens in the caller's transaction: an error leaves
 * nothing behind.  Returns the new table's OID.
 */
Oid
medallion_bronze_create(const char *name, const char *source_system,
						Datum retention, bool retention_null,
						ArrayType *redact_keys, Jsonb *options,
						const char *description)
{
	Oid			nsp = get_namespace_oid("bronze", false);
	const char *qrel;
	const char *mode = redact_mode_option(options);
	StringInfoData sql;
	Datum	   *keys;
	bool	   *keynulls;
	int			nkeys = 0;
	BronzeTarget target;
	MedallionGateway gw;
	Oid			relid;
	int			i;

	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("bronze table name must not be empty")));
	if ((int) strlen(name) > BRONZE_MAX_NAME)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("bronze table name \"%s\" is too long", name),
				 errdetail_plural("A bronze table name may have at most %d byte, so that its partitions' names fit.",
								  "A bronze table name may have at most %d bytes, so that its partitions' names fit.",
								  BRONZE_MAX_NAME, BRONZE_MAX_NAME)));
	if (source_system[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source_system must not be empty")));
	if (!retention_null)
	{
		Interval	zero = {0};

		if (DatumGetInt32(DirectFunctionCall2(interval_cmp, retention,
											  IntervalPGetDatum(&zero))) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("retention must be a positive interval"),
					 errhint("Pass NULL to keep bronze rows forever.")));
	}
	if (redact_keys)
	{
		if (ARR_NDIM(redact_keys) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("redact_keys must be a one-dimensional array")));
		deconstruct_array(redact_keys, TEXTOID, -1, false, TYPALIGN_INT,
						  &keys, &keynulls, &nkeys);
		for (i = 0; i < nkeys; i++)
			if (keynulls[i] || VARSIZE_ANY_EXHDR(DatumGetPointer(keys[i])) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("redact_keys must not contain NULL or empty keys")));
	}

	if (pg_namespace_aclcheck(nsp, GetUserId(), ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create bronze tables"),
				 errdetail("Creating a bronze table needs the CREATE privilege on schema \"bronze\"."),
				 errhint("An administrator can run: GRANT CREATE ON SCHEMA bronze TO %s;",
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
	if (OidIsValid(get_relname_relid(name, nsp)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"bronze.%s\" already exists", name)));

	qrel = quote_qualified_identifier("bronze", name);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE TABLE %s ("
					 " _raw pg_catalog.jsonb NOT NULL,"
					 " _ingested_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),"
					 " _source_system pg_catalog.text NOT NULL DEFAULT %s,"
					 " _batch_id pg_catalog.text,"
					 " _file_name pg_catalog.text,"
					 " _seq pg_catalog.int8 GENERATED ALWAYS AS IDENTITY,"
					 " _xid pg_catalog.xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()"
					 ") PARTITION BY RANGE (_ingested_at);"
					 "CREATE INDEX ON %s (_xid, _seq);"
					 "CREATE TRIGGER medallion_append_only BEFORE UPDATE OR DELETE ON %s "
					 "FOR EACH ROW EXECUTE FUNCTION medallion.bronze_append_only();"
					 "CREATE TRIGGER medallion_append_only_truncate BEFORE TRUNCATE ON %s "
					 "FOR EACH STATEMENT EXECUTE FUNCTION medallion.bronze_append_only();"
					 "CREATE TRIGGER medallion_landed AFTER INSERT ON %s "
					 "FOR EACH STATEMENT EXECUTE FUNCTION medallion.bronze_landed();",
					 qrel, quote_literal_cstr(source_system), qrel, qrel, qrel, qrel);
	if (nkeys > 0)
	{
		appendStringInfo(&sql,
						 "CREATE TRIGGER medallion_redact BEFORE INSERT ON %s "
						 "FOR EACH ROW EXECUTE FUNCTION medallion.bronze_redact(%s",
						 qrel, quote_literal_cstr(mode));
		for (i = 0; i < nkeys; i++)
			appendStringInfo(&sql, ", %s",
							 quote_literal_cstr(TextDatumGetCString(keys[i])));
		appendStringInfoString(&sql, ");");
	}
	appendStringInfo(&sql, "COMMENT ON TABLE %s IS %s;", qrel,
					 quote_literal_cstr(psprintf("medallion bronze table: raw data from %s, append-only",
												 source_system)));

	/* As the caller (who will own the table), under the pinned path. */
	medallion_gateway_enter(GetUserId(), &gw);
	medallion_bronze_exec_ddl(sql.data);
	medallion_gateway_leave(&gw);
	CommandCounterIncrement();

	relid = get_relname_relid(name, nsp);
	if (!OidIsValid(relid))
		elog(ERROR, "bronze table \"%s\" vanished after creation", name);

	medallion_catalog_add_pipeline(medallion_pipeline_name("bronze", name), "bronze",
								   name, GetUserId(), source_system,
								   retention, retention_null, options, description);

	target.relid = relid;
	target.relname = pstrdup(name);
	target.owner = GetUserId();
	target.pipeline = medallion_pipeline_name("bronze", name);
	medallion_bronze_ensure_partitions(&target);
	return relid;
}

/*
 * medallion.create_bronze(name, source_system, retention, redact_keys, options)
 */
Datum
medallion_create_bronze(PG_FUNCTION_ARGS)
{
	Jsonb	   *options;
	char	   *description = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("bronze table name must not be NULL")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source_system must not be NULL")));
	options = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	if (options == NULL)
		options = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	else if (JB_ROOT_IS_OBJECT(options))
	{
		JsonbValue	k,
				   *v;

		k.type = jbvString;
		k.val.string.val = "description";
		k.val.string.len = strlen("description");
		v = findJsonbValueFromContainer(&options->root, JB_FOBJECT, &k);
		if (v && v->type == jbvString)
			description = pnstrdup(v->val.string.val, v->val.string.len);
	}

	PG_RETURN_OID(medallion_bronze_create(text_to_cstring(PG_GETARG_TEXT_PP(0)),
										  text_to_cstring(PG_GETARG_TEXT_PP(1)),
										  PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2),
										  PG_ARGISNULL(2),
										  PG_ARGISNULL(3) ? NULL : PG_GETARG_ARRAYTYPE_P(3),
										  options, description));
}

/*
 * Trigger on bronze tables: UPDATE, DELETE and TRUNCATE are refused, unless
 * a superuser has set medallion.allow_bronze_changes (e.g. to erase a
 * person's data on request).
 */
Datum
medallion_bronze_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	char	   *relname;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("medallion.bronze_append_only() must be called as a trigger")));

	if (medallion_allow_bronze_changes && superuser())
	{
		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
			return PointerGetDatum(trigdata->tg_newtuple);
		return PointerGetDatum(trigdata->tg_trigtuple);
	}

	/* Row triggers fire on the partitions: name the table the user knows. */
	rel = trigdata->tg_relation;
	if (rel->rd_rel->relispartition)
		relname = get_rel_name(get_partition_parent(RelationGetRelid(rel), true));
	else
		relname = RelationGetRelationName(rel);

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot update bronze table \"%s\"", relname),
				 errdetail("Bronze tables are append-only."),
				 errhint("Old data leaves through medallion.apply_retention(); a superuser can SET medallion.allow_bronze_changes = on for an erasure.")));
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot delete from bronze table \"%s\"", relname),
				 errdetail("Bronze tables are append-only."),
				 errhint("Old data leaves through medallion.apply_retention(); a superuser can SET medallion.allow_bronze_changes = on for an erasure.")));
	else
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot truncate bronze table \"%s\"", relname),
				 errdetail("Bronze tables are append-only."),
				 errhint("Old data leaves through medallion.apply_retention(); a superuser can SET medallion.allow_bronze_changes = on for an erasure.")));
	PG_RETURN_NULL();
}
