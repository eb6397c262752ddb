/*-------------------------------------------------------------------------
 *
 * changes.c
 *	  Change records: which day buckets a run changed, for the gold models
 *	  that read its table, and how a model consumes them.
 *
 * A silver run's MERGE calls medallion.change_note() for every row it
 * inserts, updates or deletes, with the old and the new value of each
 * column some gold model maps its partitions through; the distinct days
 * collect in memory and are written once, with the run's output, in one
 * row of medallion.changes stamped with the transaction's xid8.  Reading
 * old values inside the MERGE's own actions (tgt.col in UPDATE SET, in the
 * DELETE condition) costs one C call per written row and no extra pass:
 * PG15's MERGE has no RETURNING, and reading the old values first would
 * compute the window a second time.
 *
 * A model consumes records as silver consumes bronze rows: those visible in
 * the run's snapshot and not in its watermark's (watermark.c).  Run ids are
 * not commit order (a scheduled run takes its id before it waits for the
 * pipeline's lock), xids in snapshots are.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "nodes/bitmapset.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "medallion.h"
#include "gold/gold.h"

/* Most columns a change set follows (models rarely map through more). */
#define CHANGESET_MAX_COLUMNS 32

/*
 * Days are kept as members of a bitmap per column, offset so that every
 * day within some 2870 years of 2000 fits (others make the column unknown):
 * a MERGE calls change_note for each row it writes, and setting a bit is
 * cheaper than a hash lookup.  A run rarely sees
 * more than a few hundred distinct days; the bitmap spans them.
 */
#define CHANGESET_DAY_OFFSET (1 << 20)

struct MedallionChangeSet
{
	char	   *pipeline;
	List	   *columns;		/* of char *: slot i is the i-th */
	bool		unknown[CHANGESET_MAX_COLUMNS]; /* a value gave no day */
	Bitmapset  *days[CHANGESET_MAX_COLUMNS];	/* day + CHANGESET_DAY_OFFSET */
	int			last_day[CHANGESET_MAX_COLUMNS];	/* the day noted last (+1: none) */
	MemoryContext cxt;
};

/*
 * The edges (alias d of medallion.dependencies) whose pipeline consumes its
 * upstream's change records: a gold model's query, and an export of a gold
 * table (an export of a silver table tracks run ids instead).
 */
#define CONSUMER_EDGE_SQL \
	"(d.kind OPERATOR(pg_catalog.=) 'query'::pg_catalog.text " \
	" OR (d.kind OPERATOR(pg_catalog.=) 'export'::pg_catalog.text " \
	"     AND pg_catalog.starts_with(d.upstream, 'gold.'::pg_catalog.text)))"

/*
 * Whether the catalog has medallion.changes (0.2.0 and later).
 */
static bool
catalog_has_changes(void)
{
	Oid			nsp = get_namespace_oid("medallion", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("changes", nsp));
}

/*
 * The change set of a run of a pipeline, or NULL when no gold model reads
 * it (nothing to record).  Lives in cxt.
 */
MedallionChangeSet *
medallion_changeset_open(const char *pipeline, MemoryContext cxt)
{
	MedallionGateway gw;
	Oid			t[1] = {TEXTOID};
	Datum		v[1];
	uint64		n;
	uint64		i;
	MedallionChangeSet *cs;
	MemoryContext old;

	if (!catalog_has_changes())
		return NULL;
	v[0] = CStringGetTextDatum(pipeline);
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec("SELECT DISTINCT d.partition_column FROM medallion.dependencies d "
							   "WHERE d.upstream OPERATOR(pg_catalog.=) $1 "
							   "AND " CONSUMER_EDGE_SQL " "
							   "ORDER BY 1",
							   1, t, v, NULL, 0, SPI_OK_SELECT);
	if (n == 0)
	{
		medallion_gateway_leave(&gw);
		return NULL;
	}
	old = MemoryContextSwitchTo(cxt);
	cs = palloc0(sizeof(MedallionChangeSet));
	cs->pipeline = pstrdup(pipeline);
	cs->cxt = cxt;
	for (i = 0; i < n && list_length(cs->columns) < CHANGESET_MAX_COLUMNS; i++)
	{
		char	   *col = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (col != NULL)
			cs->columns = lappend(cs->columns, pstrdup(col));
	}
	MemoryContextSwitchTo(old);
	medallion_gateway_leave(&gw);

	for (i = 0; i < CHANGESET_MAX_COLUMNS; i++)
		cs->last_day[i] = INT_MIN;
	return cs;
}

