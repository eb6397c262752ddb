/*-------------------------------------------------------------------------
 *
 * slow_path.c
 *	  The slow path of a run: finding the rows that do not type or fail a
 *	  check, and writing them to the DLQ or quarantine.
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

static int
bad_row_cmp(const ListCell *a, const ListCell *b)
{
	int64		x = ((BadRow *) lfirst(a))->seq;
	int64		y = ((BadRow *) lfirst(b))->seq;

	return x < y ? -1 : x > y ? 1 : 0;
}


typedef struct TryCall
{
	SilverRun  *r;
	TryFn		fn;
	void	   *arg;
} TryCall;

static void
call_try(void *arg)
{
	TryCall    *call = arg;

	call->fn(call->r, call->arg);
}

/*
 * Runs fn in a subtransaction: NULL when it succeeded; after a data error,
 * rolled back, the error.  Any other error propagates.
 */
ErrorData *
silver_try_data(SilverRun *r, TryFn fn, void *arg)
{
	TryCall		call = {r, fn, arg};

	return medallion_try(call_try, &call, false);
}

void
silver_do_merge(SilverRun *r, void *arg)
{
	int64	   *merged = arg;

	r->ar->inserted = 0;
	r->ar->read = 0;
	silver_exec(r, silver_merge_sql(r), 0);
	*merged = SPI_processed;
	if (r->qtomb)
		silver_exec(r, silver_tombstone_sql(r), 0);
}

/*
 * The slow path of a run without expectations, in one MERGE that leaves
 * out (and records) the rows silver_check() refuses; they go to the DLQ by
 * batches as they are found.  False, with nothing changed, if that MERGE
 * failed all the same: an expression or a reference fails on a row that
 * types (find_failing_rows' business).
 */
bool
silver_merge_keeping(SilverRun *r, int64 *merged)
{
	ErrorData  *volatile edata = NULL;
	ActiveRun  *ar = r->ar;

	ar->keep_cxt = AllocSetContextCreate(r->cxt, "medallion silver_keep", ALLOCSET_DEFAULT_SIZES);
	ar->keep_bad = NIL;
	ar->kept = ar->kept_new = 0;
	ar->keeping = true;
	r->keeping = true;
	PG_TRY();
	{
		edata = silver_try_data(r, silver_do_merge, merged);
		/* the last batch, in the MERGE's subtransaction's place */
		if (edata == NULL)
			silver_flush_kept(ar);
	}
	PG_FINALLY();
	{
		r->keeping = false;
		ar->keeping = false;
	}
	PG_END_TRY();
	if (edata != NULL)
	{
		/* what was written went with the subtransaction */
		MemoryContextDelete(ar->keep_cxt);
		ar->keep_bad = NIL;
		return false;
	}
	r->nbad_written += ar->kept;
	r->ndlq_written += ar->kept_new;
	if (ar->keep_bad != NIL)
	{
		/* a replay's rows */
		MemoryContext old = MemoryContextSwitchTo(r->cxt);
		ListCell   *lc;

		list_sort(ar->keep_bad, bad_row_cmp);
		foreach(lc, ar->keep_bad)
		{
			BadRow	   *b = lfirst(lc);
			BadRow	   *copy = palloc(sizeof(BadRow));

			*copy = *b;
			copy->raw = b->raw ? pstrdup(b->raw) : NULL;
			copy->batch = b->batch ? pstrdup(b->batch) : NULL;
			copy->type = pstrdup(b->type);
			copy->field = b->field ? pstrdup(b->field) : NULL;
			copy->sqlstate = pstrdup(b->sqlstate);
			copy->message = pstrdup(b->message);
			r->bad = lappend(r->bad, copy);
		}
		MemoryContextSwitchTo(old);
	}
	ar->keep_bad = NIL;
	MemoryContextDelete(ar->keep_cxt);
	silver_set_exclusions(r);
	return true;
}

/*
 * Step A of the slow path: rows that do not type (or miss a required
 * field, or are not accepted) under the contract, in one set-based pass.
 */
