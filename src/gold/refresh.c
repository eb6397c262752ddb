/*-------------------------------------------------------------------------
 *
 * refresh.c
 *	  A run of a gold model: a full refresh, or the partitions its upstreams
 *	  changed.
 *
 * Both write with DELETE + INSERT in the run's transaction, on the model's
 * own table (and partitions), so that:
 *   - readers see the old rows or the new ones, never an empty or partial
 *     table, whatever their isolation level: both statements are MVCC, and
 *     nothing takes a lock a reader waits for.  TRUNCATE, and swapping the
 *     heap as REFRESH MATERIALIZED VIEW does (make_new_heap +
 *     finish_heap_swap), are not MVCC-safe: a REPEATABLE READ reader whose
 *     snapshot predates them sees an empty table; and both take ACCESS
 *     EXCLUSIVE, so every reader waits for the run to commit;
 *   - the table keeps its OID: a user's views, grants and comments on
 *     gold.<name> keep working (a rename swap would leave them on the old
 *     table);
 *   - a partition is exchanged by deleting its rows and inserting the new
 *     ones, not by DETACH + ATTACH of a prepared table: DETACH takes ACCESS
 *     EXCLUSIVE on the model (readers wait), and DETACH CONCURRENTLY cannot
 *     run in the run's transaction.  Partition pruning keeps both statements
 *     to the changed partitions.  The price is dead rows for autovacuum.
 *
 * Measured on this project's 2-core test machine (300k rows of 3 columns,
 * a loaded machine, two runs each): DELETE + INSERT 1.4-1.7 s, TRUNCATE +
 * INSERT 1.1 s, REFRESH MATERIALIZED VIEW (heap swap, one index rebuilt)
 * 1.6-2.3 s.  A whole refresh pays about a third more than TRUNCATE for
 * readers that never wait nor see an empty table; incremental refreshes,
 * the common case of a partitioned model, touch only the changed days.
 *
 * Counts: rows_read = rows_inserted = the rows the query produced for the
 * refreshed partitions (or the whole model).  runs.detail holds the mode
 * and the partitions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "gold/gold.h"

/* A string of a definition's key, or NULL. */
static char *
def_text(Jsonb *def, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&def->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Whether a definition's array key lists a string. */
static bool
def_lists(Jsonb *def, const char *key, const char *item)
{
	JsonbValue	k;
	JsonbValue *v;
	JsonbValue	e;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&def->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvBinary)
		return false;
	e.type = jbvString;
	e.val.string.val = (char *) item;
	e.val.string.len = strlen(item);
	return findJsonbValueFromContainer(v->val.binary.data, JB_FARRAY, &e) != NULL;
}

/*
 * Loads a model: its table, definition and upstreams.  The pending check
 * needs no table: a model whose table is gone is then due, and its run
 * fails with the error.
 */
void
gold_model_load(Pipeline *p, GoldModel *m, bool need_table)
{
	Oid			nsp = get_namespace_oid("gold", false);
	char	   *type;
	char	   *gran;
	MedallionGateway gw;
	Oid			t[1] = {TEXTOID};
	Datum		v[1];
	uint64		n;
	uint64		i;
	JsonbValue	k;
	JsonbValue *opts;
	bool		utc;

	memset(m, 0, sizeof(*m));
	m->p = p;
	m->cxt = CurrentMemoryContext;
	m->relid = get_relname_relid(p->relname, nsp);
	if ((need_table && !OidIsValid(m->relid)) || p->definition == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table \"gold.%s\" of pipeline \"%s\" does not exist", p->relname, p->name)));
	m->qrel = quote_qualified_identifier("gold", p->relname);
	m->query = def_text(p->definition, "query");
	m->partition_by = def_text(p->definition, "partition_by");
	type = def_text(p->definition, "partition_type");
	m->part_type = (type == NULL) ? InvalidOid :
		strcmp(type, "date") == 0 ? DATEOID :
		strcmp(type, "timestamp") == 0 ? TIMESTAMPOID : TIMESTAMPTZOID;
	gran = def_text(p->definition, "granularity");
	m->monthly = (gran && strcmp(gran, "month") == 0);
	m->lookback = def_text(p->definition, "lookback");
	k.type = jbvString;
	k.val.string.val = "options";
	k.val.string.len = strlen("options");
	opts = findJsonbValueFromContainer(&p->definition->root, JB_FOBJECT, &k);
	gold_parse_settings(opts && opts->type == jbvBinary ? JsonbValueToJsonb(opts) : NULL, &m->settings);
	utc = true;
	{
		ListCell   *sn,
				   *sv;

		forboth(sn, m->settings.setting_names, sv, m->settings.setting_values)
			if (pg_strcasecmp(lfirst(sn), "TimeZone") == 0 && pg_strcasecmp(lfirst(sv), "UTC") != 0)
				utc = false;
	}

	v[0] = CStringGetTextDatum(p->name);
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec("SELECT d.upstream, d.partition_column FROM medallion.dependencies d "
							   "WHERE d.pipeline OPERATOR(pg_catalog.=) $1 "
							   "AND d.kind OPERATOR(pg_catalog.=) 'query'::pg_catalog.text ORDER BY 1",
							   1, t, v, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(m->cxt);
		GoldUpstream *u = palloc0(sizeof(GoldUpstream));
		char	   *col = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		u->pipeline = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		u->column = col ? pstrdup(col) : NULL;
		/* change records keep UTC days: another time zone shifts them by up to a day */
		u->widen = !utc && def_lists(p->definition, "widen", u->pipeline);
		m->upstreams = lappend(m->upstreams, u);
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
}