/* The columns of a change set, in slot order. */
List *
medallion_changeset_columns(MedallionChangeSet *cs)
{
	return cs ? cs->columns : NIL;
}

/*
 * Notes the day of a value (date: itself; timestamp: its date; timestamptz:
 * its UTC date).  A value without a day (infinity, another type) makes the
 * column unknown for this run: its models refresh whole.
 */
void
medallion_changeset_note(MedallionChangeSet *cs, int slot, Oid typid, Datum value)
{
	int64		usecs;
	int64		day;

	if (cs == NULL || slot < 0 || slot >= list_length(cs->columns))
		return;
	switch (typid)
	{
		case DATEOID:
			if (DATE_NOT_FINITE(DatumGetDateADT(value)))
				break;
			medallion_changeset_note_day(cs, slot, DatumGetDateADT(value));
			return;
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			usecs = DatumGetInt64(value);
			if (TIMESTAMP_NOT_FINITE(usecs))
				break;
			day = usecs / USECS_PER_DAY;
			if (usecs < 0 && usecs % USECS_PER_DAY != 0)
				day--;
			medallion_changeset_note_day(cs, slot, (int) day);
			return;
		default:
			break;
	}
	cs->unknown[slot] = true;
}

/* Notes a day (days since 2000-01-01) for a column. */
void
medallion_changeset_note_day(MedallionChangeSet *cs, int slot, int day)
{
	MemoryContext old;

	if (cs == NULL || slot < 0 || slot >= list_length(cs->columns) || day == cs->last_day[slot])
		return;
	if (day < -CHANGESET_DAY_OFFSET || day >= CHANGESET_DAY_OFFSET)
	{
		cs->unknown[slot] = true;
		return;
	}
	cs->last_day[slot] = day;
	/* called from inside the MERGE: the set lives as long as the run */
	old = MemoryContextSwitchTo(cs->cxt);
	cs->days[slot] = bms_add_member(cs->days[slot], day + CHANGESET_DAY_OFFSET);
	MemoryContextSwitchTo(old);
}

/* This run cannot tell the days of a column: its models refresh whole. */
void
medallion_changeset_forget(MedallionChangeSet *cs, int slot)
{
	if (cs != NULL && slot >= 0 && slot < list_length(cs->columns))
		cs->unknown[slot] = true;
}

/*
 * Writes a run's change record (as the catalog owner, in the run's
 * transaction) and wakes the scheduler at commit for on_change models.
 */
void
medallion_changeset_write(MedallionChangeSet *cs, int64 run_id)
{
	StringInfoData buf;
	ListCell   *lc;
	int			slot = 0;
	Oid			t[3] = {TEXTOID, INT8OID, JSONBOID};
	Datum		v[3];
	bool		first = true;

	if (cs == NULL)
		return;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	foreach(lc, cs->columns)
	{
		int			member = -1;
		bool		first_day = true;

		if (!cs->unknown[slot])
		{
			if (!first)
				appendStringInfoString(&buf, ", ");
			first = false;
			escape_json(&buf, lfirst(lc));
			appendStringInfoString(&buf, ": [");
			/* in order: members come out sorted */
			while ((member = bms_next_member(cs->days[slot], member)) >= 0)
			{
				int			y,
							m,
							dd;

				j2date(member - CHANGESET_DAY_OFFSET + POSTGRES_EPOCH_JDATE, &y, &m, &dd);
				appendStringInfo(&buf, "%s\"%04d-%02d-%02d\"", first_day ? "" : ", ", y, m, dd);
				first_day = false;
			}
			appendStringInfoChar(&buf, ']');
		}
		slot++;
	}
	appendStringInfoChar(&buf, '}');

	v[0] = CStringGetTextDatum(cs->pipeline);
	v[1] = Int64GetDatum(run_id);
	v[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	(void) medallion_catalog_exec("INSERT INTO medallion.changes (pipeline, run_id, buckets) "
								  "VALUES ($1, $2, $3)",
								  3, t, v, NULL, SPI_OK_INSERT);
	medallion_wake_scheduler_at_commit();
}

/* ---------------------------------------------------------------------------
 * Consuming: a model's unconsumed records
 * ---------------------------------------------------------------------------
 */

/* The upstreams of a model as a text[] of pipeline names. */
static Datum
upstream_names(GoldModel *m)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(m->upstreams), 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, m->upstreams)
		elems[n++] = CStringGetTextDatum(((GoldUpstream *) lfirst(lc))->pipeline);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * The records of a model's upstreams visible in target and not in done,
 * selected with their pipeline, buckets and time: the scan follows the
 * (pipeline, xid) index from done's xmin.
 */
