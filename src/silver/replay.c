/*-------------------------------------------------------------------------
 *
 * replay.c
 *	  Replaying DLQ rows through a silver run.
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

/* A DLQ row being replayed. */
typedef struct ReplayRow
{
	int64		dlq_id;
	int64		seq;
} ReplayRow;

/*
 * Loads the DLQ rows a replay re-attempts (as the catalog owner) into the
 * replay parameters; a payload that is no longer JSON is a bad row at once.
 */
List *
silver_load_replay_rows(SilverRun *r, ArrayType *ids)
{
	MedallionGateway gw;
	Oid			types[2] = {TEXTOID, INT8ARRAYOID};
	Datum		values[2];
	char		nulls[2] = "  ";
	ArrayBuildState *raws = initArrayResult(JSONBOID, CurrentMemoryContext, false);
	ArrayBuildState *seqs = initArrayResult(INT8OID, CurrentMemoryContext, false);
	ArrayBuildState *batches = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	List	   *rows = NIL;
	uint64		i;

	values[0] = CStringGetTextDatum(r->p->name);
	values[1] = PointerGetDatum(ids);
	nulls[1] = ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids)) == 0 ? 'n' : ' ';

	medallion_catalog_enter(&gw);
	if (SPI_execute_with_args("SELECT id, original_payload, source_seq, batch_id FROM medallion.dlq "
							  "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND NOT reprocessed "
							  "AND ($2 IS NULL OR id OPERATOR(pg_catalog.=) ANY ($2)) "
							  "AND source_seq IS NOT NULL ORDER BY id FOR UPDATE",
							  2, types, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read medallion.dlq");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		ReplayRow  *row = MemoryContextAlloc(r->cxt, sizeof(ReplayRow));
		char	   *payload = SPI_getvalue(tup, desc, 2);
		char	   *batch = SPI_getvalue(tup, desc, 4);
		JsonLexContext *lex;
		MemoryContext old;

		row->dlq_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		row->seq = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		old = MemoryContextSwitchTo(r->cxt);
		rows = lappend(rows, row);
		MemoryContextSwitchTo(old);

		lex = payload ? makeJsonLexContextCstringLen(payload, strlen(payload), GetDatabaseEncoding(), true) : NULL;
		if (lex == NULL || pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		{
			BadRow	   *b;

			old = MemoryContextSwitchTo(r->cxt);
			b = palloc0(sizeof(BadRow));
			b->seq = row->seq;
			b->dlq_id = row->dlq_id;
			b->type = "parse";
			b->sqlstate = "22032";
			b->message = "payload is not valid JSON";
			r->bad = lappend(r->bad, b);
			MemoryContextSwitchTo(old);
			continue;
		}
		accumArrayResult(raws, DirectFunctionCall1(jsonb_in, CStringGetDatum(payload)), false,
						 JSONBOID, CurrentMemoryContext);
		accumArrayResult(seqs, Int64GetDatum(row->seq), false, INT8OID, CurrentMemoryContext);
		accumArrayResult(batches, batch ? CStringGetTextDatum(batch) : (Datum) 0, batch == NULL,
						 TEXTOID, CurrentMemoryContext);
	}
	{
		MemoryContext old = MemoryContextSwitchTo(r->cxt);

		r->values[P_RAWS - 1] = makeArrayResult(raws, r->cxt);
		r->values[P_SEQS - 1] = makeArrayResult(seqs, r->cxt);
		r->values[P_BATCHES - 1] = makeArrayResult(batches, r->cxt);
		r->nulls[P_RAWS - 1] = r->nulls[P_SEQS - 1] = r->nulls[P_BATCHES - 1] = ' ';
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return rows;
}

/*
 * After a replay: the rows that passed are marked reprocessed; the bad ones
 * learn their DLQ row.  Returns how many passed.
 */
int64
silver_finish_replay(SilverRun *r, List *rows)
{
	MedallionGateway gw;
	ArrayBuildState *done = initArrayResult(INT8OID, CurrentMemoryContext, false);
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];
	ListCell   *lc,
			   *bc;
	int64		passed = 0;

	foreach(lc, rows)
	{
		ReplayRow  *row = lfirst(lc);
		bool		bad = false;

		foreach(bc, r->bad)
		{
			BadRow	   *b = lfirst(bc);

			if (b->seq == row->seq)
			{
				b->dlq_id = row->dlq_id;
				bad = (strcmp(b->type, "drop") != 0 && strcmp(b->type, "quarantine") != 0);
			}
		}
		if (!bad)
		{
			accumArrayResult(done, Int64GetDatum(row->dlq_id), false, INT8OID, CurrentMemoryContext);
			passed++;
		}
	}
	values[0] = makeArrayResult(done, CurrentMemoryContext);
	medallion_catalog_enter(&gw);
	if (SPI_execute_with_args("UPDATE medallion.dlq SET reprocessed = true, reprocessed_at = pg_catalog.now() "
							  "WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not mark replayed DLQ rows");
	medallion_gateway_leave(&gw);
	return passed;
}

/*
 * The highest _seq of the bronze rows of the current transaction, or 0.
 */