void
silver_find_untyped_rows(SilverRun *r)
{
	char	   *sql = psprintf("SELECT _source_seq, _raw::pg_catalog.text, _batch_id, err FROM "
							   "(SELECT l0._source_seq, l0._raw, l0._batch_id, "
							   "medallion.silver_check(l0._raw, $%d, l0._is_delete) AS err "
							   "FROM (%s) l0 OFFSET 0) x WHERE err IS NOT NULL ORDER BY _source_seq",
							   P_DEF, silver_source_sql(r, true, false));
	Portal		portal;
	MemoryContext batch_cxt = AllocSetContextCreate(r->cxt, "medallion bad rows", ALLOCSET_DEFAULT_SIZES);

	/*
	 * By batches: each goes to the DLQ at once and only its _seq stays (a
	 * replay keeps its rows: their DLQ rows are updated at its end).
	 */
	portal = SPI_cursor_open_with_args(NULL, sql, NPARAMS, r->types, r->values, r->nulls, false, 0);
	for (;;)
	{
		uint64		i;
		uint64		n;
		List	   *batch = NIL;
		MemoryContext old;

		SPI_cursor_fetch(portal, true, 256);
		n = SPI_processed;
		if (n == 0)
			break;
		old = MemoryContextSwitchTo(r->replay ? r->cxt : batch_cxt);
		for (i = 0; i < n; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			BadRow	   *b = palloc0(sizeof(BadRow));
			bool		isnull;
			Datum	   *elems;
			bool	   *enulls;
			int			ne;

			b->seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			b->raw = SPI_getvalue(tup, desc, 2);
			b->batch = SPI_getvalue(tup, desc, 3);
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 4, &isnull)),
							  TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &ne);
			b->type = TextDatumGetCString(elems[0]);
			b->field = enulls[1] ? NULL : TextDatumGetCString(elems[1]);
			b->sqlstate = TextDatumGetCString(elems[2]);
			b->message = TextDatumGetCString(elems[3]);
			batch = lappend(batch, b);
		}
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);
		if (r->replay)
		{
			MemoryContext o = MemoryContextSwitchTo(r->cxt);

			r->bad = list_concat(r->bad, batch);
			MemoryContextSwitchTo(o);
			continue;
		}
		r->ndlq_written += silver_insert_dlq_rows(r, batch);
		{
			MemoryContext o = MemoryContextSwitchTo(r->cxt);
			ListCell   *lc;

			foreach(lc, batch)
			{
				BadRow	   *slim = palloc0(sizeof(BadRow));

				slim->seq = ((BadRow *) lfirst(lc))->seq;
				slim->type = "written";
				slim->written = true;
				r->bad = lappend(r->bad, slim);
			}
			MemoryContextSwitchTo(o);
		}
		MemoryContextReset(batch_cxt);
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(batch_cxt);
	silver_set_exclusions(r);
}

/* A window row by its position in (xid, seq) order. */
typedef struct RowPos
{
	Datum		xid;
	int64		seq;
} RowPos;

static void
check_range(SilverRun *r, void *arg)
{
	RowPos	   *range = arg;

	r->values[P_LO_XID - 1] = range[0].xid;
	r->values[P_LO_SEQ - 1] = Int64GetDatum(range[0].seq);
	r->values[P_HI_XID - 1] = range[1].xid;
	r->values[P_HI_SEQ - 1] = Int64GetDatum(range[1].seq);
	memset(r->nulls + P_LO_XID - 1, ' ', 4);
	silver_exec(r, psprintf("SELECT pg_catalog.sum(pg_catalog.pg_column_size(s.*)) FROM (%s) s",
					 silver_checked_sql(r, true, true)), 0);
}

/*
 * The first column (in contract order) whose value cannot be computed for
 * the one row of a range, or NULL.
 */
static char *
failing_column(SilverRun *r, RowPos *range)
{
	ListCell   *lc;
	char	   *found = NULL;

	foreach(lc, r->c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		r->only_column = col->name;
		if (silver_try_data(r, check_range, range) != NULL)
		{
			found = MemoryContextStrdup(r->cxt, col->name);
			break;
		}
	}
	r->only_column = NULL;
	return found;
}

/* The name of a contract check the run's SQL raises, or NULL. */
static const char *
known_check(const char *name)
{
	static const char *const checks[] = {"required", "accepted", "references", NULL};
	int			i;

	for (i = 0; name && checks[i]; i++)
		if (strcmp(name, checks[i]) == 0)
			return checks[i];
	return NULL;
}

