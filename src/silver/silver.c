/*-------------------------------------------------------------------------
 *
 * silver.c
 *	  The silver layer: typed tables fed from bronze by a column contract,
 *	  incrementally, idempotently, newest version wins.
 *
 * A run reads the bronze rows of its window (watermark.c), types and checks
 * them, sends the bad ones to the DLQ, deduplicates by unique key (latest
 * (order_by, _seq) wins) and MERGEs into silver; a version older than the
 * stored one never overwrites it.
 *
 * Typing is optimistic: one set-based MERGE whose SQL raises on the first
 * bad row, in a subtransaction.  Only when it fails with a data error are
 * the bad rows found — in one set-based pass with medallion.silver_check()
 * (per-row subtransactions that write nothing), then, for errors only the
 * final SQL can show (expressions, references), by bisection over the
 * window — and the MERGE runs again without them.
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

PG_FUNCTION_INFO_V1(medallion_create_silver);
PG_FUNCTION_INFO_V1(medallion_expect);


/* Parameters of every statement of a run. */
#define P_PREV		1			/* pg_snapshot: done (NULL: none) */
#define P_TARGET	2			/* pg_snapshot: target */
#define P_RXID		3			/* xid8, int8: a partly processed transaction */
#define P_RSEQ		4			/* (its rows up to that _seq are done) */
#define P_CUR		5			/* int8: a bounded window's rows up to that _seq are done */
#define P_HSEQ		6			/* int8: stop at that _seq (inclusive) */
#define P_EXCL		7			/* int8[]: _seq of rows left out */
#define P_RUN		8			/* int8: run id */
#define P_DEF		9			/* jsonb: the definition */
#define P_RAWS		10			/* replay: jsonb[], int8[], text[] */
#define P_SEQS		11
#define P_BATCHES	12
#define P_LO_XID	13			/* xid8, int8: a bisection step's range */
#define P_LO_SEQ	14
#define P_HI_XID	15
#define P_HI_SEQ	16
#define P_XMIN_PREV 17			/* xid8: xmin of the previous snapshot */
#define P_XMAX_TARGET 18		/* xid8: xmax of the target snapshot */
#define P_PREV_XIP	19			/* xid8[]: pg_snapshot_xip(done), NULL when empty */
#define NPARAMS		19

typedef struct BadRow
{
	int64		seq;
	char	   *raw;
	char	   *batch;
	char	   *type;
	char	   *field;
	char	   *sqlstate;
	char	   *message;
	int64		dlq_id;			/* replay: the DLQ row it came from */
	bool		written;		/* in the DLQ already: only seq is kept */
} BadRow;

typedef struct SilverRun
{
	Pipeline   *p;
	Contract   *c;
	int64		run_id;
	bool		replay;
	char	   *source_table;	/* 'bronze.x' */
	char	   *qsource;		/* quoted bronze table */
	char	   *qtarget;		/* quoted silver table */
	char	   *qtomb;			/* quoted tombstone table (delete_when), or NULL */
	bool		rebase;			/* watermark from another cluster: read everything */
	bool		has_prev;
	bool		has_partial;	/* P_RXID, P_RSEQ set */
	bool		leftover;		/* only the partly processed transaction's rows */
	bool		has_cursor;
	bool		has_hi;
	Datum		values[NPARAMS];
	char		nulls[NPARAMS];
	Oid			types[NPARAMS];
	List	   *bad;			/* of BadRow * */
	List	   *expectations;	/* of char *[3]: name, check_sql, on_fail */
	const char *only_column;	/* checked_sql computes only that column */
	bool		prev_has_xip;	/* P_PREV_XIP set: done had transactions in progress */
	bool		counting;		/* source_sql counts its rows (medallion.count_read) */
	bool		keeping;		/* source_sql leaves out, and records, the rows that do not type */
	int64		nbad_written;	/* bad rows already in the DLQ (not in bad) */
	int64		ndlq_written;	/* of which new DLQ rows */
	MemoryContext cxt;			/* lives as long as the run */
} SilverRun;

/*
 * The run this backend is executing, if any: what the functions its SQL
 * calls (count_read, count_insert, silver_keep, silver_check, the check_*)
 * share with it.  Those raise unless the current user is the run's owner,
 * as while the run's SQL executes.  Registered by medallion_silver_run,
 * unregistered when it ends, or when its (sub)transaction aborts.
 */
typedef struct ActiveRun
{
	struct ActiveRun *prev;		/* an enclosing run, if any */
	SubTransactionId subid;		/* registered in */
	Oid			owner;
	SilverRun  *r;
	int64		read;			/* rows the last MERGE read */
	int64		inserted;		/* rows the last MERGE inserted */
	bool		keeping;		/* silver_keep may record rows */
	MemoryContext keep_cxt;		/* silver_keep's rows not yet written */
	List	   *keep_bad;
	int64		kept;			/* rows silver_keep left out */
	int64		kept_new;		/* of which new DLQ rows */
} ActiveRun;

static ActiveRun *active_run = NULL;
static bool active_run_callbacks = false;

static void
active_run_pop_to(SubTransactionId subid)
{
	while (active_run && active_run->subid >= subid)
	{
		ActiveRun  *prev = active_run->prev;

		pfree(active_run);
		active_run = prev;
	}
}

static void
active_run_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		active_run_pop_to(InvalidSubTransactionId);
}

static void
active_run_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		active_run_pop_to(mySubid);
}

static ActiveRun *
active_run_register(SilverRun *r)
{
	ActiveRun  *ar = MemoryContextAllocZero(TopMemoryContext, sizeof(ActiveRun));

	if (!active_run_callbacks)
	{
		RegisterXactCallback(active_run_xact_callback, NULL);
		RegisterSubXactCallback(active_run_subxact_callback, NULL);
		active_run_callbacks = true;
	}
	ar->prev = active_run;
	ar->subid = GetCurrentSubTransactionId();
	ar->owner = r->p->owner;
	ar->r = r;
	active_run = ar;
	return ar;
}

static void
active_run_unregister(ActiveRun *ar)
{
	Assert(active_run == ar);
	active_run = ar->prev;
	pfree(ar);
}

/*
 * Raises unless this backend is executing a run owned by the current user.
 */
void
medallion_active_run_check(const char *function)
{
	if (active_run == NULL || active_run->owner != GetUserId())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is called by silver runs only", function),
				 errdetail("It works only inside a run of a pipeline owned by the current user.")));
}

/* medallion.count_insert(): a row the run's MERGE inserted */
void
medallion_active_run_count_insert(void)
{
	medallion_active_run_check("medallion.count_insert()");
	active_run->inserted++;
}

/* ---------------------------------------------------------------------------
 * SQL generation
 * ---------------------------------------------------------------------------
 */

static const char *
qcol(const char *name)
{
	return quote_identifier(name);
}

/* A type's name as SQL, qualified unless it is an SQL keyword. */
static char *
qtype_name(Oid typid, int32 typmod)
{
	return format_type_extended(typid, typmod, FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
}

/*
 * An SQL value converted to a column's type.  Lengths are checked, not cut:
 * an explicit cast to varchar(n) or char(n) truncates, where the input
 * function (what silver_check uses) raises 22001; date/time inputs that name
 * the current time are refused, as silver_check refuses them.
 */
static char *
typed_sql(ColumnSpec *col, const char *val)
{
	if (col->typmod >= 0 && col->typid == VARCHAROID)
		return psprintf("pg_catalog.\"varchar\"(CAST(%s AS pg_catalog.\"varchar\"), %d, false)", val, col->typmod);
	if (col->typmod >= 0 && col->typid == BPCHAROID)
		return psprintf("pg_catalog.bpchar(CAST(%s AS pg_catalog.bpchar), %d, false)", val, col->typmod);
	return psprintf("CAST(%s AS %s)", val, qtype_name(col->typid, col->typmod));
}

static bool
is_datetime_type(Oid typid)
{
	return typid == DATEOID || typid == TIMESTAMPOID || typid == TIMESTAMPTZOID ||
		typid == TIMEOID || typid == TIMETZOID;
}

/*
 * The JSON path of a column as a text[] literal.
 */
static char *
path_literal(ColumnSpec *col)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "ARRAY[");
	foreach(lc, col->segments)
	{
		if (lc != list_head(col->segments))
			appendStringInfoChar(&buf, ',');
		appendStringInfoString(&buf, quote_literal_cstr(lfirst(lc)));
	}
	appendStringInfoString(&buf, "]::pg_catalog.text[]");
	return buf.data;
}

