/*-------------------------------------------------------------------------
 *
 * bronze.c
 *	  The bronze layer: append-only landing tables partitioned by day.
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
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "medallion.h"

/* Suffix of a partition name: "_pYYYYMMDD". */
#define PARTITION_SUFFIX_LEN 10
#define BRONZE_MAX_NAME (NAMEDATALEN - 1 - PARTITION_SUFFIX_LEN)

/* Advisory-lock class serialising partition creation per bronze table. */
#define MEDALLION_LOCK_PARTITIONS 0x4d45

/* Most days a writer other than the table's owner makes ahead. */
#define MEDALLION_PREMAKE_CAP 31

PG_FUNCTION_INFO_V1(medallion_create_bronze);
PG_FUNCTION_INFO_V1(medallion_apply_retention);
PG_FUNCTION_INFO_V1(medallion_bronze_append_only);
PG_FUNCTION_INFO_V1(medallion_bronze_redact);

/*
 * Rejects a name that cannot become a table name of ours: empty, or too long
 * once our suffixes are added (PostgreSQL would truncate it silently).
 */
void
medallion_check_name(const char *what, const char *name, int max_len)
{
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("%s name must not be empty", what)));
	if ((int) strlen(name) > max_len)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("%s name \"%s\" is too long", what, name),
				 errdetail("The name may have at most %d bytes.", max_len)));
}

/*
 * The UTC day (days since 2000-01-01) of a timestamp.
 */
static int
utc_day(TimestampTz ts)
{
	int64		day = ts / USECS_PER_DAY;

	if (ts < 0 && ts % USECS_PER_DAY != 0)
		day--;
	return (int) day;
}

/*
 * Formats a UTC day as YYYYMMDD (compact) or as a timestamptz literal.
 */
static char *
format_day(int day, bool literal)
{
	int			y,
				m,
				d;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	if (literal)
		return psprintf("'%04d-%02d-%02d 00:00:00+00'", y, m, d);
	return psprintf("%04d%02d%02d", y, m, d);
}

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
 * Creates and attaches the partition of one day.  The caller is inside the
 * gateway as the table's owner and holds the table's partition lock.  The
 * CHECK (which lets ATTACH skip its scan) qualifies its operators and casts:
 * it is evaluated for every later writer, whoever that is.
 */
static void
create_day_partition(const BronzeTarget *target, int day)
{
	StringInfoData sql;
	char	   *partname = psprintf("%s_p%s", target->relname, format_day(day, false));
	const char *qparent = medallion_qualified_relname(target->relid);
	const char *qpart = quote_qualified_identifier("bronze", partname);
	char	   *lo = format_day(day, true);
	char	   *hi = format_day(day + 1, true);

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS);"
					 "ALTER TABLE %s ADD CONSTRAINT medallion_bound CHECK "
					 "(_ingested_at OPERATOR(pg_catalog.>=) %s::pg_catalog.timestamptz "
					 "AND _ingested_at OPERATOR(pg_catalog.<) %s::pg_catalog.timestamptz);"
					 "ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s);"
					 "CREATE TRIGGER medallion_append_only_truncate BEFORE TRUNCATE ON %s "
					 "FOR EACH STATEMENT EXECUTE FUNCTION medallion.bronze_append_only();"
					 "CREATE TRIGGER medallion_landed AFTER INSERT ON %s "
					 "FOR EACH STATEMENT EXECUTE FUNCTION medallion.bronze_landed();",
					 qpart, qparent, qpart, lo, hi, qparent, qpart, lo, hi, qpart, qpart);
	(void) medallion_gateway_exec(sql.data, 0, NULL, NULL, NULL, 0, 0);
}

/*
 * Whether the day's partition of the table exists: a partition of that name
 * in bronze.  (Checking its parent would cost an index scan per day, per
 * captured row; a name another role took only makes the creation fail.)
 */
