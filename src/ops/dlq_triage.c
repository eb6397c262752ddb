/*-------------------------------------------------------------------------
 *
 * dlq_triage.c
 *	  What a pipeline's owner does with its dead letters: correct a payload
 *	  before replaying it, or discard rows that will never load.
 *
 * The DLQ is a catalog table: only the extension's owner writes it, and its
 * row-level security shows each owner its own rows.  These functions let an
 * owner (not only a superuser) act on its rows, through the gateway, after
 * checking that the rows are its pipeline's.  Nothing is deleted: a
 * correction keeps the payload as it first came, a discard is recorded with
 * who and why and settles the row (reprocessed), so replays skip it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "medallion.h"
#include "ops/ops.h"

PG_FUNCTION_INFO_V1(medallion_dlq_correct);
PG_FUNCTION_INFO_V1(medallion_dlq_discard);

static char *
caller_name(void)
{
	return GetUserNameFromId(GetUserId(), false);
}

/*
 * medallion.dlq_correct(id, payload): replaces a pending dead letter's
 * payload; the next replay_dlq() loads the corrected one.
 */
Datum
medallion_dlq_correct(PG_FUNCTION_ARGS)
{
	MedallionGateway gw;
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];
	int64		id;
	char	   *pipeline;
	char	   *layer;
	bool		pending;
	bool		isnull;
	Pipeline	p = {0};
	MemoryContext cxt = CurrentMemoryContext;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("id and payload must not be NULL")));
	id = PG_GETARG_INT64(0);

	medallion_catalog_enter(&gw);
	values[0] = Int64GetDatum(id);
	medallion_gateway_exec("SELECT d.pipeline, NOT d.reprocessed, p.layer FROM medallion.dlq d "
						   "LEFT JOIN medallion.pipelines p ON p.name OPERATOR(pg_catalog.=) d.pipeline "
						   "WHERE d.id OPERATOR(pg_catalog.=) $1",
						   1, types, values, NULL, 0, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("dead letter %lld does not exist", (long long) id)));
	pipeline = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	pending = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	layer = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	pipeline = MemoryContextStrdup(cxt, pipeline);
	layer = layer ? MemoryContextStrdup(cxt, layer) : NULL;
	medallion_gateway_leave(&gw);

	/* another owner's row reads as missing: its existence is not ours to tell */
	if (!medallion_pipeline_lookup(pipeline, &p, false, false, NULL) ||
		!has_privs_of_role(GetUserId(), p.owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of the pipeline of dead letter %lld", (long long) id)));
	if (!pending)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dead letter %lld is already settled", (long long) id),
				 errdetail("It was reprocessed or discarded.")));
	/* a silver record is a JSON object: refuse a correction that cannot load */
	if (layer && strcmp(layer, "silver") == 0)
	{
		Datum		j = DirectFunctionCall1(jsonb_in, CStringGetDatum(text_to_cstring(PG_GETARG_TEXT_PP(1))));

		if (!JB_ROOT_IS_OBJECT(DatumGetJsonbP(j)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a corrected silver payload must be a JSON object")));
	}

	values[1] = PG_GETARG_DATUM(1);
	values[2] = CStringGetTextDatum(caller_name());
	medallion_catalog_exec("UPDATE medallion.dlq SET "
						   "  first_payload = COALESCE(first_payload, original_payload), "
						   "  original_payload = $2, corrected_at = pg_catalog.now(), corrected_by = $3 "
						   "WHERE id OPERATOR(pg_catalog.=) $1 AND NOT reprocessed",
						   3, types, values, NULL, SPI_OK_UPDATE);
	PG_RETURN_VOID();
}

/*
 * medallion.dlq_discard(pipeline, ids, reason) → bigint: settles pending
 * dead letters (all of the pipeline's, or those listed) without loading
 * them; returns how many.
 */
Datum
medallion_dlq_discard(PG_FUNCTION_ARGS)
{
	Oid			types[4] = {TEXTOID, INT8ARRAYOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	char	   *name;
	Pipeline	p = {0};
	uint64		n;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline must not be NULL")));
	if (PG_ARGISNULL(2) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(2)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a reason must be given to discard dead letters"),
				 errhint("It is kept with the rows, with who discarded them.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	medallion_require_owned(name, &p, false);

	values[0] = CStringGetTextDatum(name);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	values[2] = PG_GETARG_DATUM(2);
	values[3] = CStringGetTextDatum(caller_name());
	n = medallion_catalog_exec("UPDATE medallion.dlq SET reprocessed = true, "
							   "  reprocessed_at = pg_catalog.now(), discarded_at = pg_catalog.now(), "
							   "  discarded_by = $4, discard_reason = $3 "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND NOT reprocessed "
							   "  AND ($2 IS NULL OR id OPERATOR(pg_catalog.=) ANY ($2))",
							   4, types, values, nulls, SPI_OK_UPDATE);
	PG_RETURN_INT64((int64) n);
}
