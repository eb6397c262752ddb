/*-------------------------------------------------------------------------
 *
 * drift_window.c
 *	  Payload drift, judged on a run's window before anything is loaded
 *	  (the rules are in src/schema/drift.c).
 *
 * At the start of a run with a non-empty window:
 *   1. the keys of rows that came without a batch (capture(), plain INSERT
 *      or COPY: ingest* registered the others as they landed) go to the
 *      registry, in one pass over the window and one write;
 *   2. a required key missing from every row of a window of at least
 *      drift_min_rows rows halts the run (MD050), unless max_bad_ratio is 1;
 *   3. keys the contract does not read are judged by its schema_policy
 *      (ignore records, evolve adds columns, strict halts with MD051).
 * After typing, more than max_bad_ratio of the window's rows failing to
 * type halts the run (MD052) instead of filling the DLQ.
 *
 * The halts raise inside the run's subtransaction: nothing is loaded, no
 * DLQ row is written and the watermark stays.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "medallion.h"
#include "silver/silver.h"

static void
window_of(SilverRun *r, DriftWindow *w)
{
	memset(w, 0, sizeof(*w));
	w->pipeline = r->p->name;
	w->relname = r->p->relname;
	w->source = r->source_table;
	w->contract = r->c;
	w->definition = r->p->definition;
	w->run_id = r->run_id;
}

/*
 * The registry gets the keys of the window's rows that came without a
 * batch id.  One pass over the window, one write.
 */
static void
note_window_keys(SilverRun *r)
{
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	r->ar->keys = medallion_payload_keys_create();
	MemoryContextSwitchTo(old);
	silver_exec(r, psprintf("SELECT pg_catalog.count(*) FROM (%s) b "
							"WHERE b._batch_id IS NULL AND medallion.payload_keys_note(b._raw)",
							silver_source_sql(r, false, false)), 1);
	medallion_payload_keys_flush(r->ar->keys, r->source_table);
	r->ar->keys = NULL;
}

/*
 * A required column (without a default) whose key no row of the window
 * has, in a window of at least drift_min_rows rows: the payload changed,
 * not a few records.  Cheap when the data is clean: each EXISTS stops at
 * the first row that has the key.
 */
static void
check_required_keys(SilverRun *r, DriftWindow *w)
{
	StringInfoData sql;
	List	   *cols = NIL;
	ListCell   *lc;
	int64		rows;
	bool		isnull;
	int			i;

	foreach(lc, r->c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		if (col->required && col->default_value == NULL)
			cols = lappend(cols, col);
	}
	if (cols == NIL)
		return;
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT (SELECT pg_catalog.count(*) FROM (SELECT 1 FROM (%s) b LIMIT %lld) n)",
					 silver_source_sql(r, false, false), (long long) w->min_rows);
	foreach(lc, cols)
	{
		ColumnSpec *col = lfirst(lc);
		ListCell   *sc;
		bool		first = true;

		appendStringInfo(&sql, ", EXISTS (SELECT 1 FROM (%s) b WHERE (b._raw OPERATOR(pg_catalog.#>>) ARRAY[",
						 silver_source_sql(r, false, false));
		foreach(sc, col->segments)
		{
			appendStringInfo(&sql, "%s%s", first ? "" : ", ", quote_literal_cstr(lfirst(sc)));
			first = false;
		}
		appendStringInfoString(&sql, "]::pg_catalog.text[]) IS NOT NULL)");
	}
	silver_exec(r, sql.data, 1);
	rows = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (rows < w->min_rows)
		return;					/* a small window: its bad rows go to the DLQ */
	i = 2;
	foreach(lc, cols)
	{
		ColumnSpec *col = lfirst(lc);

		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i++, &isnull)))
			medallion_drift_halt(w, MEDALLION_ERRCODE_DRIFT_KEY_MISSING, col->path,
								 psprintf("required key \"%s\" is missing from every row of the window of pipeline \"%s\"",
										  col->path, r->p->name),
								 psprintf("Column \"%s\" reads key \"%s\"; none of the window's %s%lld rows of \"%s\" has it.",
										  col->name, col->path, rows == w->min_rows ? "at least " : "",
										  (long long) rows, r->source_table));
	}
}