static bool
day_partition_exists(const BronzeTarget *target, const char *partname, Oid nsp)
{
	Oid			relid = get_relname_relid(partname, nsp);

	return OidIsValid(relid) && get_rel_relispartition(relid);
}

/*
 * Makes sure the partitions of today and the next medallion.premake_days days
 * exist.  "Today" is the UTC day of the transaction start, the value the
 * _ingested_at default (now()) takes.  The partitions are created as the
 * table's owner, so a writer that is not the owner (the setting is the
 * session's) premakes at most MEDALLION_PREMAKE_CAP days.
 */
void
medallion_bronze_ensure_partitions(const BronzeTarget *target)
{
	Oid			nsp = get_namespace_oid("bronze", false);
	int			today = utc_day(GetCurrentTransactionStartTimestamp());
	int			ahead = medallion_premake_days;
	int			day;
	bool		locked = false;
	MedallionGateway gw;
	LOCKTAG		tag;

	if (ahead > MEDALLION_PREMAKE_CAP && !has_privs_of_role(GetUserId(), target->owner))
		ahead = MEDALLION_PREMAKE_CAP;

	for (day = today; day <= today + ahead; day++)
	{
		char	   *partname = psprintf("%s_p%s", target->relname, format_day(day, false));

		if (day_partition_exists(target, partname, nsp))
			continue;

		if (!locked)
		{
			/*
			 * Serialise creators; then look again at what they committed.
			 * The rows being written need today's partition only: wait for
			 * a concurrent creator just for that one.  A later day being
			 * created by another transaction, whose commit may be far off,
			 * is left to it: waiting would stall this writer for nothing,
			 * and deadlock with a creator that waits for us on another
			 * table.
			 */
			SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, target->relid, 0,
								 MEDALLION_LOCK_PARTITIONS);
			if (LockAcquire(&tag, ExclusiveLock, false, day != today) == LOCKACQUIRE_NOT_AVAIL)
				break;
			AcceptInvalidationMessages();
			locked = true;
			medallion_gateway_enter(target->owner, &gw);
			if (day_partition_exists(target, partname, nsp))
				continue;
		}
		create_day_partition(target, day);
	}
	if (locked)
		medallion_gateway_leave(&gw);
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
	{
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for relation %u", relid);
		target->owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
		ReleaseSysCache(tup);
	}
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

	medallion_check_name("bronze table", name, BRONZE_MAX_NAME);
	if (source_system[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source_system must not be empty")));
	if (!retention_null)
	{
		Interval   *iv = DatumGetIntervalP(retention);
		Interval	zero = {0};

		if (DatumGetInt32(DirectFunctionCall2(interval_cmp, retention,
											  IntervalPGetDatum(&zero))) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("retention must be a positive interval"),
					 errhint("Pass NULL to keep bronze rows forever.")));
		(void) iv;
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
	(void) medallion_gateway_exec(sql.data, 0, NULL, NULL, NULL, 0, 0);
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
	const char *op;
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

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else
		op = "TRUNCATE";

	/* Row triggers fire on the partitions: name the table the user knows. */
	rel = trigdata->tg_relation;
	if (rel->rd_rel->relispartition)
		relname = get_rel_name(get_partition_parent(RelationGetRelid(rel), true));
	else
		relname = RelationGetRelationName(rel);

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s bronze table \"%s\"", op, relname),
			 errdetail("Bronze tables are append-only."),
			 errhint("Old data leaves through medallion.apply_retention(); a superuser can SET medallion.allow_bronze_changes = on for an erasure.")));
	PG_RETURN_NULL();
}

/*
 * A JSON string of a value's pseudonym: the hex HMAC-SHA256 of its text
 * under the database's key, or for "hash_v1" (0.1.0's mode, kept so that
 * existing tables go on producing the same values) its plain SHA-256.
 */