#define UNCONSUMED_SQL \
	"SELECT c.pipeline, c.buckets, c.recorded_at FROM medallion.changes c " \
	"WHERE c.pipeline OPERATOR(pg_catalog.=) ANY ($1) " \
	"AND c.xid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin($2) " \
	"AND c.xid OPERATOR(pg_catalog.<) pg_catalog.pg_snapshot_xmax($3) " \
	"AND pg_catalog.pg_visible_in_snapshot(c.xid, $3) " \
	"AND NOT pg_catalog.pg_visible_in_snapshot(c.xid, $2) " \
	"AND NOT COALESCE(c.xid OPERATOR(pg_catalog.=) $4 AND c.id OPERATOR(pg_catalog.<=) $5, false)"

static void
add_day(GoldChanges *out, int day)
{
	out->days = list_append_unique_int(out->days, day);
}

/*
 * Reads what changed upstream of a model since its watermark, up to target
 * (a snapshot): the days (upstream buckets, widened where a time zone
 * separates them from the model's days), or whole, or first (never ran).
 */
void
gold_changes_read(GoldModel *m, Datum target, GoldChanges *out)
{
	Watermark	wm;
	MedallionGateway gw;
	Oid			t[5] = {TEXTARRAYOID, PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID};
	Datum		v[5];
	char		nulls[5] = "     ";
	uint64		n;
	uint64		i;

	memset(out, 0, sizeof(*out));
	medallion_watermark_load(m->p, &wm);
	if (!wm.found || !wm.has_done || wm.rebase)
	{
		out->first = true;
		return;
	}
	if (m->upstreams == NIL)
		return;
	v[0] = upstream_names(m);
	v[1] = wm.done_snapshot;
	v[2] = target;
	/* a transaction whose records up to an id are consumed (see gold_watermark_advance) */
	v[3] = wm.resume_xid;
	v[4] = Int64GetDatum(wm.resume_seq);
	nulls[3] = nulls[4] = wm.has_resume ? ' ' : 'n';
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec(UNCONSUMED_SQL, 5, t, v, nulls, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *upstream = SPI_getvalue(tup, desc, 1);
		bool		isnull;
		Jsonb	   *buckets = DatumGetJsonbP(SPI_getbinval(tup, desc, 2, &isnull));
		TimestampTz at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
		GoldUpstream *u = NULL;
		ListCell   *lc;
		JsonbValue	key;
		JsonbValue *arr;
		MemoryContext old;

		if (out->oldest == 0 || at < out->oldest)
			out->oldest = at;
		foreach(lc, m->upstreams)
			if (strcmp(((GoldUpstream *) lfirst(lc))->pipeline, upstream) == 0)
				u = lfirst(lc);
		if (u == NULL || u->column == NULL || m->partition_by == NULL)
		{
			out->whole = true;
			continue;
		}
		key.type = jbvString;
		key.val.string.val = u->column;
		key.val.string.len = strlen(u->column);
		arr = findJsonbValueFromContainer(&buckets->root, JB_FOBJECT, &key);
		if (arr == NULL || arr->type != jbvBinary)
		{
			out->whole = true;
			continue;
		}
		{
			JsonbIterator *it = JsonbIteratorInit(arr->val.binary.data);
			JsonbValue	e;
			JsonbIteratorToken tok;

			while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
			{
				DateADT		d;

				if (tok != WJB_ELEM || e.type != jbvString)
					continue;
				d = DatumGetDateADT(DirectFunctionCall1(date_in,
														CStringGetDatum(pnstrdup(e.val.string.val, e.val.string.len))));
				/* SPI's context goes away at leave: the list lives in the caller's */
				old = MemoryContextSwitchTo(m->cxt);
				add_day(out, d);
				if (u->widen)
				{
					add_day(out, d - 1);
					add_day(out, d + 1);
					/* a local month's start can fall in the UTC month before */
					if (m->monthly)
						add_day(out, gold_partition_start(d, true) - 1);
				}
				MemoryContextSwitchTo(old);
			}
		}
	}
	medallion_gateway_leave(&gw);
}

