/*-------------------------------------------------------------------------
 *
 * dlq_replay.c
 *	  Replaying a bronze pipeline's dead letters: records that could not be
 *	  parsed, once corrected with dlq_correct(), parsed again and landed in
 *	  the bronze table under a new batch id.
 *
 * A corrected payload is one record as it should land: a JSON object (a CSV
 * line is corrected into the object its fields make).  It is checked as
 * ingestion checks a record (ingest_records.c: the size limit, the nesting
 * depth, one JSON object), then by jsonb's own input function in a
 * subtransaction that writes nothing.  The good ones land in one INSERT as
 * the pipeline's owner, under a batch of their own ("dlq-replay:<uuid>",
 * recorded in medallion.batches like any batch), which the DLQ row keeps
 * with who replayed it; a silver run reads them like any new bronze rows.
 * A record still bad stays pending, with the new error.
 *
 * The DLQ rows are locked (FOR UPDATE) while the replay runs: a concurrent
 * replay waits, then finds them settled, so a record lands once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"

#include "medallion.h"
#include "ops/ops.h"
#include "ingest.h"

/* A pending dead letter of a bronze pipeline, and what its replay found. */
typedef struct BronzeLetter
{
	int64		id;
	char	   *payload;		/* NULL: none kept (the table redacts) */
	char	   *file_name;
	Datum		jsonb;			/* the record, when it lands */
	const char *reason;			/* why it still cannot land, or NULL */
	const char *sqlstate;
} BronzeLetter;

/* A payload given to jsonb's input function. */
static void
attempt_jsonb(void *arg)
{
	BronzeLetter *l = arg;

	l->jsonb = DirectFunctionCall1(jsonb_in, CStringGetDatum(l->payload));
}

/*
 * Locks and reads the pending dead letters to replay (all of the
 * pipeline's, or those ids), as the catalog owner.
 */
static List *
load_letters(const char *pipeline, ArrayType *ids)
{
	MedallionGateway gw;
	Oid			types[2] = {TEXTOID, INT8ARRAYOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	MemoryContext cxt = CurrentMemoryContext;
	List	   *letters = NIL;
	uint64		i,
				n;

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = PointerGetDatum(ids);
	if (ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids)) == 0)
		nulls[1] = 'n';
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec("SELECT id, original_payload, file_name FROM medallion.dlq "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND NOT reprocessed "
							   "AND ($2 IS NULL OR id OPERATOR(pg_catalog.=) ANY ($2)) "
							   "ORDER BY id FOR UPDATE",
							   2, types, values, nulls, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		BronzeLetter *l = palloc0(sizeof(BronzeLetter));
		bool		isnull;

		l->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		l->payload = SPI_getvalue(tup, desc, 2);
		l->file_name = SPI_getvalue(tup, desc, 3);
		letters = lappend(letters, l);
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return letters;
}

/*
 * Parses a dead letter's payload again: sets l->jsonb, or l->reason.
 */
static void
check_letter(IngestState *st, BronzeLetter *l)
{
	Record		rec = {0};
	ErrorData  *edata;

	if (l->payload == NULL)
	{
		l->sqlstate = "22004";	/* null_value_not_allowed */
		l->reason = "dead letter keeps no payload";
		return;
	}
	rec.data = rec.raw = l->payload;
	rec.len = rec.raw_len = strlen(l->payload);
	rec.total_len = rec.len;
	rec.oversized = ((size_t) rec.len > st->limit);
	if ((l->reason = medallion_ingest_check_record(st, &rec, &l->sqlstate)) != NULL)
		return;
	/* jsonb's input function is stricter in a few corners; data errors only */
	edata = medallion_try(attempt_jsonb, l, false);
	if (edata != NULL)
	{
		l->reason = st->redact ? "record is not valid JSON" : edata->message;
		l->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
	}
	else if (st->keys)
		medallion_payload_keys_add_jsonb(st->keys, &DatumGetJsonbP(l->jsonb)->root);
}

/*
 * Lands the good records in one INSERT, as the pipeline's owner; returns
 * the rows landed.
 */
static int64
land(const BronzeTarget *target, Oid owner, const char *batch_id, List *good)
{
	MedallionGateway gw;
	ArrayBuildState *raws = initArrayResult(JSONBOID, CurrentMemoryContext, false);
	ArrayBuildState *files = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	Oid			types[3] = {JSONBARRAYOID, TEXTOID, TEXTARRAYOID};
	Datum		values[3];
	ListCell   *lc;
	int64		landed;

	foreach(lc, good)
	{
		BronzeLetter *l = lfirst(lc);

		accumArrayResult(raws, l->jsonb, false, JSONBOID, CurrentMemoryContext);
		accumArrayResult(files, l->file_name ? CStringGetTextDatum(l->file_name) : (Datum) 0,
						 l->file_name == NULL, TEXTOID, CurrentMemoryContext);
	}
	values[0] = makeArrayResult(raws, CurrentMemoryContext);
	values[1] = CStringGetTextDatum(batch_id);
	values[2] = makeArrayResult(files, CurrentMemoryContext);

	/* the table by its OID's current name; the SQL qualified throughout */
	medallion_gateway_enter(owner, &gw);
	landed = (int64) medallion_gateway_exec(psprintf("INSERT INTO %s (_raw, _batch_id, _file_name) "
													 "SELECT u.raw, $2, u.file FROM ROWS FROM "
													 "(pg_catalog.unnest($1), pg_catalog.unnest($3)) "
													 "WITH ORDINALITY AS u(raw, file, n) ORDER BY u.n",
													 medallion_qualified_relname(target->relid)),
											3, types, values, NULL, 0, SPI_OK_INSERT);
	medallion_gateway_leave(&gw);
	return landed;
}