static Datum
hashed_value(Datum value_text, bool keyed)
{
	text	   *t = DatumGetTextPP(value_text);
	char	   *hex;

	if (keyed)
		hex = medallion_pseudonymize_hex(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	else
	{
		uint8		digest[PG_SHA256_DIGEST_LENGTH];
		pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

		if (pg_cryptohash_init(ctx) < 0 ||
			pg_cryptohash_update(ctx, (uint8 *) VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)) < 0 ||
			pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
			elog(ERROR, "could not compute SHA-256");
		pg_cryptohash_free(ctx);
		hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
		hex_encode((char *) digest, PG_SHA256_DIGEST_LENGTH, hex);
		hex[PG_SHA256_DIGEST_LENGTH * 2] = '\0';
	}
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(psprintf("\"%s\"", hex)));
}

/*
 * Splits a dotted key path into a text[] path.
 */
static ArrayType *
split_path(const char *dotted, Datum **elems, int *nelems)
{
	List	   *parts = NIL;
	char	   *copy = pstrdup(dotted);
	char	   *tok;
	char	   *save;
	ListCell   *lc;
	int			i = 0;

	for (tok = strtok_r(copy, ".", &save); tok; tok = strtok_r(NULL, ".", &save))
		parts = lappend(parts, tok);
	*nelems = list_length(parts);
	*elems = palloc(sizeof(Datum) * Max(*nelems, 1));
	foreach(lc, parts)
		(*elems)[i++] = CStringGetTextDatum((char *) lfirst(lc));
	return construct_array(*elems, *nelems, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * Trigger on bronze tables with redact_keys: removes or hashes those keys
 * (dotted paths for nested keys) before the row is stored.  Arguments: the
 * mode ('remove', 'hash' or 'hash_v1'), then the paths.
 */
Datum
medallion_bronze_redact(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	int			attnum;
	bool		isnull;
	Datum		raw;
	bool		hash;
	bool		hash_v1;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("medallion.bronze_redact() must be called as a row INSERT trigger")));

	trigger = trigdata->tg_trigger;
	tuple = trigdata->tg_trigtuple;
	tupdesc = RelationGetDescr(trigdata->tg_relation);
	attnum = SPI_fnumber(tupdesc, "_raw");
	if (attnum <= 0 || trigger->tgnargs < 1)
		elog(ERROR, "medallion.bronze_redact(): not a bronze table or missing arguments");

	raw = heap_getattr(tuple, attnum, tupdesc, &isnull);
	if (isnull)
		return PointerGetDatum(tuple);

	hash = strcmp(trigger->tgargs[0], "hash") == 0;
	hash_v1 = strcmp(trigger->tgargs[0], "hash_v1") == 0;
	/* a 0.1.0 catalog (not yet updated) has no key: its "hash" is hash_v1 */
	if (hash && !OidIsValid(get_relname_relid("pseudonym_keys",
											  get_namespace_oid("medallion", false))))
	{
		hash = false;
		hash_v1 = true;
	}
	for (i = 1; i < trigger->tgnargs; i++)
	{
		Datum	   *elems;
		int			nelems;
		ArrayType  *path = split_path(trigger->tgargs[i], &elems, &nelems);
		bool		absent;
		Datum		found;

		if (nelems == 0)
			continue;
		found = jsonb_get_element(DatumGetJsonbP(raw), elems, nelems, &absent, true);
		if (absent)
			continue;
		if (hash || hash_v1)
			raw = DirectFunctionCall4(jsonb_set, raw, PointerGetDatum(path),
									  hashed_value(found, hash), BoolGetDatum(false));
		else
			raw = DirectFunctionCall2(jsonb_delete_path, raw, PointerGetDatum(path));
	}

	{
		int			cols[1] = {attnum};
		Datum		vals[1] = {raw};
		bool		nulls[1] = {false};

		return PointerGetDatum(heap_modify_tuple_by_cols(tuple, tupdesc, 1, cols, vals, nulls));
	}
}

/* The watermark of one pipeline reading a bronze table. */
typedef struct Reader
{
	char	   *name;
	Datum		values[4];		/* done, target snapshots, resume xid, seq */
	char		nulls[4];
} Reader;