static bool
is_version_column(Contract *c, ColumnSpec *col)
{
	return col->is_key || (c->order_by && strcmp(c->order_by, col->name) == 0);
}

/*
 * The rows a statement reads: the window of bronze, or the replayed DLQ
 * rows, with _source_seq, _batch_id, _raw and _is_delete, minus the rows
 * left out.  "range" adds the (xid, seq) bounds of a bisection step.
 */
static char *
source_sql(SilverRun *r, bool with_exclusions, bool range)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (r->replay)
		appendStringInfo(&buf,
						 "SELECT b._seq AS _source_seq, b._batch_id, b._raw, b._xid, "
						 "NULL::pg_catalog.timestamptz AS _ingested_at, COALESCE((%s\n), false) AS _is_delete "
						 "FROM (SELECT u.*, '0'::pg_catalog.xid8 AS _xid FROM ROWS FROM "
						 "(pg_catalog.unnest($%d), pg_catalog.unnest($%d), pg_catalog.unnest($%d)) "
						 "AS u(_raw, _seq, _batch_id)) b WHERE true",
						 r->c->delete_when ? r->c->delete_when : "false", P_RAWS, P_SEQS, P_BATCHES);
	else if (r->rebase)
		appendStringInfo(&buf,
						 "SELECT b._seq AS _source_seq, b._batch_id, b._raw, b._xid, b._ingested_at, "
						 "COALESCE((%s\n), false) AS _is_delete FROM %s b WHERE true",
						 r->c->delete_when ? r->c->delete_when : "false", r->qsource);
	else
	{
		appendStringInfo(&buf,
						 "SELECT b._seq AS _source_seq, b._batch_id, b._raw, b._xid, b._ingested_at, "
						 "COALESCE((%s\n), false) AS _is_delete FROM %s b "
						 "WHERE b._xid OPERATOR(pg_catalog.<) $%d "
						 "AND pg_catalog.pg_visible_in_snapshot(b._xid, $%d)",
						 r->c->delete_when ? r->c->delete_when : "false", r->qsource, P_XMAX_TARGET, P_TARGET);

		/*
		 * The xid bounds are constants (computed once per run), so the
		 * planner sees how narrow the range is: an index range scan over
		 * the new transactions, not a scan of the table.  The lower bound is
		 * implied by the PgQ-style condition that follows.
		 */
		/*
		 * Not visible in done: at or above its xmax, or in progress for it.
		 * The list of those in progress is a constant too, and the OR only
		 * there when it is not empty: ARRAY(SELECT pg_snapshot_xip()) is an
		 * InitPlan the planner cannot estimate.
		 */
		if (r->has_prev && r->prev_has_xip)
			appendStringInfo(&buf,
							 " AND b._xid OPERATOR(pg_catalog.>=) $%d"
							 " AND (b._xid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmax($%d) "
							 "OR b._xid OPERATOR(pg_catalog.=) ANY ($%d))",
							 P_XMIN_PREV, P_PREV, P_PREV_XIP);
		else if (r->has_prev)
			appendStringInfo(&buf, " AND b._xid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmax($%d)",
							 P_PREV);
		if (r->has_partial)
			appendStringInfo(&buf, " AND NOT (b._xid OPERATOR(pg_catalog.=) $%d "
							 "AND b._seq OPERATOR(pg_catalog.<=) $%d)", P_RXID, P_RSEQ);
		if (r->leftover)
			appendStringInfo(&buf, " AND b._xid OPERATOR(pg_catalog.=) $%d", P_RXID);
		if (r->has_cursor)
			appendStringInfo(&buf, " AND b._seq OPERATOR(pg_catalog.>) $%d", P_CUR);
		if (r->has_hi)
			appendStringInfo(&buf, " AND b._seq OPERATOR(pg_catalog.<=) $%d", P_HSEQ);
	}
	if (range)
		appendStringInfo(&buf, " AND (b._xid, b._seq) OPERATOR(pg_catalog.>=) ($%d, $%d) "
						 "AND (b._xid, b._seq) OPERATOR(pg_catalog.<=) ($%d, $%d)",
						 P_LO_XID, P_LO_SEQ, P_HI_XID, P_HI_SEQ);
	if (with_exclusions)
		appendStringInfo(&buf, " AND b._seq OPERATOR(pg_catalog.<>) ALL ($%d)", P_EXCL);

	/*
	 * Last (their cost makes the planner evaluate them after every other
	 * condition): count the rows read, or in the slow path's MERGE, keep the
	 * rows that type and record the others (medallion.silver_keep).
	 */
	if (r->keeping)
		return psprintf("SELECT * FROM (%s) w WHERE medallion.silver_keep(w._source_seq, w._raw, w._batch_id, "
						"medallion.silver_check(w._raw, $%d, w._is_delete))", buf.data, P_DEF);
	if (r->counting)
		appendStringInfoString(&buf, " AND medallion.count_read()");
	return buf.data;
}

/*
 * The value of a column's path in the payload: -> and ->> with constant
 * keys (a text[] path would be taken apart again for every row).
 */