/*
 * The time of the oldest change upstream of a model it has not consumed:
 * the scheduler's pending check and the freshness lag.  A model that never
 * ran is pending since now; one with no tracked upstream is always due.
 */
TimestampTz
gold_changes_oldest(GoldModel *m)
{
	GoldChanges ch;

	if (m->upstreams == NIL)
		return GetCurrentTransactionStartTimestamp();
	gold_changes_read(m, medallion_current_snapshot(), &ch);
	if (ch.first)
		return GetCurrentTransactionStartTimestamp();
	return ch.oldest;
}

/*
 * Advances a model's watermark to target, with the run's own transaction
 * left in progress: it may record changes after this run, which the next
 * run must see; its records read already are done (resume_xid, resume_seq:
 * that transaction's records up to that id), as silver does with its own
 * transaction's bronze rows.  Then drops the records every model reading their pipeline
 * has consumed.
 */
void
gold_watermark_advance(GoldModel *m, Datum target)
{
	Watermark	wm = {0};
	FullTransactionId me = GetTopFullTransactionIdIfAny();
	Oid			t[2] = {TEXTARRAYOID, XID8OID};
	Datum		v[2];

	v[0] = upstream_names(m);
	wm.has_done = true;
	wm.done_snapshot = target;
	if (FullTransactionIdIsValid(me))
	{
		MedallionGateway gw;
		bool		isnull;
		Datum		d;

		v[1] = FullTransactionIdGetDatum(me);
		wm.done_snapshot = medallion_snapshot_set_visible(target, v[1], false);
		/* its records so far are read (no upstream writes during this run) */
		medallion_catalog_enter(&gw);
		(void) medallion_gateway_exec("SELECT pg_catalog.max(c.id) FROM medallion.changes c "
									  "WHERE c.pipeline OPERATOR(pg_catalog.=) ANY ($1) "
									  "AND c.xid OPERATOR(pg_catalog.=) $2",
									  2, t, v, NULL, 1, SPI_OK_SELECT);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
		{
			wm.has_resume = true;
			wm.resume_xid = v[1];
			wm.resume_seq = DatumGetInt64(d);
		}
		medallion_gateway_leave(&gw);
	}
	medallion_watermark_save(m->p->name, &wm);
	medallion_gold_changes_forget_unread();

	if (m->upstreams == NIL)
		return;
	(void) medallion_catalog_exec("DELETE FROM medallion.changes c "
								  "WHERE c.pipeline OPERATOR(pg_catalog.=) ANY ($1) "
								  "AND NOT EXISTS (SELECT 1 FROM medallion.dependencies d "
								  "  LEFT JOIN medallion.watermarks w ON w.pipeline OPERATOR(pg_catalog.=) d.pipeline "
								  "  WHERE d.upstream OPERATOR(pg_catalog.=) c.pipeline "
								  "  AND " CONSUMER_EDGE_SQL " "
								  "  AND (w.done_snapshot IS NULL "
								  "       OR NOT pg_catalog.pg_visible_in_snapshot(c.xid, w.done_snapshot)))",
								  1, t, v, NULL, SPI_OK_DELETE);
}