/*
 * The pipelines that read a bronze pipeline, with their watermarks, in name
 * order (read from the catalog as its owner).
 */
static List *
readers_of(const char *bronze_pipeline)
{
	MedallionGateway gw;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	List	   *readers = NIL;
	uint64		n,
				i;
	MemoryContext caller = CurrentMemoryContext;

	values[0] = CStringGetTextDatum(bronze_pipeline);
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec("SELECT p.name, w.done_snapshot, w.target_snapshot, w.resume_xid, w.resume_seq "
							   "FROM medallion.pipelines p "
							   "LEFT JOIN medallion.watermarks w ON w.pipeline OPERATOR(pg_catalog.=) p.name "
							   "WHERE p.source OPERATOR(pg_catalog.=) $1 ORDER BY p.name",
							   1, argtypes, values, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);
		Reader	   *r = palloc0(sizeof(Reader));
		int			col;

		r->name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		for (col = 0; col < 4; col++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
										  col + 2, &isnull);
			Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, col + 1);

			r->nulls[col] = isnull ? 'n' : ' ';
			r->values[col] = isnull ? (Datum) 0 : datumCopy(d, att->attbyval, att->attlen);
		}
		readers = lappend(readers, r);
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return readers;
}

/*
 * The first pipeline reading a bronze table that has not processed every
 * row of one of its partitions, or NULL.  A row is processed once its
 * transaction is visible in the pipeline's done snapshot (conservative for
 * a backlog being drained in bounded runs).  The partition is user data: it
 * is read as the table's owner, the watermarks passed as parameters.
 */
static char *
unprocessed_by(List *readers, Oid partition, Oid owner)
{
	Oid			argtypes[4] = {PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID};
	char	   *sql;
	char	   *reader = NULL;
	ListCell   *lc;
	MedallionGateway gw;

	if (readers == NIL)
		return NULL;
	sql = psprintf("SELECT FROM %s b "
				   "WHERE NOT COALESCE(pg_catalog.pg_visible_in_snapshot(b._xid, $1), false) "
				   "AND NOT COALESCE($2 IS NULL AND b._xid OPERATOR(pg_catalog.=) $3 "
				   "  AND b._seq OPERATOR(pg_catalog.<=) $4, false) "
				   "AND NOT COALESCE(pg_catalog.pg_visible_in_snapshot(b._xid, $2) "
				   "  AND b._seq OPERATOR(pg_catalog.<=) $4, false) "
				   "LIMIT 1",
				   medallion_qualified_relname(partition));
	medallion_gateway_enter(owner, &gw);
	foreach(lc, readers)
	{
		Reader	   *r = lfirst(lc);

		if (medallion_gateway_exec(sql, 4, argtypes, r->values, r->nulls, 1, SPI_OK_SELECT) > 0)
		{
			reader = r->name;
			break;
		}
	}
	medallion_gateway_leave(&gw);
	return reader;
}

/*
 * The UTC day a partition of bronze.<parent> holds, from its name
 * "<parent>_pYYYYMMDD"; false for any other name.
 */
static bool
partition_day(const char *parent, const char *partname, int *day)
{
	size_t		plen = strlen(parent);
	int			y,
				m,
				d,
				i;
	const char *digits;

	if (strlen(partname) != plen + PARTITION_SUFFIX_LEN ||
		strncmp(partname, parent, plen) != 0 ||
		strncmp(partname + plen, "_p", 2) != 0)
		return false;
	digits = partname + plen + 2;
	for (i = 0; i < 8; i++)
		if (digits[i] < '0' || digits[i] > '9')
			return false;
	y = (digits[0] - '0') * 1000 + (digits[1] - '0') * 100 + (digits[2] - '0') * 10 + (digits[3] - '0');
	m = (digits[4] - '0') * 10 + (digits[5] - '0');
	d = (digits[6] - '0') * 10 + (digits[7] - '0');
	if (m < 1 || m > 12 || d < 1 || d > 31)
		return false;
	*day = date2j(y, m, d) - POSTGRES_EPOCH_JDATE;
	return true;
}