static char *
extract_sql(ColumnSpec *col)
{
	StringInfoData buf;
	ListCell   *lc;

	/* a numeric segment may index an array: only a text[] path does both */
	foreach(lc, col->segments)
	{
		const char *seg = lfirst(lc);

		if (strspn(seg, "0123456789-") == strlen(seg))
			return psprintf("(l0._raw %s %s)", col->is_json ? "OPERATOR(pg_catalog.#>)" : "OPERATOR(pg_catalog.#>>)",
							path_literal(col));
	}
	initStringInfo(&buf);
	appendStringInfoString(&buf, "(l0._raw");
	foreach(lc, col->segments)
	{
		bool		last = (lnext(col->segments, lc) == NULL);

		appendStringInfo(&buf, " OPERATOR(pg_catalog.%s) %s::pg_catalog.text",
						 last && !col->is_json ? "->>" : "->", quote_literal_cstr(lfirst(lc)));
	}
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

/*
 * The typed, computed and checked rows (L1 typed, L2 expressions, L3 checks
 * and PII), one per source row, with the lineage columns.
 */
static char *
checked_sql(SilverRun *r, bool with_exclusions, bool range)
{
	Contract   *c = r->c;
	StringInfoData l1,
				l2,
				l3;
	ListCell   *lc;

	initStringInfo(&l1);
	initStringInfo(&l2);
	initStringInfo(&l3);
	appendStringInfoString(&l1, "SELECT l0._source_seq, l0._batch_id, l0._raw, l0._xid, l0._is_delete");
	appendStringInfoString(&l2, "SELECT l1._source_seq, l1._batch_id, l1._raw, l1._xid, l1._is_delete");
	appendStringInfoString(&l3, "SELECT l2._source_seq, l2._batch_id, l2._raw, l2._xid, l2._is_delete");

	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);
		char	   *val;
		char	   *typed;
		char	   *v;
		char	   *qtype = qtype_name(col->typid, col->typmod);

		/* L1: extract and cast */
		val = extract_sql(col);
		if (col->default_value)
			val = psprintf("COALESCE(%s, %s)", val,
						   col->is_json ? psprintf("%s::pg_catalog.jsonb", quote_literal_cstr(col->default_value))
						   : psprintf("%s::pg_catalog.text", quote_literal_cstr(col->default_value)));
		if (is_datetime_type(col->typid))
			val = psprintf("medallion.check_datetime(%s, %s::pg_catalog.text)", val, quote_literal_cstr(col->name));
		typed = typed_sql(col, val);
		if (!is_version_column(c, col))
			typed = psprintf("CASE WHEN l0._is_delete THEN NULL ELSE %s END", typed);
		appendStringInfo(&l1, ",\n %s AS %s", typed, qcol(col->name));
		if (r->only_column && strcmp(r->only_column, col->name) != 0)
			continue;

		/* L2: the expression, over the typed columns */
		if (col->expr)
			appendStringInfo(&l2, ",\n CASE WHEN l1._is_delete THEN NULL ELSE %s END AS %s",
							 typed_sql(col, psprintf("(%s\n)", col->expr)), qcol(col->name));
		else
			appendStringInfo(&l2, ", l1.%s", qcol(col->name));

		/*
		 * L3: checks on the final value, then PII.  Each check returns its
		 * value or raises: not volatile, so the planner flattens this query
		 * (the DISTINCT ON key then has statistics: a CASE around the
		 * volatile contract_violation() made it "200 rows", and the MERGE a
		 * hash join spilling to disk), and each value is computed once (a
		 * CASE repeats its expression).
		 */
		v = psprintf("l2.%s", qcol(col->name));
		if (col->required)
			v = psprintf("medallion.check_required(%s, %s, %s::pg_catalog.text, %s::pg_catalog.text)",
						 v, is_version_column(c, col) ? "false" : "l2._is_delete",
						 quote_literal_cstr(col->name), quote_literal_cstr(col->path));
		if (col->accepted)
		{
			StringInfoData arr;
			ListCell   *a;

			initStringInfo(&arr);
			foreach(a, col->accepted)
				appendStringInfo(&arr, "%s%s", a == list_head(col->accepted) ? "" : ",",
								 quote_literal_cstr(lfirst(a)));
			v = psprintf("medallion.check_accepted(%s, ARRAY[%s]::%s[], %s::pg_catalog.text)",
						 v, arr.data, qtype, quote_literal_cstr(col->name));
		}
		if (col->ref_table)
		{
			char	   *dot = strchr(col->ref_table, '.');
			char	   *qref = quote_qualified_identifier(pnstrdup(col->ref_table, dot - col->ref_table), dot + 1);

			v = psprintf("medallion.check_reference(%s, EXISTS (SELECT 1 FROM %s r WHERE r.%s OPERATOR(pg_catalog.=) %s), "
						 "%s::pg_catalog.text, %s::pg_catalog.text)",
						 v, qref, qcol(col->ref_column), v, quote_literal_cstr(col->name),
						 quote_literal_cstr(psprintf("%s.%s", col->ref_table, col->ref_column)));
		}
		if (col->pii && strcmp(col->pii, "drop") == 0)
		{
			/* checked, then not kept: evaluate for its checks only */
			appendStringInfo(&l3, ",\n (%s) IS NULL AS %s", v, qcol(psprintf("_dropped_%s", col->name)));
			continue;
		}
		if (col->pii && strcmp(col->pii, "hash") == 0)
			v = psprintf("medallion.pseudonymize((%s)::pg_catalog.text)", v);
		else if (col->pii && strcmp(col->pii, "hash_v1") == 0)
			v = psprintf("pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to((%s)::pg_catalog.text, 'UTF8'::pg_catalog.name)), 'hex'::pg_catalog.text)", v);
		else if (col->pii && strcmp(col->pii, "mask") == 0)
			v = psprintf("(SELECT CASE WHEN m IS NULL THEN NULL ELSE pg_catalog.\"left\"(m, 1) OPERATOR(pg_catalog.||) '***'::pg_catalog.text "
						 "OPERATOR(pg_catalog.||) CASE WHEN pg_catalog.strpos(m, '@'::pg_catalog.text) OPERATOR(pg_catalog.>) 0 "
						 "THEN pg_catalog.substr(m, pg_catalog.strpos(m, '@'::pg_catalog.text)) ELSE ''::pg_catalog.text END END "
						 "FROM (SELECT (%s)::pg_catalog.text AS m) mm)", v);
		appendStringInfo(&l3, ",\n %s AS %s", v, qcol(col->name));
	}

	return psprintf("%s\nFROM (%s\nFROM (%s\nFROM (%s) l0) l1) l2",
					l3.data, l2.data, l1.data, source_sql(r, with_exclusions, range));
}

/*
 * The stored type of a column (PII hash and mask store text).
 */
static char *
stored_type(ColumnSpec *col)
{
	if (col->pii && (strcmp(col->pii, "hash") == 0 || strcmp(col->pii, "hash_v1") == 0 ||
					 strcmp(col->pii, "mask") == 0))
		return "pg_catalog.text";
	return qtype_name(col->typid, col->typmod);
}

static bool
is_stored(ColumnSpec *col)
{
	return !(col->pii && strcmp(col->pii, "drop") == 0);
}

/*
 * The table keeping the newest delete of each deleted key, so that an older
 * version arriving later does not bring the key back (delete_when only).
 */
static char *
tombstone_table(const char *relname)
{
	return quote_qualified_identifier("silver", psprintf("_%s_deleted", relname));
}

/* Longest silver name that leaves room for its tombstone table's. */
#define SILVER_MAX_NAME_WITH_DELETES (NAMEDATALEN - 1 - 9)

/*
 * The version comparison "a is newer than b" of two row aliases.
 */
static char *
newer_than(Contract *c, const char *a, const char *b, bool or_equal)
{
	const char *op = or_equal ? "OPERATOR(pg_catalog.>=)" : "OPERATOR(pg_catalog.>)";

	if (c->order_by)
		return psprintf("(%s.%s, %s._source_seq) %s (%s.%s, %s._source_seq)",
						a, qcol(c->order_by), a, op, b, qcol(c->order_by), b);
	return psprintf("%s._source_seq %s %s._source_seq", a, op, b);
}

/*
 * The winners of the window: one row per key, the latest version.
 */
static char *
winners_sql(SilverRun *r)
{
	Contract   *c = r->c;
	StringInfoData keys;
	ListCell   *lc;

	StringInfoData cols;

	initStringInfo(&keys);
	initStringInfo(&cols);
	foreach(lc, c->unique_key)
		appendStringInfo(&keys, "%s%s", keys.len ? ", " : "", qcol(lfirst(lc)));

	/*
	 * Only what the MERGE needs goes through the sort, not the payload: every
	 * checked column (a dropped PII column as its check marker), the lineage.
	 */
	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		appendStringInfo(&cols, "s.%s, ",
						 is_stored(col) ? qcol(col->name) : qcol(psprintf("_dropped_%s", col->name)));
	}
	return psprintf("SELECT DISTINCT ON (%s) %ss._source_seq, s._batch_id, s._is_delete "
					"FROM (%s) s ORDER BY %s, %s%s_source_seq DESC",
					keys.data, cols.data, checked_sql(r, true, false), keys.data,
					c->order_by ? qcol(c->order_by) : "", c->order_by ? " DESC, " : "");
}

/* winners_sql, counting the rows of the window it reads */
static char *
counted_winners_sql(SilverRun *r)
{
	char	   *sql;

	r->counting = true;
	sql = winners_sql(r);
	r->counting = false;
	return sql;
}

/*
 * Records the deletes that won in the tombstone table, newest kept.
 */