/*
 * Judges the window before it is loaded (see the file's comment).  With
 * schema_policy evolve the contract may grow: the run goes on with it.
 */
void
silver_drift_before_load(SilverRun *r)
{
	DriftWindow w;
	Jsonb	   *newdef;

	r->max_bad_ratio = -1;
	if (r->replay || !medallion_payload_keys_enabled())
		return;
	window_of(r, &w);
	medallion_drift_options(&w);
	r->max_bad_ratio = w.max_bad_ratio;

	note_window_keys(r);
	if (w.max_bad_ratio < 1)
		check_required_keys(r, &w);
	newdef = medallion_drift_unread_keys(&w);
	if (newdef)
	{
		MemoryContext old = MemoryContextSwitchTo(r->cxt);

		r->p->definition = newdef;
		/* this run goes on under the new version, parsed for it alone */
		r->c = medallion_contract_parse(newdef, false);
		r->values[P_DEF - 1] = JsonbPGetDatum(newdef);
		MemoryContextSwitchTo(old);
	}
}

/*
 * Halts the run (MD052) when more than max_bad_ratio of the rows it read
 * failed to type, before they reach the DLQ.  The most frequent failing
 * field names the change.
 */
void
silver_drift_check_bad_ratio(SilverRun *r, int64 read)
{
	int64		bad = list_length(r->bad) + r->nbad_written;
	DriftWindow w;
	ListCell   *lc;
	char	   *field = NULL;
	int			best = 0;

	if (r->replay || r->max_bad_ratio < 0 || read <= 0 || bad == 0 ||
		(double) bad <= r->max_bad_ratio * (double) read)
		return;
	/* the most frequent failing field, among the first rows found */
	foreach(lc, r->bad)
	{
		BadRow	   *b = lfirst(lc);
		ListCell   *lc2;
		int			n = 0;

		if (foreach_current_index(lc) >= 100)
			break;
		if (b->field == NULL || (field && strcmp(field, b->field) == 0))
			continue;
		foreach(lc2, r->bad)
		{
			BadRow	   *b2 = lfirst(lc2);

			if (b2->field && strcmp(b2->field, b->field) == 0)
				n++;
		}
		if (n > best)
		{
			best = n;
			field = b->field;
		}
	}
	if (field == NULL)
	{
		Oid			types[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(r->run_id)};

		MedallionGateway gw;

		/* the rows set aside while typing went to the DLQ (this run's, rolled back with it) */
		medallion_catalog_enter(&gw);
		if (medallion_gateway_exec("SELECT field, pg_catalog.count(*)::pg_catalog.int4 FROM medallion.dlq "
								   "WHERE pipeline_run_id OPERATOR(pg_catalog.=) $1 AND field IS NOT NULL "
								   "GROUP BY field ORDER BY 2 DESC, 1 LIMIT 1",
								   1, types, values, NULL, 1, SPI_OK_SELECT) == 1)
		{
			bool		isnull;
			MemoryContext old = MemoryContextSwitchTo(r->cxt);

			field = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			best = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
			MemoryContextSwitchTo(old);
		}
		medallion_gateway_leave(&gw);
	}
	window_of(r, &w);
	medallion_drift_halt(&w, MEDALLION_ERRCODE_DRIFT_BAD_RATIO, field,
						 psprintf("%lld of %lld rows of the window of pipeline \"%s\" failed to type, more than max_bad_ratio %g",
								  (long long) bad, (long long) read, r->p->name, r->max_bad_ratio),
						 field ? psprintf("The most frequent failing field is \"%s\" (%d rows).", field, best) :
						 pstrdup("The failing rows name no field."));
}