/*
 * medallion.apply_retention(): drops the bronze partitions whose whole day is
 * older than their table's retention, for the tables the caller may manage.
 * Returns how many were dropped.
 *
 * Partitions are found from the bronze table's OID (pg_inherits), never by
 * a name: only plain tables in schema bronze owned by the table's owner and
 * named after it count.  Each table's data is read, and its partitions
 * dropped, as that table's owner.
 */
Datum
medallion_apply_retention(PG_FUNCTION_ARGS)
{
	int64		dropped = 0;
	uint64		n,
				i;
	Oid			nsp = get_namespace_oid("bronze", false);
	List	   *names = NIL;
	List	   *relnames = NIL;
	List	   *cutoffs = NIL;
	ListCell   *lc,
			   *lr,
			   *lt;
	MedallionGateway gw;
	MemoryContext caller = CurrentMemoryContext;

	/*
	 * The cutoff is computed in UTC, as a partition holds one UTC day, so
	 * that the session's TimeZone (and its daylight-saving shifts) cannot
	 * move it.
	 */
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec("SELECT p.name, p.relname, "
							   "(pg_catalog.now() AT TIME ZONE 'UTC'::pg_catalog.text) "
							   "  OPERATOR(pg_catalog.-) p.retention "
							   "FROM medallion.pipelines p "
							   "WHERE p.layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text "
							   "AND p.retention IS NOT NULL ORDER BY p.name",
							   0, NULL, NULL, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		relnames = lappend(relnames, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
		{
			bool		isnull;
			Timestamp  *cutoff = palloc(sizeof(Timestamp));

			*cutoff = DatumGetTimestamp(SPI_getbinval(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 3, &isnull));
			cutoffs = lappend(cutoffs, cutoff);
		}
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);

	forthree(lc, names, lr, relnames, lt, cutoffs)
	{
		Oid			parent = get_relname_relid((char *) lfirst(lr), nsp);
		Oid			owner;
		Timestamp	cutoff;
		List	   *children;
		List	   *readers = NIL;
		bool		readers_loaded = false;
		ListCell   *lch;

		if (!OidIsValid(parent) || get_rel_relkind(parent) != RELKIND_PARTITIONED_TABLE)
			continue;
		owner = medallion_rel_owner(parent);
		if (!has_privs_of_role(GetUserId(), owner))
			continue;
		cutoff = *(Timestamp *) lfirst(lt);

		children = find_inheritance_children(parent, NoLock);
		foreach(lch, children)
		{
			Oid			child = lfirst_oid(lch);
			char	   *childname = get_rel_name(child);
			int			day;
			char	   *reader;

			if (childname == NULL ||
				get_rel_relkind(child) != RELKIND_RELATION ||
				get_rel_namespace(child) != nsp ||
				medallion_rel_owner(child) != owner ||
				!partition_day((char *) lfirst(lr), childname, &day) ||
				(int64) (day + 1) * USECS_PER_DAY > cutoff)
				continue;

			if (!readers_loaded)
			{
				readers = readers_of((char *) lfirst(lc));
				readers_loaded = true;
			}
			reader = unprocessed_by(readers, child, owner);
			if (reader)
			{
				ereport(WARNING,
						(errmsg("bronze partition %s kept: pipeline \"%s\" has not processed all its rows",
								medallion_qualified_relname(child), reader),
						 errhint("Run the pipeline, then apply retention again.")));
				continue;
			}
			medallion_gateway_enter(owner, &gw);
			(void) medallion_gateway_exec(psprintf("DROP TABLE %s", medallion_qualified_relname(child)),
										  0, NULL, NULL, NULL, 0, SPI_OK_UTILITY);
			medallion_gateway_leave(&gw);
			dropped++;
		}
	}
	PG_RETURN_INT64(dropped);
}