static char *
tombstone_sql(SilverRun *r)
{
	Contract   *c = r->c;
	StringInfoData keys;
	ListCell   *lc;
	const char *ob = c->order_by ? psprintf("%s, ", qcol(c->order_by)) : "";

	initStringInfo(&keys);
	foreach(lc, c->unique_key)
		appendStringInfo(&keys, "%s%s", keys.len ? ", " : "", qcol(lfirst(lc)));
	return psprintf("INSERT INTO %s AS t (%s, %s_source_seq, _run_id) "
					"SELECT %s, %s_source_seq, $%d FROM (%s) w WHERE w._is_delete "
					"ON CONFLICT (%s) DO UPDATE SET %s_source_seq = EXCLUDED._source_seq, _run_id = EXCLUDED._run_id "
					"WHERE %s",
					r->qtomb, keys.data, ob, keys.data, ob, P_RUN, winners_sql(r), keys.data,
					c->order_by ? psprintf("%s = EXCLUDED.%s, ", qcol(c->order_by), qcol(c->order_by)) : "",
					newer_than(c, "EXCLUDED", "t", false));
}

/*
 * The MERGE of a run: dedup by key (latest (order_by, _seq) wins), newer
 * versions update, new keys insert, delete markers delete.
 */
static char *
merge_sql(SilverRun *r)
{
	Contract   *c = r->c;
	StringInfoData keys,
				on,
				set,
				cols,
				vals;
	char	   *newer;
	char	   *not_deleted = "";
	ListCell   *lc;

	initStringInfo(&keys);
	initStringInfo(&on);
	initStringInfo(&set);
	initStringInfo(&cols);
	initStringInfo(&vals);
	foreach(lc, c->unique_key)
	{
		const char *k = qcol(lfirst(lc));

		appendStringInfo(&keys, "%s%s", keys.len ? ", " : "", k);
		appendStringInfo(&on, "%stgt.%s OPERATOR(pg_catalog.=) src.%s", on.len ? " AND " : "", k, k);
	}
	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		if (!is_stored(col))
			continue;
		appendStringInfo(&cols, "%s, ", qcol(col->name));
		appendStringInfo(&vals, "src.%s, ", qcol(col->name));
		if (!col->is_key)
			appendStringInfo(&set, "%s = src.%s, ", qcol(col->name), qcol(col->name));
	}
	newer = newer_than(c, "src", "tgt", false);
	if (r->qtomb)
	{
		StringInfoData tk;

		initStringInfo(&tk);
		foreach(lc, c->unique_key)
			appendStringInfo(&tk, " AND d.%s OPERATOR(pg_catalog.=) src.%s", qcol(lfirst(lc)), qcol(lfirst(lc)));
		not_deleted = psprintf(" AND NOT EXISTS (SELECT 1 FROM %s d WHERE true%s AND %s)",
							   r->qtomb, tk.data, newer_than(c, "d", "src", true));
	}

	return psprintf("MERGE INTO %s AS tgt USING (%s) AS src ON %s\n"
					"WHEN MATCHED AND src._is_delete AND %s THEN DELETE\n"
					"WHEN MATCHED AND NOT src._is_delete AND %s THEN UPDATE SET %s"
					"_source_seq = src._source_seq, _batch_id = src._batch_id, "
					"_loaded_at = pg_catalog.now(), _run_id = $%d\n"
					"WHEN NOT MATCHED AND NOT src._is_delete%s THEN INSERT (%s_source_seq, _batch_id, _run_id, _created_run_id) "
					"VALUES (%ssrc._source_seq, src._batch_id, $%d, medallion.count_insert($%d))",
					r->qtarget, counted_winners_sql(r), on.data,
					newer, newer, set.data, P_RUN, not_deleted, cols.data, vals.data, P_RUN, P_RUN);
}

/*
 * Sets up the parameters of a run's statements, all NULL.
 */
static void
init_params(SilverRun *r)
{
	static const Oid types[NPARAMS] = {
		PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID, INT8OID, INT8OID,
		INT8ARRAYOID, INT8OID, JSONBOID, JSONBARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
		XID8OID, INT8OID, XID8OID, INT8OID, XID8OID, XID8OID, XID8ARRAYOID
	};

	memcpy(r->types, types, sizeof(types));
	memset(r->nulls, 'n', sizeof(r->nulls));
}

/* ---------------------------------------------------------------------------
 * Executing
 * ---------------------------------------------------------------------------
 */

static void
set_exclusions(SilverRun *r)
{
	MemoryContext old = MemoryContextSwitchTo(r->cxt);
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(r->bad), 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, r->bad)
		elems[n++] = Int64GetDatum(((BadRow *) lfirst(lc))->seq);
	r->values[P_EXCL - 1] = PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	r->nulls[P_EXCL - 1] = ' ';
	MemoryContextSwitchTo(old);
}

static int
exec(SilverRun *r, const char *sql, bool read_only, long limit)
{
	/*
	 * Never read_only: that would reuse the caller's statement snapshot,
	 * taken before this run waited for the pipeline's lock and took its
	 * target snapshot.
	 */
	int			ret = SPI_execute_with_args(sql, NPARAMS, r->types, r->values, r->nulls,
											false, limit);

	(void) read_only;

	if (ret < 0)
		elog(ERROR, "SPI_execute_with_args failed (%s) for: %s", SPI_result_code_string(ret), sql);
	return ret;
}

typedef void (*TryFn) (SilverRun *r, void *arg);

PG_FUNCTION_INFO_V1(medallion_count_read);
PG_FUNCTION_INFO_V1(medallion_silver_keep);

/*
 * medallion.count_read(): counts a row of the window a run's MERGE reads,
 * so that no count(*) pass over the window is needed.
 */
Datum
medallion_count_read(PG_FUNCTION_ARGS)
{
	medallion_active_run_check("medallion.count_read()");
	active_run->read++;
	PG_RETURN_BOOL(true);
}

static int64 insert_dlq_rows(SilverRun *r, List *rows);

/* silver_keep writes the rows it leaves out by batches of this many, or bytes */
#define KEEP_BATCH 1000
#define KEEP_BATCH_BYTES (1024 * 1024)

/*
 * Writes the rows silver_keep recorded and frees them: memory stays flat
 * in the number of bad rows.  (A replay keeps them: their DLQ rows are
 * updated at its end.)
 */
static void
flush_kept(ActiveRun *ar)
{
	if (ar->keep_bad == NIL || ar->r->replay)
		return;
	ar->kept_new += insert_dlq_rows(ar->r, ar->keep_bad);
	ar->kept += list_length(ar->keep_bad);
	ar->keep_bad = NIL;
	MemoryContextReset(ar->keep_cxt);
}

/*
 * medallion.silver_keep(seq, payload, batch_id, silver_check's result): in
 * the slow path's MERGE, keeps (and counts) a row that types, records one
 * that does not and leaves it out.  Finding the bad rows and merging the
 * good ones is then one pass over the window, not two.
 */
Datum
medallion_silver_keep(PG_FUNCTION_ARGS)
{
	ActiveRun  *ar;
	MemoryContext old;
	BadRow	   *b;
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	Jsonb	   *raw;

	medallion_active_run_check("medallion.silver_keep()");
	ar = active_run;
	if (!ar->keeping)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("medallion.silver_keep() is called by silver runs only")));
	if (PG_ARGISNULL(3))
	{
		ar->read++;
		PG_RETURN_BOOL(true);
	}
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("seq and payload must not be NULL")));
	raw = PG_GETARG_JSONB_P(1);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	if (n != 4 || enulls[0] || enulls[2] || enulls[3])
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("error must be silver_check's result")));
	old = MemoryContextSwitchTo(ar->keep_cxt);
	b = palloc0(sizeof(BadRow));
	b->seq = PG_GETARG_INT64(0);
	b->raw = JsonbToCString(NULL, &raw->root, VARSIZE(raw));
	b->batch = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	b->type = TextDatumGetCString(elems[0]);
	b->field = enulls[1] ? NULL : TextDatumGetCString(elems[1]);
	b->sqlstate = TextDatumGetCString(elems[2]);
	b->message = TextDatumGetCString(elems[3]);
	ar->keep_bad = lappend(ar->keep_bad, b);
	MemoryContextSwitchTo(old);
	if (list_length(ar->keep_bad) >= KEEP_BATCH ||
		MemoryContextMemAllocated(ar->keep_cxt, false) >= KEEP_BATCH_BYTES)
		flush_kept(ar);
	PG_RETURN_BOOL(false);
}

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
static ErrorData *
try_data(SilverRun *r, TryFn fn, void *arg)
{
	TryCall		call = {r, fn, arg};

	return medallion_try(call_try, &call, false);
}