/* ---------------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------------
 */

/*
 * Before a model is written: refuses a table whose columns are not the
 * definition's (a changed query waiting for its backfill), and notes the
 * columns rows are written by.  Not in gold_model_load: the scheduler's
 * pending check must not open (and wait for) the table.
 */
static void
prepare_write(GoldModel *m)
{
	List	   *shape;

	gold_shape_check(m);
	shape = gold_table_shape(m->relid);
	m->insert_cols = gold_shape_names(shape, "");
	m->select_cols = gold_shape_names(shape, "q.");
}

static int
int_cmp(const ListCell *a, const ListCell *b)
{
	int			x = lfirst_int(a);
	int			y = lfirst_int(b);

	return (x > y) - (x < y);
}

/*
 * "(q.col >= lo AND q.col < hi) OR ..." over sorted partition starts,
 * contiguous partitions joined into one range.
 */
char *
gold_ranges_sql(GoldModel *m, List *starts, const char *alias)
{
	StringInfoData buf;
	ListCell   *lc;
	int			lo = 0;
	int			hi = 0;
	bool		open = false;
	const char *col = psprintf("%s%s", alias, quote_identifier(m->partition_by));

	initStringInfo(&buf);
	foreach(lc, starts)
	{
		int			s = lfirst_int(lc);

		if (open && s == hi)
		{
			hi = gold_partition_end(s, m->monthly);
			continue;
		}
		if (open)
			appendStringInfo(&buf, "%s(%s OPERATOR(pg_catalog.>=) %s AND %s OPERATOR(pg_catalog.<) %s)",
							 buf.len ? " OR " : "", col, gold_bound_literal(m->part_type, lo),
							 col, gold_bound_literal(m->part_type, hi));
		lo = s;
		hi = gold_partition_end(s, m->monthly);
		open = true;
	}
	if (open)
		appendStringInfo(&buf, "%s(%s OPERATOR(pg_catalog.>=) %s AND %s OPERATOR(pg_catalog.<) %s)",
						 buf.len ? " OR " : "", col, gold_bound_literal(m->part_type, lo),
						 col, gold_bound_literal(m->part_type, hi));
	return buf.data;
}

static uint64
exec(const char *sql, int expect)
{
	int			ret = SPI_execute(sql, false, 0);

	if (ret != expect)
		elog(ERROR, "SPI_execute failed (%s) for: %s", SPI_result_code_string(ret), sql);
	return SPI_processed;
}

/* The full refresh's INSERT, as a subtransaction's work. */
typedef struct FullInsert
{
	const char *sql;
	uint64		rows;
} FullInsert;

static void
attempt_insert(void *arg)
{
	FullInsert *f = arg;

	f->rows = exec(f->sql, SPI_OK_INSERT);
}

/*
 * Creates the partitions the rows of a relation (or a parenthesised query)
 * need, refusing a NULL partition value.
 */
void
gold_ensure_partitions_for(GoldModel *m, const char *rows)
{
	uint64		n;
	uint64		i;
	List	   *starts = NIL;
	ListCell   *lc;
	const char *col = quote_identifier(m->partition_by);

	n = exec(psprintf("SELECT DISTINCT CASE WHEN q.%s IS NULL THEN NULL ELSE "
					  "(pg_catalog.date_trunc(%s::pg_catalog.text, q.%s%s)::pg_catalog.date "
					  "OPERATOR(pg_catalog.-) '2000-01-01'::pg_catalog.date) END FROM %s q",
					  col, m->monthly ? "'month'" : "'day'", col,
					  m->part_type == TIMESTAMPTZOID ? ", 'UTC'::pg_catalog.text" : "",
					  rows),
			 SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (isnull)
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_GOLD_NULL_PARTITION),
					 errmsg("query of pipeline \"%s\" returns rows whose partition_by column \"%s\" is NULL",
							m->p->name, m->partition_by),
					 errdetail("A partitioned model has no partition for NULL values."),
					 errhint("Filter those rows out in the query, or give them a value with COALESCE.")));
		starts = lappend_int(starts, DatumGetInt32(d));
	}
	foreach(lc, starts)
		gold_ensure_partition(m, lfirst_int(lc));
}

