/*-------------------------------------------------------------------------
 *
 * pseudonym.c
 *	  Keyed pseudonyms: HMAC-SHA256 under one secret key per database.
 *
 * Bronze's redact_mode "hash" and silver's pii "hash" keep, instead of a
 * personal value, the hex HMAC-SHA256 of its text.  Equal values still give
 * equal pseudonyms (joins and deduplication work across tables of the same
 * database), but without the key a value of a small space (a 9-digit number)
 * cannot be found by hashing every candidate, as it could from a plain
 * SHA-256.  The key lives in medallion.pseudonym_keys, readable by the
 * extension's owner only and kept by pg_dump.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "catalog/namespace.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "medallion.h"

#define PSEUDONYM_KEY_LEN 32

PG_FUNCTION_INFO_V1(medallion_pseudonym_new_key);
PG_FUNCTION_INFO_V1(medallion_pseudonymize);

/*
 * The key, read once per transaction and command (so that a statement sees
 * one key throughout, and a key inserted earlier in the transaction, as a
 * restore does, is seen by the next statement).
 */
static uint8 cached_key[PSEUDONYM_KEY_LEN];
static LocalTransactionId cached_key_lxid = InvalidLocalTransactionId;
static CommandId cached_key_cid = InvalidCommandId;

/* The last role allowed to call pseudonymize(), in that transaction. */
static Oid	allowed_role = InvalidOid;
static LocalTransactionId allowed_lxid = InvalidLocalTransactionId;

/*
 * medallion.pseudonym_new_key(): 32 bytes from the server's strong random
 * source, for a new key.
 */
Datum
medallion_pseudonym_new_key(PG_FUNCTION_ARGS)
{
	bytea	   *key = palloc(VARHDRSZ + PSEUDONYM_KEY_LEN);

	SET_VARSIZE(key, VARHDRSZ + PSEUDONYM_KEY_LEN);
	if (!pg_strong_random(VARDATA(key), PSEUDONYM_KEY_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random pseudonymisation key")));
	PG_RETURN_BYTEA_P(key);
}

/*
 * Loads the database's key, as the catalog owner.  The oldest key is the
 * key: a restore brings back the original one next to the key that CREATE
 * EXTENSION made in the new database, which is younger.
 */
static const uint8 *
pseudonym_key(void)
{
	MedallionGateway gw;
	bool		isnull;
	Datum		d;
	bytea	   *key;

	if (cached_key_lxid == MyProc->lxid && cached_key_lxid != InvalidLocalTransactionId &&
		cached_key_cid == GetCurrentCommandId(false))
		return cached_key;

	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec("SELECT key FROM medallion.pseudonym_keys "
							   "ORDER BY created_at, key LIMIT 1",
							   0, NULL, NULL, NULL, 1, SPI_OK_SELECT) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this database has no pseudonymisation key"),
				 errdetail("Table medallion.pseudonym_keys is empty."),
				 errhint("The extension owner can add one: INSERT INTO medallion.pseudonym_keys (key) VALUES (medallion.pseudonym_new_key());")));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	key = isnull ? NULL : DatumGetByteaPP(d);
	if (key == NULL || VARSIZE_ANY_EXHDR(key) != PSEUDONYM_KEY_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg_plural("the pseudonymisation key of this database is not %d byte long",
							   "the pseudonymisation key of this database is not %d bytes long",
							   PSEUDONYM_KEY_LEN, PSEUDONYM_KEY_LEN)));
	memcpy(cached_key, VARDATA_ANY(key), PSEUDONYM_KEY_LEN);
	medallion_gateway_leave(&gw);
	cached_key_lxid = MyProc->lxid;
	cached_key_cid = GetCurrentCommandId(false);
	return cached_key;
}

/*
 * The hex HMAC-SHA256 of "len" bytes under the database's key (palloc'd).
 */
char *
medallion_pseudonymize_hex(const char *data, int len)
{
	const uint8 *key = pseudonym_key();
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL)
		elog(ERROR, "out of memory");
	if (pg_hmac_init(ctx, key, PSEUDONYM_KEY_LEN) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
	{
		const char *err = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA256: %s", err);
	}
	pg_hmac_free(ctx);
	hex_encode((char *) digest, PG_SHA256_DIGEST_LENGTH, hex);
	hex[PG_SHA256_DIGEST_LENGTH * 2] = '\0';
	return hex;
}

/*
 * Whether the current user may compute pseudonyms of values of its choice:
 * who could define a pipeline that hashes (CREATE on schema bronze or
 * silver) or the extension's owner.  Anyone else, a reader of hashed data,
 * must not get an oracle to test candidate values against it.
 */
static void
check_pseudonymize_allowed(void)
{
	Oid			role = GetUserId();
	Oid			bronze;
	Oid			silver;

	if (allowed_lxid == MyProc->lxid && allowed_role == role)
		return;
	bronze = get_namespace_oid("bronze", true);
	silver = get_namespace_oid("silver", true);
	if (!has_privs_of_role(role, medallion_catalog_owner()) &&
		!(OidIsValid(bronze) && pg_namespace_aclcheck(bronze, role, ACL_CREATE) == ACLCHECK_OK) &&
		!(OidIsValid(silver) && pg_namespace_aclcheck(silver, role, ACL_CREATE) == ACLCHECK_OK))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to compute pseudonyms"),
				 errdetail("Only roles that may create bronze or silver tables can pseudonymise values of their choice.")));
	allowed_role = role;
	allowed_lxid = MyProc->lxid;
}

/*
 * medallion.pseudonymize(value text): the value's pseudonym, as silver's
 * pii "hash" and bronze's redact_mode "hash" store it.
 */
Datum
medallion_pseudonymize(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);

	check_pseudonymize_allowed();
	PG_RETURN_TEXT_P(cstring_to_text(medallion_pseudonymize_hex(VARDATA_ANY(value),
																VARSIZE_ANY_EXHDR(value))));
}