static void
do_merge(SilverRun *r, void *arg)
{
	int64	   *merged = arg;

	active_run->inserted = 0;
	active_run->read = 0;
	exec(r, merge_sql(r), false, 0);
	*merged = SPI_processed;
	if (r->qtomb)
		exec(r, tombstone_sql(r), false, 0);
}

/*
 * The slow path of a run without expectations, in one MERGE that leaves
 * out (and records) the rows silver_check() refuses; they go to the DLQ by
 * batches as they are found.  False, with nothing changed, if that MERGE
 * failed all the same: an expression or a reference fails on a row that
 * types (find_failing_rows' business).
 */
static bool
merge_keeping(SilverRun *r, int64 *merged)
{
	ErrorData  *volatile edata = NULL;
	ActiveRun  *ar = active_run;

	ar->keep_cxt = AllocSetContextCreate(r->cxt, "medallion silver_keep", ALLOCSET_DEFAULT_SIZES);
	ar->keep_bad = NIL;
	ar->kept = ar->kept_new = 0;
	ar->keeping = true;
	r->keeping = true;
	PG_TRY();
	{
		edata = try_data(r, do_merge, merged);
		/* the last batch, in the MERGE's subtransaction's place */
		if (edata == NULL)
			flush_kept(ar);
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
	set_exclusions(r);
	return true;
}

/*
 * Step A of the slow path: rows that do not type (or miss a required
 * field, or are not accepted) under the contract, in one set-based pass.
 */
static void
find_untyped_rows(SilverRun *r)
{
	char	   *sql = psprintf("SELECT _source_seq, _raw::pg_catalog.text, _batch_id, err FROM "
							   "(SELECT l0._source_seq, l0._raw, l0._batch_id, "
							   "medallion.silver_check(l0._raw, $%d, l0._is_delete) AS err "
							   "FROM (%s) l0 OFFSET 0) x WHERE err IS NOT NULL ORDER BY _source_seq",
							   P_DEF, source_sql(r, true, false));
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
		r->ndlq_written += insert_dlq_rows(r, batch);
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
	set_exclusions(r);
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
	exec(r, psprintf("SELECT pg_catalog.sum(pg_catalog.pg_column_size(s.*)) FROM (%s) s",
					 checked_sql(r, true, true)), true, 0);
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
		if (try_data(r, check_range, range) != NULL)
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
	edata = try_data(r, check_range, range);
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
static void
find_failing_rows(SilverRun *r)
{
	RowPos	   *pos;
	int			n;
	int			i;
	int			before = list_length(r->bad);
	ListCell   *lc;

	exec(r, psprintf("SELECT _xid, _source_seq FROM (%s) b ORDER BY _xid, _source_seq",
					 source_sql(r, true, false)), true, 0);
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

		exec(r, psprintf("SELECT _raw::pg_catalog.text, _batch_id FROM (%s) b WHERE _source_seq OPERATOR(pg_catalog.=) %lld",
						 source_sql(r, false, false), (long long) b->seq), true, 1);
		if (SPI_processed == 1)
		{
			MemoryContext old = MemoryContextSwitchTo(r->cxt);

			b->raw = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			b->batch = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
			MemoryContextSwitchTo(old);
		}
	}
	set_exclusions(r);
}

/*
 * Applies the expectations to the rows that type: warn counts, drop and
 * quarantine leave the row out, fail fails the run.
 */
static void
apply_expectations(SilverRun *r, void *arg)
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
	exec(r, psprintf("SELECT s._source_seq, s._raw::pg_catalog.text, s._batch_id%s FROM (%s) s WHERE %s",
					 sel.data, checked_sql(r, true, false), any.data), true, 0);

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
	set_exclusions(r);
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
 * Inserts new DLQ rows, in one statement (not 10k statements for 1% of 1M
 * rows); a row already waiting in the DLQ (a source read again) is not
 * added twice.  Returns how many rows were given.
 */
static int64
insert_dlq_rows(SilverRun *r, List *rows)
{
	BadArrays	a;
	ListCell   *lc;
	MemoryContext cxt;
	MemoryContext old;

	if (rows == NIL)
		return 0;
	/* a batch's copies go when it is written: a run writes many */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "medallion DLQ batch", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	bad_arrays_init(&a);
	foreach(lc, rows)
		bad_arrays_add(&a, lfirst(lc));
	(void) bad_rows_exec(r, &a,
						 "INSERT INTO medallion.dlq (pipeline, original_payload, error_message, "
						 "error_type, field, source_table, source_seq, pipeline_run_id, batch_id, sqlstate) "
						 "SELECT $1, u.raw, u.msg, u.type, u.field, $2, u.seq, $3, u.batch, u.state "
						 BAD_ROWS_FROM
						 "WHERE NOT EXISTS (SELECT 1 FROM medallion.dlq d WHERE d.pipeline OPERATOR(pg_catalog.=) $1 "
						 "AND d.source_seq OPERATOR(pg_catalog.=) u.seq AND NOT d.reprocessed) ORDER BY u.n",
						 SPI_OK_INSERT);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return list_length(rows);
}

/*
 * Writes the DLQ and quarantine rows of a run, as the catalog owner.  A
 * replayed row still bad keeps its DLQ row, with the new error.  Like the
 * DLQ, quarantine takes a source row once (a source read again, as after a
 * restore into another cluster, adds nothing).
 */
static void
write_bad_rows(SilverRun *r, RunCounts *counts)
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
	counts->dlq += insert_dlq_rows(r, new_dlq);
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
							 "AND q.source_seq OPERATOR(pg_catalog.=) u.seq AND NOT q.reprocessed) ORDER BY u.n",
							 SPI_OK_INSERT);
}

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
static List *
load_replay_rows(SilverRun *r, ArrayType *ids)
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
static int64
finish_replay(SilverRun *r, List *rows)
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
static int64
own_max_seq(SilverRun *r, Datum me)
{
	Oid			types[1] = {XID8OID};
	Datum		values[1] = {me};
	bool		isnull;
	Datum		d;

	if (SPI_execute_with_args(psprintf("SELECT pg_catalog.max(_seq) FROM %s "
									   "WHERE _xid OPERATOR(pg_catalog.=) $1", r->qsource),
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read %s", r->qsource);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * The watermark after a run (DESIGN.md §4): what is done is the rows
 * visible in done_snapshot; with a target_snapshot, a bounded window is
 * being drained and its rows up to resume_seq are done too; without one,
 * resume_xid names a transaction of which only the rows up to resume_seq
 * are done.  That is the run's own transaction, whose rows the run sees
 * (medallion_current_snapshot) but which may add more before it commits.
 */
static void
next_watermark(SilverRun *r, Watermark *wm, bool drained)
{
	FullTransactionId fme = GetTopFullTransactionIdIfAny();
	Datum		me = FullTransactionIdGetDatum(fme);
	Datum		target = r->values[P_TARGET - 1];
	int64		seq;

	if (!drained)
	{
		if (r->leftover)
			wm->resume_seq = DatumGetInt64(r->values[P_HSEQ - 1]);
		else
		{
			wm->has_target = true;
			wm->target_snapshot = target;
			wm->has_resume = true;
			wm->resume_xid = FullTransactionIdGetDatum(InvalidFullTransactionId);
			wm->resume_seq = DatumGetInt64(r->values[P_HSEQ - 1]);
		}
		return;
	}
	if (r->leftover)
	{
		if (FullTransactionIdIsValid(fme) && DatumGetUInt64(wm->resume_xid) == DatumGetUInt64(me))
			wm->resume_seq = Max(wm->resume_seq, own_max_seq(r, me));
		else
		{
			/* that transaction has committed, and all its rows are done */
			wm->done_snapshot = medallion_snapshot_set_visible(wm->done_snapshot, wm->resume_xid, true);
			wm->has_resume = false;
		}
		return;
	}
	wm->has_done = true;
	wm->done_snapshot = target;
	wm->has_target = false;
	wm->has_resume = false;
	if (FullTransactionIdIsValid(fme) && medallion_snapshot_visible(target, me))
	{
		/* the run's own transaction is not done: it may add rows yet */
		wm->done_snapshot = medallion_snapshot_set_visible(target, me, false);
		if ((seq = own_max_seq(r, me)) > 0)
		{
			wm->has_resume = true;
			wm->resume_xid = me;
			wm->resume_seq = seq;
		}
	}
}

/*
 * Sets up a run of a silver pipeline (not yet its window).
 */
static void
setup_run(SilverRun *r, Pipeline *p, int64 run_id)
{
	char	   *dot;

	r->cxt = CurrentMemoryContext;
	r->p = p;
	r->run_id = run_id;
	r->c = medallion_contract_parse(p->definition, false);
	r->source_table = p->source;
	dot = strchr(p->source, '.');
	r->qsource = quote_qualified_identifier(pnstrdup(p->source, dot - p->source), dot + 1);
	r->qtarget = quote_qualified_identifier("silver", p->relname);
	r->qtomb = r->c->delete_when ? tombstone_table(p->relname) : NULL;
	init_params(r);
	r->values[P_RUN - 1] = Int64GetDatum(run_id);
	r->nulls[P_RUN - 1] = ' ';
	r->values[P_DEF - 1] = JsonbPGetDatum(p->definition);
	r->nulls[P_DEF - 1] = ' ';
	set_exclusions(r);
}

/*
 * Computes the window's xid bounds from its snapshots, as constants.
 */
static void
set_xid_bounds(SilverRun *r)
{
	bool		isnull;

	SPI_connect();
	exec(r, psprintf("SELECT pg_catalog.pg_snapshot_xmax($%d), "
					 "CASE WHEN $%d IS NOT NULL THEN pg_catalog.pg_snapshot_xmin($%d) END",
					 P_TARGET, P_PREV, P_PREV), true, 1);
	r->values[P_XMAX_TARGET - 1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	r->nulls[P_XMAX_TARGET - 1] = isnull ? 'n' : ' ';
	r->values[P_XMIN_PREV - 1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	r->nulls[P_XMIN_PREV - 1] = isnull ? 'n' : ' ';
	if (r->has_prev)
	{
		Datum		d;

		exec(r, psprintf("SELECT pg_catalog.array_agg(x) FROM pg_catalog.pg_snapshot_xip($%d) x", P_PREV), true, 1);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		r->prev_has_xip = !isnull;
		r->nulls[P_PREV_XIP - 1] = isnull ? 'n' : ' ';
		if (!isnull)
			r->values[P_PREV_XIP - 1] = SPI_datumTransfer(d, false, -1);
	}
	SPI_finish();
}

/*
 * Reads the watermark and sets up the window of bronze rows a run reads.
 */
static void
open_window(SilverRun *r, Watermark *wm)
{
	medallion_watermark_load(r->p->name, wm);
	if (wm->has_done)
	{
		r->has_prev = true;
		r->values[P_PREV - 1] = wm->done_snapshot;
		r->nulls[P_PREV - 1] = ' ';
	}
	if (wm->has_target)
	{
		/* a bounded window being drained: its rows up to the cursor are done */
		r->values[P_TARGET - 1] = wm->target_snapshot;
		if (wm->has_resume)
		{
			r->has_cursor = true;
			r->values[P_CUR - 1] = Int64GetDatum(wm->resume_seq);
			r->nulls[P_CUR - 1] = ' ';
		}
	}
	else
	{
		r->values[P_TARGET - 1] = medallion_current_snapshot();
		if (wm->has_resume)
		{
			/* a transaction whose rows up to resume_seq are done */
			r->has_partial = true;
			r->values[P_RXID - 1] = wm->resume_xid;
			r->values[P_RSEQ - 1] = Int64GetDatum(wm->resume_seq);
			r->nulls[P_RXID - 1] = r->nulls[P_RSEQ - 1] = ' ';
		}
	}
	r->nulls[P_TARGET - 1] = ' ';

	/*
	 * A bounded run first finishes a partly processed transaction, alone:
	 * a bounded window cannot carry both its cursor and that exclusion.
	 */
	r->leftover = (r->has_partial && r->c->max_rows_per_run > 0);

	/*
	 * Restored from another cluster: read every row once, unbounded, and
	 * start afresh from this run's snapshot.
	 */
	if (wm->rebase)
	{
		r->rebase = true;
		r->has_prev = r->has_partial = r->leftover = r->has_cursor = false;
		r->values[P_TARGET - 1] = medallion_current_snapshot();
	}
	set_xid_bounds(r);
}

/* The arrival time of the oldest row of a window, or 0 (as the owner). */
static TimestampTz
window_oldest(SilverRun *r)
{
	TimestampTz oldest = 0;
	bool		isnull;
	Datum		d;

	exec(r, psprintf("SELECT pg_catalog.min(b._ingested_at) FROM (%s) b", source_sql(r, false, false)),
		 true, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		oldest = DatumGetTimestampTz(d);
	return oldest;
}

/*
 * The arrival time of the oldest row in a pipeline's window (0 when it is
 * empty): the scheduler's cheap checks — whether to start a worker at all,
 * and freshness.  Runs as the pipeline's owner, without user SQL.
 *
 * Every row not done counts: those of a bounded window being drained, and
 * those that arrived after it (the next run reads them once the window is
 * drained: were they left out, an empty rest of the window would stop the
 * pipeline for good).  A partly processed transaction's rows do not hide
 * the others either.
 */
TimestampTz
medallion_silver_oldest_pending(Pipeline *p)
{
	SilverRun	r = {0};
	Watermark	wm;
	MedallionUserContext save;
	int			nestlevel;
	TimestampTz oldest;

	setup_run(&r, p, 0);
	open_window(&r, &wm);
	r.c->delete_when = NULL;	/* not needed to tell which rows are there */
	r.leftover = false;
	medallion_run_settings_push(r.c, &nestlevel);
	medallion_become_user(p->owner, &save);
	SPI_connect();
	(void) set_config_option("max_parallel_workers_per_gather", "0", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	oldest = window_oldest(&r);
	if (wm.has_target && !r.rebase)
	{
		SilverRun	beyond = {0};
		TimestampTz later;

		/* the rows after the window: done is the window's target */
		beyond.p = p;
		beyond.c = r.c;
		beyond.cxt = r.cxt;
		beyond.qsource = r.qsource;
		init_params(&beyond);
		set_exclusions(&beyond);
		beyond.has_prev = true;
		beyond.values[P_PREV - 1] = wm.target_snapshot;
		beyond.nulls[P_PREV - 1] = ' ';
		beyond.values[P_TARGET - 1] = medallion_current_snapshot();
		beyond.nulls[P_TARGET - 1] = ' ';
		set_xid_bounds(&beyond);
		later = window_oldest(&beyond);
		if (later != 0 && (oldest == 0 || later < oldest))
			oldest = later;
	}
	SPI_finish();
	medallion_restore_user(&save);
	AtEOXact_GUC(true, nestlevel);
	return oldest;
}

/*
 * A run stopped at max_rows_per_run asks for the next one itself, whatever
 * its pipeline's schedule (an on_change pipeline would otherwise wait for
 * the next landing, a cron one for its next tick).
 */
static void
request_next_run(Pipeline *p)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(p->name)};

	if (medallion_catalog_exec("UPDATE medallion.pipelines SET trigger_requested = true "
							   "WHERE name OPERATOR(pg_catalog.=) $1 AND schedule_kind IS NOT NULL",
							   1, t, v, NULL, SPI_OK_UPDATE) > 0)
		medallion_wake_scheduler_at_commit();
}

/*
 * One run of a silver pipeline (called by run.c inside the run's
 * subtransaction).
 */
void
medallion_silver_run(Pipeline *p, int64 run_id, const char *kind, ArrayType *replay_ids,
					 RunCounts *counts)
{
	SilverRun	r = {0};
	Watermark	wm;
	MedallionUserContext save;
	int			nestlevel;
	int64		merged = 0;
	ErrorData  *edata;
	bool		drained = true;
	List	   *replay_rows = NIL;
	ActiveRun  *ar;

	r.replay = (replay_ids != NULL);
	setup_run(&r, p, run_id);
	ar = active_run_register(&r);

	/* expectations, as the catalog owner */
	{
		Oid			t[1] = {TEXTOID};
		Datum		v[1] = {CStringGetTextDatum(p->name)};
		uint64		k;
		uint64		n;
		MedallionGateway gw;

		medallion_catalog_enter(&gw);
		n = medallion_gateway_exec("SELECT name, check_sql, on_fail FROM medallion.expectations "
								   "WHERE pipeline OPERATOR(pg_catalog.=) $1 ORDER BY name",
								   1, t, v, NULL, 0, SPI_OK_SELECT);
		for (k = 0; k < n; k++)
		{
			MemoryContext old = MemoryContextSwitchTo(r.cxt);
			char	  **e = palloc(sizeof(char *) * 3);

			e[0] = SPI_getvalue(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 1);
			e[1] = SPI_getvalue(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 2);
			e[2] = SPI_getvalue(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 3);
			r.expectations = lappend(r.expectations, e);
			MemoryContextSwitchTo(old);
		}
		medallion_gateway_leave(&gw);
	}

	if (r.replay)
		replay_rows = load_replay_rows(&r, replay_ids);
	else
	{
		open_window(&r, &wm);
	}

	medallion_run_settings_push(r.c, &nestlevel);
	medallion_become_user(p->owner, &save);
	SPI_connect();

	if (!r.replay && !r.rebase && r.c->max_rows_per_run > 0)
	{
		/*
		 * In arrival order: rows a transaction adds later come after the
		 * cursor.  One row past the cap tells whether the window ends at it:
		 * a window of exactly the cap is drained by this run.
		 */
		exec(&r, psprintf("SELECT _source_seq FROM (%s) b ORDER BY _source_seq OFFSET %lld LIMIT 2",
						  source_sql(&r, false, false), (long long) (r.c->max_rows_per_run - 1)), true, 2);
		if (SPI_processed == 2)
		{
			bool		isnull;

			r.has_hi = true;
			drained = false;
			r.values[P_HSEQ - 1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			r.nulls[P_HSEQ - 1] = ' ';
		}
	}

	/* an empty window: no MERGE (one probe of the index) */
	ar->read = 0;
	ar->inserted = 0;
	exec(&r, psprintf("SELECT 1 FROM (%s) b LIMIT 1", source_sql(&r, false, false)), true, 1);
	if (SPI_processed > 0)
	{
		bool		slow = (r.expectations != NIL);

		if (!slow)
		{
			edata = try_data(&r, do_merge, &merged);
			slow = (edata != NULL);
		}
		/* (with delete markers, do_merge's second statement reads the window too) */
		if (slow && r.expectations == NIL && r.qtomb == NULL && merge_keeping(&r, &merged))
			slow = false;
		if (slow)
		{
			find_untyped_rows(&r);
			if (r.expectations != NIL && try_data(&r, apply_expectations, counts) != NULL)
			{
				find_failing_rows(&r);
				apply_expectations(&r, counts);
			}
			if (try_data(&r, do_merge, &merged) != NULL)
			{
				find_failing_rows(&r);
				do_merge(&r, &merged);
			}
		}
	}
	/*
	 * Rows read: those the last MERGE read, and those it left out (bad rows,
	 * and replayed payloads that are no longer JSON).
	 */
	counts->read = ar->read + list_length(r.bad) + r.nbad_written;
	counts->inserted = ar->inserted;
	counts->updated = merged - ar->inserted;

	if (!r.replay)
	{
		/* in the run's context: the snapshots must outlive this SPI connection */
		MemoryContext old = MemoryContextSwitchTo(r.cxt);

		next_watermark(&r, &wm, drained);
		MemoryContextSwitchTo(old);
	}

	SPI_finish();
	medallion_restore_user(&save);
	AtEOXact_GUC(true, nestlevel);

	if (r.replay)
		counts->replayed = finish_replay(&r, replay_rows);
	write_bad_rows(&r, counts);
	counts->unchanged = counts->read - counts->inserted - counts->updated - counts->dlq -
		counts->quarantined - counts->dropped;

	if (!r.replay)
	{
		medallion_watermark_save(p->name, &wm);
		if (!drained)
			request_next_run(p);
	}
	active_run_unregister(ar);
	(void) kind;
}

/* ---------------------------------------------------------------------------
 * Definition
 * ---------------------------------------------------------------------------
 */

/*
 * medallion.create_silver(name, source, columns, unique_key, order_by, options)
 */
Datum
medallion_create_silver(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			source;
	BronzeTarget bronze;
	Jsonb	   *definition;
	Contract   *c;
	StringInfoData ddl;
	StringInfoData def;
	ListCell   *lc;
	Oid			nsp = get_namespace_oid("silver", false);
	Oid			relid;
	char	   *qrel;
	char	   *description = NULL;
	SilverRun	r = {0};
	int			i;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name, source, columns and unique_key must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	source = PG_GETARG_OID(1);
	medallion_check_name("silver table", name, NAMEDATALEN - 1);
	medallion_bronze_open(source, &bronze);
	if (pg_class_aclcheck(source, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", quote_qualified_identifier("bronze", bronze.relname)),
				 errhint("The owner of a silver pipeline needs SELECT on its bronze source.")));
	if (pg_namespace_aclcheck(nsp, GetUserId(), ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create silver tables"),
				 errdetail("Creating a silver table needs the CREATE privilege on schema \"silver\"."),
				 errhint("An administrator can run: GRANT CREATE ON SCHEMA silver TO %s;",
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
	if (OidIsValid(get_relname_relid(name, nsp)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"silver.%s\" already exists", name)));

	/* the stored definition: {"columns", "unique_key", "order_by", "options"} */
	initStringInfo(&def);
	appendStringInfoString(&def, "{\"columns\": ");
	appendStringInfoString(&def, JsonbToCString(NULL, &PG_GETARG_JSONB_P(2)->root, 0));
	appendStringInfoString(&def, ", \"unique_key\": [");
	{
		Datum	   *keys;
		bool	   *knulls;
		int			n;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TEXTOID, -1, false, TYPALIGN_INT, &keys, &knulls, &n);
		for (i = 0; i < n; i++)
		{
			if (knulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("unique_key must not contain NULL")));
			if (i > 0)
				appendStringInfoChar(&def, ',');
			escape_json(&def, TextDatumGetCString(keys[i]));
		}
	}
	appendStringInfoString(&def, "], \"order_by\": ");
	if (PG_ARGISNULL(4))
		appendStringInfoString(&def, "null");
	else
		escape_json(&def, text_to_cstring(PG_GETARG_TEXT_PP(4)));
	appendStringInfoString(&def, ", \"options\": ");
	appendStringInfoString(&def, PG_ARGISNULL(5) ? "{}" : JsonbToCString(NULL, &PG_GETARG_JSONB_P(5)->root, 0));
	appendStringInfoChar(&def, '}');
	definition = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(def.data)));
	c = medallion_contract_parse(definition, true);
	if (c->delete_when)
		medallion_check_name("silver table with delete_when", name, SILVER_MAX_NAME_WITH_DELETES);

	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		if (col->ref_table)
		{
			char	   *d = strchr(col->ref_table, '.');
			Oid			rnsp = get_namespace_oid(pnstrdup(col->ref_table, d - col->ref_table), true);
			Oid			rrel = OidIsValid(rnsp) ? get_relname_relid(d + 1, rnsp) : InvalidOid;

			if (!OidIsValid(rrel))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_TABLE),
						 errmsg("referenced table \"%s\" of column \"%s\" does not exist",
								col->ref_table, col->name)));
			if (get_attnum(rrel, col->ref_column) == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("referenced column \"%s\" of \"%s\" does not exist",
								col->ref_column, col->ref_table)));
		}
	}

	qrel = quote_qualified_identifier("silver", name);
	initStringInfo(&ddl);
	appendStringInfo(&ddl, "CREATE TABLE %s (", qrel);
	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		/* a required column is never NULL: say so to the planner and to readers */
		if (is_stored(col))
			appendStringInfo(&ddl, "%s %s%s, ", qcol(col->name), stored_type(col),
							 col->required ? " NOT NULL" : "");
	}
	appendStringInfoString(&ddl,
						   "_source_seq pg_catalog.int8 NOT NULL, _batch_id pg_catalog.text, "
						   "_loaded_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(), "
						   "_run_id pg_catalog.int8, _created_run_id pg_catalog.int8, PRIMARY KEY (");
	foreach(lc, c->unique_key)
		appendStringInfo(&ddl, "%s%s", lc == list_head(c->unique_key) ? "" : ", ", qcol(lfirst(lc)));
	appendStringInfoString(&ddl, "));");
	if (c->delete_when)
	{
		/* the newest delete of each deleted key (see tombstone_sql) */
		appendStringInfo(&ddl, "CREATE TABLE %s (", tombstone_table(name));
		foreach(lc, c->unique_key)
			appendStringInfo(&ddl, "%s %s, ", qcol(lfirst(lc)),
							 stored_type(medallion_contract_column(c, lfirst(lc))));
		if (c->order_by)
			appendStringInfo(&ddl, "%s %s, ", qcol(c->order_by),
							 stored_type(medallion_contract_column(c, c->order_by)));
		appendStringInfoString(&ddl, "_source_seq pg_catalog.int8 NOT NULL, _run_id pg_catalog.int8, PRIMARY KEY (");
		foreach(lc, c->unique_key)
			appendStringInfo(&ddl, "%s%s", lc == list_head(c->unique_key) ? "" : ", ", qcol(lfirst(lc)));
		appendStringInfo(&ddl, "));COMMENT ON TABLE %s IS %s;", tombstone_table(name),
						 quote_literal_cstr(psprintf("medallion: deleted keys of silver.%s, newest delete kept", name)));
	}
	appendStringInfo(&ddl, "COMMENT ON TABLE %s IS %s;", qrel,
					 quote_literal_cstr(psprintf("medallion silver table, fed from bronze.%s", bronze.relname)));

	SPI_connect();
	if (SPI_execute(ddl.data, false, 0) < 0)
		elog(ERROR, "could not create silver table: %s", ddl.data);

	/* Every expression, condition and reference must plan now, not at the first run. */
	r.c = c;
	r.qsource = quote_qualified_identifier("bronze", bronze.relname);
	r.qtarget = qrel;
	r.qtomb = c->delete_when ? tombstone_table(name) : NULL;
	r.has_prev = true;
	r.prev_has_xip = true;
	init_params(&r);
	{
		int			nestlevel;
		MedallionUserContext save;

		medallion_run_settings_push(c, &nestlevel);
		medallion_become_user(GetUserId(), &save);
		if (SPI_prepare(merge_sql(&r), NPARAMS, r.types) == NULL)
			elog(ERROR, "could not prepare the pipeline's SQL: %s", SPI_result_code_string(SPI_result));
		medallion_restore_user(&save);
		AtEOXact_GUC(true, nestlevel);
	}
	SPI_finish();
	CommandCounterIncrement();
	relid = get_relname_relid(name, nsp);

	{
		JsonbValue *v = NULL;

		if (!PG_ARGISNULL(5) && JB_ROOT_IS_OBJECT(PG_GETARG_JSONB_P(5)))
		{
			JsonbValue	k;

			k.type = jbvString;
			k.val.string.val = "description";
			k.val.string.len = strlen("description");
			v = findJsonbValueFromContainer(&PG_GETARG_JSONB_P(5)->root, JB_FOBJECT, &k);
			if (v && v->type == jbvString)
				description = pnstrdup(v->val.string.val, v->val.string.len);
		}
	}
	medallion_catalog_add_pipeline(medallion_pipeline_name("silver", name), "silver", name,
								   GetUserId(), NULL, (Datum) 0, true,
								   PG_ARGISNULL(5) ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")))
								   : PG_GETARG_JSONB_P(5),
								   description);
	medallion_catalog_set_definition(medallion_pipeline_name("silver", name), bronze.pipeline, definition);
	PG_RETURN_OID(relid);
}