/*
 * Finds the bad rows of positions [lo, hi) by bisection.
 */
static void
bisect(SilverRun *r, RowPos *pos, int lo, int hi)
{
	RowPos		range[2];
	ErrorData  *edata;

	CHECK_FOR_INTERRUPTS();
	range[0] = pos[lo];
	range[1] = pos[hi - 1];
	edata = silver_try_data(r, check_range, range);
	if (edata == NULL)
		return;
	if (hi - lo > 1)
	{
		int			mid = lo + (hi - lo) / 2;

		bisect(r, pos, lo, mid);
		bisect(r, pos, mid, hi);
		return;
	}
	{
		MemoryContext old = MemoryContextSwitchTo(r->cxt);
		BadRow	   *b = palloc0(sizeof(BadRow));
		const char *type = known_check(edata->constraint_name);
		bool		violation = (type != NULL && edata->column_name != NULL &&
								 medallion_contract_column(r->c, edata->column_name) != NULL);

		/*
		 * The check and column of a contract violation come from the error's
		 * fields, never from its text; user code can set those too, so they
		 * count only when they name a known check and a contract column.
		 */
		b->seq = pos[lo].seq;
		b->type = violation ? pstrdup(type) : "expr";
		b->field = violation ? pstrdup(edata->column_name) : NULL;
		if (b->field == NULL)
			b->field = failing_column(r, range);
		b->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
		b->message = pstrdup(edata->message ? edata->message : "");
		r->bad = lappend(r->bad, b);
		MemoryContextSwitchTo(old);
	}
}

/*
 * Step C of the slow path: finds, by bisection over the window, the rows
 * whose final SQL (expressions, references) fails.
 */
void
silver_find_failing_rows(SilverRun *r)
{
	RowPos	   *pos;
	int			n;
	int			i;
	int			before = list_length(r->bad);
	ListCell   *lc;

	silver_exec(r, psprintf("SELECT _xid, _source_seq FROM (%s) b ORDER BY _xid, _source_seq",
					 silver_source_sql(r, true, false)), 0);
	n = SPI_processed;
	pos = palloc(sizeof(RowPos) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		pos[i].xid = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		pos[i].seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}
	for (i = 0; i < n; i += 1024)
		bisect(r, pos, i, Min(n, i + 1024));

	/* the payloads of the rows found */
	for_each_from(lc, r->bad, before)
	{
		BadRow	   *b = lfirst(lc);

		silver_exec(r, psprintf("SELECT _raw::pg_catalog.text, _batch_id FROM (%s) b WHERE _source_seq OPERATOR(pg_catalog.=) %lld",
						 silver_source_sql(r, false, false), (long long) b->seq), 1);
		if (SPI_processed == 1)
		{
			MemoryContext old = MemoryContextSwitchTo(r->cxt);

			b->raw = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			b->batch = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
			MemoryContextSwitchTo(old);
		}
	}
	silver_set_exclusions(r);
}

/*
 * Applies the expectations to the rows that type: warn counts, drop and
 * quarantine leave the row out, fail fails the run.
 */