/*
 * Settles the dead letters that landed (the new batch, who, when) and
 * records the new error of those still bad, as the catalog owner.
 */
static void
settle(List *letters, const char *batch_id)
{
	ArrayBuildState *done = initArrayResult(INT8OID, CurrentMemoryContext, false);
	ArrayBuildState *bad = initArrayResult(INT8OID, CurrentMemoryContext, false);
	ArrayBuildState *msgs = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	ArrayBuildState *states = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	Oid			types[5] = {INT8ARRAYOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	ListCell   *lc;

	foreach(lc, letters)
	{
		BronzeLetter *l = lfirst(lc);

		if (l->reason == NULL)
			accumArrayResult(done, Int64GetDatum(l->id), false, INT8OID, CurrentMemoryContext);
		else
		{
			accumArrayResult(bad, Int64GetDatum(l->id), false, INT8OID, CurrentMemoryContext);
			accumArrayResult(msgs, CStringGetTextDatum(medallion_capped_message(l->reason)), false,
							 TEXTOID, CurrentMemoryContext);
			accumArrayResult(states, CStringGetTextDatum(l->sqlstate ? l->sqlstate : "22032"), false,
							 TEXTOID, CurrentMemoryContext);
		}
	}
	values[0] = makeArrayResult(done, CurrentMemoryContext);
	values[1] = batch_id ? CStringGetTextDatum(batch_id) : (Datum) 0;
	nulls[1] = batch_id ? ' ' : 'n';
	values[2] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	medallion_catalog_exec("UPDATE medallion.dlq SET reprocessed = true, reprocessed_at = pg_catalog.now(), "
						   "  replay_batch_id = $2, replayed_by = $3 "
						   "WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
						   3, types, values, nulls, SPI_OK_UPDATE);
	values[0] = makeArrayResult(bad, CurrentMemoryContext);
	values[3] = makeArrayResult(msgs, CurrentMemoryContext);
	values[4] = makeArrayResult(states, CurrentMemoryContext);
	medallion_catalog_exec("UPDATE medallion.dlq d SET error_message = u.msg, sqlstate = u.state, "
						   "  failed_at = pg_catalog.now() "
						   "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($4), pg_catalog.unnest($5)) "
						   "  AS u(id, msg, state) "
						   "WHERE d.id OPERATOR(pg_catalog.=) u.id",
						   5, types, values, nulls, SPI_OK_UPDATE);
}

/*
 * replay_dlq() of a bronze pipeline: its pending dead letters (all, or
 * those ids) parsed again; returns the records landed.  The pipeline's
 * owner and operators only.
 */
int64
medallion_bronze_replay_dlq(const Pipeline *p, ArrayType *ids)
{
	IngestState st = {0};
	Oid			nsp = get_namespace_oid("bronze", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(p->relname, nsp) : InvalidOid;
	List	   *letters;
	List	   *good = NIL;
	ListCell   *lc;
	char	   *batch_id = NULL;
	int64		landed = 0;

	if (!OidIsValid(p->owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", p->owner_name),
				 errdetail("Pipeline \"%s\" is owned by role \"%s\"; its replays land as that role.",
						   p->name, p->owner_name)));
	medallion_require_operator(p, "replay");
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s of pipeline \"%s\" does not exist",
						quote_qualified_identifier("bronze", p->relname), p->name)));

	medallion_bronze_open(relid, &st.target);
	st.format = FORMAT_NDJSON;	/* one JSON object per record */
	st.limit = (size_t) medallion_max_payload_mb * 1024 * 1024;	/* medallion.max_record_size */
	st.redact = medallion_bronze_redacts(relid);
	if (medallion_payload_keys_enabled())
	{
		st.keys = medallion_payload_keys_create();
		st.scan.cap = 32;
		st.scan.refs = palloc(sizeof(JsonKeyRef) * st.scan.cap);
	}

	letters = load_letters(p->name, ids);
	foreach(lc, letters)
	{
		BronzeLetter *l = lfirst(lc);

		CHECK_FOR_INTERRUPTS();
		check_letter(&st, l);
		if (l->reason == NULL)
			good = lappend(good, l);
	}
	if (good != NIL)
	{
		batch_id = psprintf("dlq-replay:%s",
							DatumGetCString(DirectFunctionCall1(uuid_out,
																DirectFunctionCall1(gen_random_uuid, (Datum) 0))));
		if (!medallion_catalog_claim_batch(p->name, batch_id, NULL))
			elog(ERROR, "batch \"%s\" exists already", batch_id);
		medallion_bronze_ensure_partitions(&st.target);
		landed = land(&st.target, p->owner, batch_id, good);
		if (st.keys)
			medallion_payload_keys_flush(st.keys, p->name);
		medallion_catalog_finish_batch(p->name, batch_id, landed, 0);
	}
	if (letters != NIL)
		settle(letters, batch_id);
	return landed;
}