/*
 * A full refresh: every row deleted, the query inserted.
 */
static uint64
refresh_full(GoldModel *m)
{
	FullInsert	f;
	ErrorData  *edata;

	(void) exec(psprintf("DELETE FROM %s", m->qrel), SPI_OK_DELETE);
	f.sql = psprintf("INSERT INTO %s (%s) SELECT %s FROM (%s\n) q",
					 m->qrel, m->insert_cols, m->select_cols, m->query);
	f.rows = 0;
	if (m->partition_by == NULL)
		return exec(f.sql, SPI_OK_INSERT);

	/* optimistic: the partitions usually exist; a row without one is a check violation */
	edata = medallion_try(attempt_insert, &f, false);
	if (edata == NULL)
		return f.rows;
	if (edata->sqlerrcode != ERRCODE_CHECK_VIOLATION)
		ReThrowError(edata);
	/* the partitions a full refresh needs, only when one was missing (a second pass) */
	gold_ensure_partitions_for(m, psprintf("(%s\n)", m->query));
	return exec(f.sql, SPI_OK_INSERT);
}

/*
 * An incremental refresh of the partitions starting at the given days.
 */
static uint64
refresh_partitions(GoldModel *m, List *starts)
{
	ListCell   *lc;

	foreach(lc, starts)
		gold_ensure_partition(m, lfirst_int(lc));
	(void) exec(psprintf("DELETE FROM %s t WHERE %s", m->qrel, gold_ranges_sql(m, starts, "t.")), SPI_OK_DELETE);
	return exec(psprintf("INSERT INTO %s (%s) SELECT %s FROM (%s\n) q WHERE %s",
						 m->qrel, m->insert_cols, m->select_cols,
						 gold_query_for_partitions(m, starts), gold_ranges_sql(m, starts, "q.")),
				SPI_OK_INSERT);
}

/*
 * The partitions a set of changed days refreshes, plus lookback's
 * trailing ones, sorted.
 */