/*
 * medallion.expect(pipeline, name, check_sql, on_fail)
 */
Datum
medallion_expect(PG_FUNCTION_ARGS)
{
	char	   *pipeline;
	char	   *on_fail;
	Pipeline	p = {0};
	MedallionUserContext save;
	MedallionGateway gw;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline, name, check_sql and on_fail must not be NULL")));
	pipeline = text_to_cstring(PG_GETARG_TEXT_PP(0));
	on_fail = text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (strcmp(on_fail, "warn") != 0 && strcmp(on_fail, "drop") != 0 &&
		strcmp(on_fail, "quarantine") != 0 && strcmp(on_fail, "fail") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("on_fail must be \"warn\", \"drop\", \"quarantine\" or \"fail\"")));
	if (!medallion_pipeline_lookup(pipeline, &p, false, false, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", pipeline)));
	if (strcmp(p.layer, "silver") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("expectations apply to silver pipelines, \"%s\" is a %s pipeline", pipeline, p.layer)));
	if (!OidIsValid(p.owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", p.owner_name),
				 errdetail("It owns pipeline \"%s\".", pipeline)));
	if (!has_privs_of_role(GetUserId(), p.owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of pipeline \"%s\"", pipeline)));

	/* The check must plan over the pipeline's columns. */
	{
		SilverRun	r = {0};
		int			nestlevel;
		char	   *dot = strchr(p.source, '.');

		r.c = medallion_contract_parse(p.definition, false);
		r.qsource = quote_qualified_identifier(pnstrdup(p.source, dot - p.source), dot + 1);
		init_params(&r);
		medallion_run_settings_push(r.c, &nestlevel);
		medallion_become_user(p.owner, &save);
		SPI_connect();
		if (SPI_prepare(psprintf("SELECT ((%s\n) IS FALSE) FROM (%s) s",
								 text_to_cstring(PG_GETARG_TEXT_PP(2)), checked_sql(&r, true, false)),
						NPARAMS, r.types) == NULL)
			elog(ERROR, "could not prepare the expectation: %s", SPI_result_code_string(SPI_result));
		SPI_finish();
		medallion_restore_user(&save);
		AtEOXact_GUC(true, nestlevel);
	}

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_GETARG_DATUM(2);
	values[3] = CStringGetTextDatum(on_fail);
	medallion_catalog_enter(&gw);
	if (SPI_execute_with_args("INSERT INTO medallion.expectations (pipeline, name, check_sql, on_fail) "
							  "VALUES ($1, $2, $3, $4) ON CONFLICT (pipeline, name) DO UPDATE "
							  "SET check_sql = EXCLUDED.check_sql, on_fail = EXCLUDED.on_fail",
							  4, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the expectation");
	medallion_gateway_leave(&gw);
	PG_RETURN_VOID();
}