void
silver_apply_expectations(SilverRun *r, void *arg)
{
	RunCounts  *counts = arg;
	StringInfoData sel,
				any;
	ListCell   *lc;
	uint64		i;
	int			k;
	int			nexp = list_length(r->expectations);
	static const char *const severity[] = {"fail", "quarantine", "drop", "warn"};

	initStringInfo(&sel);
	initStringInfo(&any);
	foreach(lc, r->expectations)
	{
		char	  **e = lfirst(lc);

		appendStringInfo(&sel, ", ((%s\n) IS FALSE)", e[1]);
		appendStringInfo(&any, "%s((%s\n) IS FALSE)", any.len ? " OR " : "", e[1]);
	}
	silver_exec(r, psprintf("SELECT s._source_seq, s._raw::pg_catalog.text, s._batch_id%s FROM (%s) s WHERE %s",
					 sel.data, silver_checked_sql(r, true, false), any.data), 0);

	counts->warned = 0;
	counts->dropped = 0;
	counts->quarantined = 0;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int			s;
		char	  **worst = NULL;
		int			worst_sev = 99;
		bool		isnull;

		for (k = 0; k < nexp; k++)
		{
			char	  **e = list_nth(r->expectations, k);

			if (!DatumGetBool(SPI_getbinval(tup, desc, 4 + k, &isnull)))
				continue;
			for (s = 0; s < 4; s++)
				if (strcmp(e[2], severity[s]) == 0 && s < worst_sev)
				{
					worst_sev = s;
					worst = e;
				}
		}
		if (worst == NULL)
			continue;
		if (worst_sev == 0)
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_EXPECTATION_FAILED),
					 errmsg("expectation \"%s\" failed", worst[0]),
					 errdetail("Bronze row %lld breaks \"%s\".",
							   (long long) DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)), worst[1])));
		if (worst_sev == 3)
		{
			counts->warned++;
			continue;
		}
		{
			MemoryContext old = MemoryContextSwitchTo(r->cxt);
			BadRow	   *b = palloc0(sizeof(BadRow));

			b->seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			b->raw = SPI_getvalue(tup, desc, 2);
			b->batch = SPI_getvalue(tup, desc, 3);
			b->type = worst_sev == 1 ? "quarantine" : "drop";
			b->field = worst[0];	/* the rule */
			b->message = psprintf("expectation \"%s\" failed", worst[0]);
			r->bad = lappend(r->bad, b);
			MemoryContextSwitchTo(old);
			if (worst_sev == 1)
				counts->quarantined++;
			else
				counts->dropped++;
		}
	}
	silver_set_exclusions(r);
}

/*
 * Arrays of some fields of bad rows, for one set-based statement.
 */
typedef struct BadArrays
{
	ArrayBuildState *raw,
			   *msg,
			   *type,
			   *field,
			   *seq,
			   *batch,
			   *state,
			   *dlq_id;
	int			n;
} BadArrays;

static void
bad_arrays_init(BadArrays *a)
{
	a->raw = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	a->msg = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	a->type = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	a->field = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	a->seq = initArrayResult(INT8OID, CurrentMemoryContext, false);
	a->batch = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	a->state = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	a->dlq_id = initArrayResult(INT8OID, CurrentMemoryContext, false);
	a->n = 0;
}

static void
bad_arrays_add(BadArrays *a, BadRow *b)
{
#define ACCUM_TEXT(st, v) accumArrayResult(st, (v) ? CStringGetTextDatum(v) : (Datum) 0, (v) == NULL, \
										   TEXTOID, CurrentMemoryContext)
	ACCUM_TEXT(a->raw, b->raw);
	ACCUM_TEXT(a->msg, b->message);
	ACCUM_TEXT(a->type, b->type);
	ACCUM_TEXT(a->field, b->field);
	ACCUM_TEXT(a->batch, b->batch);
	ACCUM_TEXT(a->state, b->sqlstate);
#undef ACCUM_TEXT
	accumArrayResult(a->seq, Int64GetDatum(b->seq), false, INT8OID, CurrentMemoryContext);
	accumArrayResult(a->dlq_id, Int64GetDatum(b->dlq_id), false, INT8OID, CurrentMemoryContext);
	a->n++;
}

/*
 * One set-based statement over bad rows, through the catalog gateway:
 * $1 pipeline, $2 source table, $3 run id, then the arrays raw, message,
 * type, field, seq, batch, sqlstate, dlq id.  Returns the rows processed.
 */