static List *
partition_starts(GoldModel *m, List *days)
{
	List	   *starts = NIL;
	ListCell   *lc;

	foreach(lc, days)
		starts = list_append_unique_int(starts, gold_partition_start(lfirst_int(lc), m->monthly));
	if (m->lookback)
	{
		TimestampTz now = GetCurrentTransactionStartTimestamp();
		Datum		from = DirectFunctionCall2(timestamptz_mi_interval, TimestampTzGetDatum(now),
											   DirectFunctionCall3(interval_in, CStringGetDatum(m->lookback),
																   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
		int			today = (int) (now / USECS_PER_DAY);
		int			day = (int) (DatumGetTimestampTz(from) / USECS_PER_DAY);

		for (; day <= today; day++)
			starts = list_append_unique_int(starts, gold_partition_start(day, m->monthly));
	}
	list_sort(starts, int_cmp);
	return starts;
}

/* The day (days since 2000-01-01) as 'YYYY-MM-DD' JSON. */
static void
append_day(StringInfo buf, int day)
{
	int			y,
				mo,
				d;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &mo, &d);
	appendStringInfo(buf, "\"%04d-%02d-%02d\"", y, mo, d);
}

/*
 * Records the run's kind and detail (as the catalog owner).
 */
static void
record_detail(int64 run_id, const char *mode, List *starts)
{
	StringInfoData buf;
	ListCell   *lc;
	Oid			t[3] = {INT8OID, TEXTOID, JSONBOID};
	Datum		v[3];

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"mode\": \"%s\", \"partitions\": [", mode);
	foreach(lc, starts)
	{
		if (lc != list_head(starts))
			appendStringInfoString(&buf, ", ");
		append_day(&buf, lfirst_int(lc));
	}
	appendStringInfoString(&buf, "]}");
	v[0] = Int64GetDatum(run_id);
	v[1] = CStringGetTextDatum(strcmp(mode, "full") == 0 ? "full" : "incremental");
	v[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	(void) medallion_catalog_exec("UPDATE medallion.runs SET kind = $2, detail = $3 "
								  "WHERE run_id OPERATOR(pg_catalog.=) $1",
								  3, t, v, NULL, SPI_OK_UPDATE);
}

/*
 * Records, for the models that read this one, which days it refreshed:
 * those of the partitions (its partition column), nothing known after a
 * full refresh.
 */
void
gold_record_own_changes(GoldModel *m, int64 run_id, bool full, List *starts)
{
	MedallionChangeSet *cs = medallion_changeset_open(m->p->name, CurrentMemoryContext);
	ListCell   *lc;
	int			slot = 0;

	if (cs == NULL)
		return;
	foreach(lc, medallion_changeset_columns(cs))
	{
		if (full || m->partition_by == NULL || strcmp(lfirst(lc), m->partition_by) != 0)
			medallion_changeset_forget(cs, slot);
		else
		{
			ListCell   *s;

			foreach(s, starts)
			{
				int			d;

				for (d = lfirst_int(s); d < gold_partition_end(lfirst_int(s), m->monthly); d++)
					medallion_changeset_note_day(cs, slot, d);
			}
		}
		slot++;
	}
	medallion_changeset_write(cs, run_id);
}

/*
 * The model's rows rewritten (all of them, or the partitions starting at
 * starts) as its owner, with the run's settings pinned.  Returns the rows
 * written.
 */
static uint64
refresh_as_owner(GoldModel *m, bool full, List *starts)
{
	MedallionUserContext save;
	int			nestlevel;
	uint64		rows;

	medallion_run_settings_push(&m->settings, &nestlevel);
	medallion_become_user(m->p->owner, &save);
	SPI_connect();
	rows = full ? refresh_full(m) : refresh_partitions(m, starts);
	SPI_finish();
	medallion_restore_user(&save);
	AtEOXact_GUC(true, nestlevel);
	return rows;
}

/*
 * One run of a gold model (called by run.c inside the run's
 * subtransaction).
 */
void
medallion_gold_run(Pipeline *p, int64 run_id, RunCounts *counts)
{
	GoldModel	m;
	GoldChanges ch = {0};
	Datum		target;
	bool		full;
	List	   *starts = NIL;
	uint64		rows;

	gold_model_load(p, &m, true);
	prepare_write(&m);
	target = medallion_current_snapshot();
	if (m.upstreams == NIL)
		ch.first = true;		/* nothing tracked: every run refreshes */
	else
		gold_changes_read(&m, target, &ch);
	full = ch.first || ch.whole;
	if (!full && m.partition_by)
		starts = partition_starts(&m, ch.days);
	if (!full && starts == NIL)
	{
		/* nothing changed upstream: a succeeded run that touches nothing */
		record_detail(run_id, "none", NIL);
		return;
	}

	rows = refresh_as_owner(&m, full, starts);

	counts->read = counts->inserted = (int64) rows;
	record_detail(run_id, full ? "full" : "incremental", starts);
	gold_record_own_changes(&m, run_id, full, starts);
	gold_watermark_advance(&m, target);
}

/*
 * The time of the oldest upstream change a model has not consumed (0: none):
 * the scheduler's pending check and the freshness lag.  No user SQL.
 */
TimestampTz
medallion_gold_oldest_pending(Pipeline *p)
{
	GoldModel	m;

	gold_model_load(p, &m, false);
	if (!OidIsValid(m.relid))
		return GetCurrentTransactionStartTimestamp();
	return gold_changes_oldest(&m);
}

/* The partitions (their first days) holding the days from_day..to_day. */
List *
gold_range_starts(GoldModel *m, int from_day, int to_day)
{
	List	   *starts = NIL;
	int			day;

	for (day = from_day; day <= to_day; day++)
		starts = list_append_unique_int(starts, gold_partition_start(day, m->monthly));
	return starts;
}

/*
 * A backfill of a gold model (src/backfill/): the partitions holding the
 * days from_day..to_day (days since 2000-01-01) recomputed and exchanged as
 * a run does, or every row when whole or the model is not partitioned.
 * Change records are left for the next run to consume; the days refreshed
 * are recorded for the models reading this one.  Returns whether it
 * refreshed the whole model.
 */
bool
medallion_gold_backfill(Pipeline *p, int64 run_id, int from_day, int to_day, bool whole,
						RunCounts *counts)
{
	GoldModel	m;
	List	   *starts = NIL;
	uint64		rows;

	gold_model_load(p, &m, true);
	prepare_write(&m);
	whole = whole || m.partition_by == NULL;
	if (!whole)
		starts = gold_range_starts(&m, from_day, to_day);

	rows = refresh_as_owner(&m, whole, starts);

	counts->read = counts->inserted = (int64) rows;
	gold_record_own_changes(&m, run_id, whole, starts);
	return whole;
}