/*
 * Deletes the change records of pipelines no model (nor gold export) reads
 * any more: the cleanup above only looks at a model's own upstreams, so
 * the records of an upstream whose last reader was dropped, or changed its
 * query, would stay for ever.  Cheap: the records are few, and pipelines
 * without readers write none.
 */
void
medallion_gold_changes_forget_unread(void)
{
	(void) medallion_catalog_exec("DELETE FROM medallion.changes c "
								  "WHERE NOT EXISTS (SELECT 1 FROM medallion.dependencies d "
								  "  WHERE d.upstream OPERATOR(pg_catalog.=) c.pipeline "
								  "  AND " CONSUMER_EDGE_SQL ")",
								  0, NULL, NULL, NULL, SPI_OK_DELETE);
}

/* ---------------------------------------------------------------------------
 * Another consumer: an export of a gold table
 * ---------------------------------------------------------------------------
 */

/*
 * A model seen from a consumer: the consumer's watermark, the model as its
 * one upstream, mapped through the model's own partition column.
 */
static void
consumer_model(Pipeline *consumer, Pipeline *model, GoldModel *m)
{
	GoldUpstream *u = palloc0(sizeof(GoldUpstream));

	gold_model_load(model, m, true);
	u->pipeline = pstrdup(model->name);
	u->column = m->partition_by ? pstrdup(m->partition_by) : NULL;
	u->widen = false;			/* the records hold the partitions' own days */
	m->upstreams = list_make1(u);
	m->p = consumer;
}

static int
start_cmp(const ListCell *a, const ListCell *b)
{
	int			x = lfirst_int(a);
	int			y = lfirst_int(b);

	return (x > y) - (x < y);
}

static char *
day_text(int day)
{
	int			y,
				mo,
				d;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &mo, &d);
	return psprintf("%04d-%02d-%02d", y, mo, d);
}

/*
 * The partitions of a model its runs refreshed since a consumer's
 * watermark, up to target: a run records every day of the partitions it
 * wrote (refresh.c), nothing for a full refresh or an unpartitioned model,
 * which makes the whole table refreshed.  A consumer that never read (or
 * whose watermark came from another cluster) gets the whole table.
 */
void
medallion_gold_refreshed_read(Pipeline *consumer, Pipeline *model, Datum target, GoldRefreshed *out)
{
	GoldModel	m;
	GoldChanges ch;
	List	   *starts = NIL;
	ListCell   *lc;

	memset(out, 0, sizeof(*out));
	consumer_model(consumer, model, &m);
	gold_changes_read(&m, target, &ch);
	if (ch.first || ch.whole || m.partition_by == NULL)
	{
		/* an unpartitioned model's records read as whole; none: nothing to send */
		out->whole = ch.first || ch.whole;
		return;
	}
	foreach(lc, ch.days)
		starts = list_append_unique_int(starts, gold_partition_start(lfirst_int(lc), m.monthly));
	list_sort(starts, start_cmp);
	foreach(lc, starts)
	{
		int			start = lfirst_int(lc);
		int			end = gold_partition_end(start, m.monthly);
		GoldRefreshedPartition *part = palloc0(sizeof(GoldRefreshedPartition));
		const char *col = quote_identifier(m.partition_by);

		part->from = day_text(start);
		part->to = day_text(end);
		/* through the parent: the consumer's owner may read it and not its partitions */
		part->predicate = psprintf("t.%s OPERATOR(pg_catalog.>=) %s AND t.%s OPERATOR(pg_catalog.<) %s",
								   col, gold_bound_literal(m.part_type, start),
								   col, gold_bound_literal(m.part_type, end));
		out->partitions = lappend(out->partitions, part);
	}
}

/*
 * Moves a consumer's watermark to target (in the consumer's run, which
 * commits it with what it did), then drops the records every consumer has.
 */
void
medallion_gold_refreshed_consume(Pipeline *consumer, Pipeline *model, Datum target)
{
	GoldModel	m;

	consumer_model(consumer, model, &m);
	gold_watermark_advance(&m, target);
}