static int64
bad_rows_exec(SilverRun *r, BadArrays *a, const char *sql, int expect)
{
	Oid			t[11] = {TEXTOID, TEXTOID, INT8OID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
	Datum		v[11];

	v[0] = CStringGetTextDatum(r->p->name);
	v[1] = CStringGetTextDatum(r->source_table);
	v[2] = Int64GetDatum(r->run_id);
	v[3] = makeArrayResult(a->raw, CurrentMemoryContext);
	v[4] = makeArrayResult(a->msg, CurrentMemoryContext);
	v[5] = makeArrayResult(a->type, CurrentMemoryContext);
	v[6] = makeArrayResult(a->field, CurrentMemoryContext);
	v[7] = makeArrayResult(a->seq, CurrentMemoryContext);
	v[8] = makeArrayResult(a->batch, CurrentMemoryContext);
	v[9] = makeArrayResult(a->state, CurrentMemoryContext);
	v[10] = makeArrayResult(a->dlq_id, CurrentMemoryContext);
	return (int64) medallion_catalog_exec(sql, 11, t, v, NULL, expect);
}

#define BAD_ROWS_FROM \
	"FROM ROWS FROM (pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), " \
	"pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), pg_catalog.unnest($10), " \
	"pg_catalog.unnest($11)) WITH ORDINALITY AS u(raw, msg, type, field, seq, batch, state, dlq_id, n) "

/*
 * Inserts new DLQ rows through the catalog's batched DLQ writer (one
 * statement per batch, not 10k statements for 1% of 1M rows); a row already
 * waiting in the DLQ (a source read again) is not added twice.  Returns how
 * many rows were added (rows_dlq counts new dead letters only).
 */
int64
silver_insert_dlq_rows(SilverRun *r, List *rows)
{
	MedallionDlqWriter *w;
	ListCell   *lc;
	MemoryContext cxt;
	MemoryContext old;
	int64		added;

	if (rows == NIL)
		return 0;
	/* the writer's copies go when the batch is written: a run writes many */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "medallion DLQ batch", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	w = medallion_dlq_writer_create();
	medallion_dlq_writer_skip_pending(w);
	foreach(lc, rows)
	{
		BadRow	   *b = lfirst(lc);
		MedallionDlqEntry e = {0};

		e.pipeline = r->p->name;
		e.payload = b->raw;
		e.payload_len = b->raw ? strlen(b->raw) : 0;
		e.error_message = b->message;
		e.error_type = b->type;
		e.sqlstate = b->sqlstate;
		e.field = b->field;
		e.source_table = r->source_table;
		e.source_seq = b->seq;
		e.run_id = r->run_id;
		e.batch_id = b->batch;
		medallion_dlq_writer_add(w, &e);
	}
	medallion_dlq_writer_flush(w);
	added = medallion_dlq_writer_written(w);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return added;
}

/*
 * Writes the DLQ and quarantine rows of a run, as the catalog owner.  A
 * replayed row still bad keeps its DLQ row, with the new error.  Like the
 * DLQ, quarantine takes a source row once (a source read again, as after a
 * restore into another cluster, adds nothing).
 */
void
silver_write_bad_rows(SilverRun *r, RunCounts *counts)
{
	List	   *new_dlq = NIL;
	BadArrays	quarantine,
				replayed;
	ListCell   *lc;

	counts->dlq = r->ndlq_written;
	bad_arrays_init(&quarantine);
	bad_arrays_init(&replayed);
	foreach(lc, r->bad)
	{
		BadRow	   *b = lfirst(lc);

		if (b->written || strcmp(b->type, "drop") == 0)
			continue;
		if (strcmp(b->type, "quarantine") == 0)
			bad_arrays_add(&quarantine, b);
		else if (b->dlq_id > 0)
			bad_arrays_add(&replayed, b);
		else
			new_dlq = lappend(new_dlq, b);
	}
	counts->dlq += silver_insert_dlq_rows(r, new_dlq);
	if (replayed.n > 0)
	{
		(void) bad_rows_exec(r, &replayed,
							 "UPDATE medallion.dlq d SET error_message = u.msg, error_type = u.type, "
							 "field = u.field, pipeline_run_id = $3, sqlstate = u.state, failed_at = pg_catalog.now() "
							 BAD_ROWS_FROM
							 "WHERE d.id OPERATOR(pg_catalog.=) u.dlq_id",
							 SPI_OK_UPDATE);
		counts->dlq += replayed.n;
	}
	if (quarantine.n > 0)
		(void) bad_rows_exec(r, &quarantine,
							 "INSERT INTO medallion.quarantine (pipeline, original_payload, error_message, "
							 "rule, source_table, source_seq, pipeline_run_id) "
							 "SELECT $1, u.raw, u.msg, u.field, $2, u.seq, $3 "
							 BAD_ROWS_FROM
							 "WHERE NOT EXISTS (SELECT 1 FROM medallion.quarantine q "
							 "WHERE q.pipeline OPERATOR(pg_catalog.=) $1 "
							 "AND q.source_seq OPERATOR(pg_catalog.=) u.seq) ORDER BY u.n",
							 SPI_OK_INSERT);
}
