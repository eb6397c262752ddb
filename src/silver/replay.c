/*-------------------------------------------------------------------------
 *
 * replay.c
 *	  Replaying a silver pipeline's dead letters, or its quarantined rows,
 *	  through a silver run.
 *
 * A replay is a run (run.c: the pipeline's lock, a runs row of kind
 * 'replay', the owner's rights) whose rows are the payloads of the DLQ or
 * quarantine rows instead of a window of bronze, with their bronze _seq: the
 * MERGE's newest-wins keeps a newer version of the key.  Rows that pass are
 * settled (who, when); the others stay pending with their new error.  The
 * rows are locked while the replay runs, so two replays load a row once.
 *
 * Quarantined rows are re-evaluated under the current contract and
 * expectations, after a rule was fixed: one that fails again, whatever the
 * reason, stays in quarantine (nothing goes to the DLQ from there).
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
#include "ops/ops.h"
#include "silver/silver.h"

PG_FUNCTION_INFO_V1(medallion_replay_quarantine);

/* A DLQ row being replayed. */
typedef struct ReplayRow
{
	int64		dlq_id;
	int64		seq;
} ReplayRow;

/* Whether a catalog table has a column (a 0.1.0 catalog lacks the new ones). */
static bool
catalog_has_column(const char *table, const char *column)
{
	Oid			nsp = get_namespace_oid("medallion", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(table, nsp) : InvalidOid;

	return OidIsValid(relid) && get_attnum(relid, column) != InvalidAttrNumber;
}

/*
 * Loads the DLQ (or quarantine) rows a replay re-attempts (as the catalog
 * owner) into the replay parameters; a payload that is no longer JSON is a
 * bad row at once.
 */
List *
silver_load_replay_rows(SilverRun *r, const MedallionReplay *replay)
{
	ArrayType  *ids = replay->ids;
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
	if (SPI_execute_with_args(replay->quarantine ?
							  "SELECT id, original_payload, source_seq, NULL::pg_catalog.text "
							  "FROM medallion.quarantine "
							  "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND NOT reprocessed "
							  "AND ($2 IS NULL OR id OPERATOR(pg_catalog.=) ANY ($2)) "
							  "AND source_seq IS NOT NULL ORDER BY id FOR UPDATE" :
							  "SELECT id, original_payload, source_seq, batch_id FROM medallion.dlq "
							  "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND NOT reprocessed "
							  "AND ($2 IS NULL OR id OPERATOR(pg_catalog.=) ANY ($2)) "
							  "AND source_seq IS NOT NULL ORDER BY id FOR UPDATE",
							  2, types, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the rows to replay");
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
 * A quarantine replay's rows that failed again stay quarantined, with
 * their new reason (the rule, for an expectation); none goes to the DLQ.
 */
static void
keep_quarantined(SilverRun *r, List *failed)
{
	ArrayBuildState *ids = initArrayResult(INT8OID, CurrentMemoryContext, false);
	ArrayBuildState *msgs = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	ArrayBuildState *rules = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	Oid			types[4] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8OID};
	Datum		values[4];
	ListCell   *lc;

	if (failed == NIL)
		return;
	foreach(lc, failed)
	{
		BadRow	   *b = lfirst(lc);
		bool		rule = (strcmp(b->type, "quarantine") == 0 || strcmp(b->type, "drop") == 0);

		accumArrayResult(ids, Int64GetDatum(b->dlq_id), false, INT8OID, CurrentMemoryContext);
		accumArrayResult(msgs, CStringGetTextDatum(medallion_capped_message(b->message)), false,
						 TEXTOID, CurrentMemoryContext);
		accumArrayResult(rules, rule && b->field ? CStringGetTextDatum(b->field) : (Datum) 0,
						 !(rule && b->field), TEXTOID, CurrentMemoryContext);
	}
	values[0] = makeArrayResult(ids, CurrentMemoryContext);
	values[1] = makeArrayResult(msgs, CurrentMemoryContext);
	values[2] = makeArrayResult(rules, CurrentMemoryContext);
	values[3] = Int64GetDatum(r->run_id);
	medallion_catalog_exec("UPDATE medallion.quarantine q SET error_message = u.msg, "
						   "  rule = COALESCE(u.rule, q.rule), pipeline_run_id = $4, failed_at = pg_catalog.now() "
						   "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) "
						   "  AS u(id, msg, rule) "
						   "WHERE q.id OPERATOR(pg_catalog.=) u.id",
						   4, types, values, NULL, SPI_OK_UPDATE);
}

/*
 * After a replay: the rows that passed are settled (when, by whom, by which
 * run); the bad ones learn their DLQ row, or stay quarantined.  Returns how
 * many passed.  Runs as the caller (the run's user switch is over).
 */
int64
silver_finish_replay(SilverRun *r, List *rows)
{
	ArrayBuildState *done = initArrayResult(INT8OID, CurrentMemoryContext, false);
	Oid			types[3] = {INT8ARRAYOID, TEXTOID, INT8OID};
	Datum		values[3];
	ListCell   *lc,
			   *bc;
	int64		passed = 0;
	List	   *failed = NIL;
	const char *table = r->replay_quarantine ? "quarantine" : "dlq";

	foreach(lc, rows)
	{
		ReplayRow  *row = lfirst(lc);
		bool		bad = false;

		foreach(bc, r->bad)
		{
			BadRow	   *b = lfirst(bc);

			if (b->seq != row->seq)
				continue;
			b->dlq_id = row->dlq_id;
			if (r->replay_quarantine)
			{
				/* kept in quarantine, not written anew by silver_write_bad_rows */
				if (!b->written)
					failed = lappend(failed, b);
				b->written = true;
				bad = true;
			}
			else
				bad = (strcmp(b->type, "drop") != 0 && strcmp(b->type, "quarantine") != 0);
		}
		if (!bad)
		{
			accumArrayResult(done, Int64GetDatum(row->dlq_id), false, INT8OID, CurrentMemoryContext);
			passed++;
		}
	}
	if (r->replay_quarantine)
		keep_quarantined(r, failed);
	values[0] = makeArrayResult(done, CurrentMemoryContext);
	values[1] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	values[2] = Int64GetDatum(r->run_id);
	if (catalog_has_column(table, "replayed_by"))
		medallion_catalog_exec(r->replay_quarantine ?
							   "UPDATE medallion.quarantine SET reprocessed = true, reprocessed_at = pg_catalog.now(), "
							   "  replayed_by = $2, replay_run_id = $3 "
							   "WHERE id OPERATOR(pg_catalog.=) ANY ($1)" :
							   "UPDATE medallion.dlq SET reprocessed = true, reprocessed_at = pg_catalog.now(), "
							   "  replayed_by = $2, replay_run_id = $3 "
							   "WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
							   3, types, values, NULL, SPI_OK_UPDATE);
	else
		medallion_catalog_exec("UPDATE medallion.dlq SET reprocessed = true, reprocessed_at = pg_catalog.now() "
							   "WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
							   1, types, values, NULL, SPI_OK_UPDATE);
	return passed;
}

/*
 * medallion.replay_quarantine(pipeline, ids) → rows now loaded: a silver
 * pipeline's quarantined rows (all, or those ids) re-evaluated under its
 * current contract and expectations.  The pipeline's owner and operators
 * only (run.c checks it, as for replay_dlq).
 */
Datum
medallion_replay_quarantine(PG_FUNCTION_ARGS)
{
	RunCounts	counts = {0};
	MedallionReplay replay = {0};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline must not be NULL")));
	replay.quarantine = true;
	replay.ids = medallion_replay_ids_arg(fcinfo, 1);
	(void) medallion_run_replay(text_to_cstring(PG_GETARG_TEXT_PP(0)), &replay, &counts);
	PG_RETURN_INT64(counts.replayed);
}
