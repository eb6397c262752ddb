/*-------------------------------------------------------------------------
 *
 * redact.c
 *	  The redaction trigger of bronze tables: removes or pseudonymises the
 *	  keys named by create_bronze's redact_keys before a row is stored.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "medallion.h"
#include "bronze/bronze.h"

PG_FUNCTION_INFO_V1(medallion_bronze_redact);

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
