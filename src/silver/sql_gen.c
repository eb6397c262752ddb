/*-------------------------------------------------------------------------
 *
 * sql_gen.c
 *	  The SQL of a silver run: reading the window, typing, deduplicating,
 *	  merging.
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
#include "utils/syscache.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/xid8.h"

#include "medallion.h"
#include "silver/silver.h"

/* ---------------------------------------------------------------------------
 * SQL generation
 * ---------------------------------------------------------------------------
 */

const char *
silver_qcol(const char *name)
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

/* typed_sql for alter_contract's USING clauses */
char *
silver_typed_sql(ColumnSpec *col, const char *val)
{
	return typed_sql(col, val);
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
 * The window's visibility test: medallion.in_window (which the planner
 * knows keeps the window's rows), or on a catalog not updated to 0.2.0 yet,
 * pg_visible_in_snapshot itself.
 */
static const char *
in_window_function(void)
{
	Oid			nsp = get_namespace_oid("medallion", true);
	Oid			args[2] = {XID8OID, PG_SNAPSHOTOID};

	if (OidIsValid(nsp) &&
		SearchSysCacheExists3(PROCNAMEARGSNSP, CStringGetDatum("in_window"),
							  PointerGetDatum(buildoidvector(args, 2)), ObjectIdGetDatum(nsp)))
		return "medallion.in_window";
	return "pg_catalog.pg_visible_in_snapshot";
}

/*
 * The rows a statement reads: the window of bronze (or a backfill's rows), or the replayed DLQ
 * rows, with _source_seq, _batch_id, _raw and _is_delete, minus the rows
 * left out.  "range" adds the (xid, seq) bounds of a bisection step.
 */
char *
silver_source_sql(SilverRun *r, bool with_exclusions, bool range)
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
	else if (r->backfill_where)
		appendStringInfo(&buf,
						 "SELECT b._seq AS _source_seq, b._batch_id, b._raw, b._xid, b._ingested_at, "
						 "COALESCE((%s\n), false) AS _is_delete FROM %s b WHERE (%s)",
						 r->c->delete_when ? r->c->delete_when : "false", r->qsource, r->backfill_where);
	else if (r->rebase)
	{
		/*
		 * Restored rows carry another cluster's xids: a rebase reads them by
		 * _seq, up to the last row there was when it began, from its cursor.
		 */
		appendStringInfo(&buf,
						 "SELECT b._seq AS _source_seq, b._batch_id, b._raw, b._xid, b._ingested_at, "
						 "COALESCE((%s\n), false) AS _is_delete FROM %s b WHERE true",
						 r->c->delete_when ? r->c->delete_when : "false", r->qsource);
		if (r->has_until)
			appendStringInfo(&buf, " AND b._seq OPERATOR(pg_catalog.<=) $%d", P_UNTIL);
		if (r->has_cursor)
			appendStringInfo(&buf, " AND b._seq OPERATOR(pg_catalog.>) $%d", P_CUR);
		if (r->has_hi)
			appendStringInfo(&buf, " AND b._seq OPERATOR(pg_catalog.<=) $%d", P_HSEQ);
	}
	else
	{
		appendStringInfo(&buf,
						 "SELECT b._seq AS _source_seq, b._batch_id, b._raw, b._xid, b._ingested_at, "
						 "COALESCE((%s\n), false) AS _is_delete FROM %s b "
						 "WHERE b._xid OPERATOR(pg_catalog.<) $%d "
						 "AND %s(b._xid, $%d)",
						 r->c->delete_when ? r->c->delete_when : "false", r->qsource, P_XMAX_TARGET,
						 in_window_function(), P_TARGET);

		/*
		 * The xid bounds are constants (computed once per run), so the
		 * planner sees how narrow the range is: an index range scan over
		 * the new transactions, not a scan of the table.  The lower bound is
		 * implied by the PgQ-style condition that follows.
		 */
		/*
		 * Not visible in done: at or above its xmax, or in progress for it.
		 * xmax and the list of those in progress are constants too, and the
		 * OR only there when the list is not empty: ARRAY(SELECT
		 * pg_snapshot_xip()) is an InitPlan the planner cannot estimate, nor
		 * a comparison with pg_snapshot_xmax().  (medallion.in_window() and
		 * count_read() tell the planner they keep every row: with the default
		 * of a third each, a window of 200k rows was estimated at 6k, and the
		 * MERGE hashed it and updated in hash order.)
		 */
		if (r->has_prev && r->prev_has_xip)
			appendStringInfo(&buf,
							 " AND b._xid OPERATOR(pg_catalog.>=) $%d"
							 " AND (b._xid OPERATOR(pg_catalog.>=) $%d "
							 "OR b._xid OPERATOR(pg_catalog.=) ANY ($%d))",
							 P_XMIN_PREV, P_XMAX_PREV, P_PREV_XIP);
		else if (r->has_prev)
			appendStringInfo(&buf, " AND b._xid OPERATOR(pg_catalog.>=) $%d", P_XMAX_PREV);
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
	if (r->typed_rows_only)
		return psprintf("SELECT * FROM (%s) w WHERE medallion.silver_check(w._raw, $%d, w._is_delete) IS NULL",
						buf.data, P_DEF);
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

/* Whether typing_only computes a column: a key or the event_time column. */
static bool
typing_needs(Contract *c, ColumnSpec *col)
{
	return col->is_key || (c->event_time && strcmp(c->event_time, col->name) == 0);
}

/*
 * The typed, computed and checked rows (L1 typed, L2 expressions, L3 checks
 * and PII), one per source row, with the lineage columns.
 */
char *
silver_checked_sql(SilverRun *r, bool with_exclusions, bool range)
{
	Contract   *c = r->c;
	StringInfoData l1,
				l2,
				l3;
	ListCell   *lc;
	bool		typing_all = false;

	initStringInfo(&l1);
	initStringInfo(&l2);
	initStringInfo(&l3);
	appendStringInfoString(&l1, "SELECT l0._source_seq, l0._batch_id, l0._raw, l0._xid, l0._is_delete");
	appendStringInfoString(&l2, "SELECT l1._source_seq, l1._batch_id, l1._raw, l1._xid, l1._is_delete");
	appendStringInfoString(&l3, "SELECT l2._source_seq, l2._batch_id, l2._raw, l2._xid, l2._is_delete");

	/*
	 * typing_only (a backfill's keys): only the key and event_time columns
	 * are computed; the others too only when one of those is an expression,
	 * which may read any column.  A bad value elsewhere then fails nothing.
	 */
	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		typing_all |= (col->expr != NULL && typing_needs(c, col));
	}
	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);
		char	   *val;
		char	   *typed;
		char	   *v;
		char	   *qtype = qtype_name(col->typid, col->typmod);

		if (r->typing_only && !typing_all && !typing_needs(c, col))
		{
			appendStringInfo(&l1, ",\n NULL::%s AS %s", qtype, silver_qcol(col->name));
			appendStringInfo(&l2, ", l1.%s", silver_qcol(col->name));
			appendStringInfo(&l3, ", l2.%s", silver_qcol(col->name));
			continue;
		}

		/* L1: extract and cast */
		val = extract_sql(col);
		if (col->default_value)
			val = psprintf("COALESCE(%s, %s)", val,
						   col->is_json ? psprintf("%s::pg_catalog.jsonb", quote_literal_cstr(col->default_value))
						   : psprintf("%s::pg_catalog.text", quote_literal_cstr(col->default_value)));
		if (silver_is_datetime_type(col->typid))
			val = psprintf("medallion.check_datetime(%s, %s::pg_catalog.text)", val, quote_literal_cstr(col->name));
		typed = typed_sql(col, val);
		if (!is_version_column(c, col))
			typed = psprintf("CASE WHEN l0._is_delete THEN NULL ELSE %s END", typed);
		appendStringInfo(&l1, ",\n %s AS %s", typed, silver_qcol(col->name));
		if (r->only_column && strcmp(r->only_column, col->name) != 0)
			continue;

		/* L2: the expression, over the typed columns */
		if (col->expr && (!r->typing_only || typing_needs(c, col)))
			appendStringInfo(&l2, ",\n CASE WHEN l1._is_delete THEN NULL ELSE %s END AS %s",
							 typed_sql(col, psprintf("(%s\n)", col->expr)), silver_qcol(col->name));
		else
			appendStringInfo(&l2, ", l1.%s", silver_qcol(col->name));

		if (r->typing_only)
		{
			/* the typed value a run would check and store (a backfill's key matching) */
			appendStringInfo(&l3, ", l2.%s", silver_qcol(col->name));
			continue;
		}

		/*
		 * L3: checks on the final value, then PII.  Each check returns its
		 * value or raises: not volatile, so the planner flattens this query
		 * (the DISTINCT ON key then has statistics: a CASE around the
		 * volatile contract_violation() made it "200 rows", and the MERGE a
		 * hash join spilling to disk), and each value is computed once (a
		 * CASE repeats its expression).
		 */
		v = psprintf("l2.%s", silver_qcol(col->name));
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
						 v, qref, silver_qcol(col->ref_column), v, quote_literal_cstr(col->name),
						 quote_literal_cstr(psprintf("%s.%s", col->ref_table, col->ref_column)));
		}
		if (col->pii && strcmp(col->pii, "drop") == 0)
		{
			/* checked, then not kept: evaluate for its checks only */
			appendStringInfo(&l3, ",\n (%s) IS NULL AS %s", v, silver_qcol(psprintf("_dropped_%s", col->name)));
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
		appendStringInfo(&l3, ",\n %s AS %s", v, silver_qcol(col->name));
	}

	return psprintf("%s\nFROM (%s\nFROM (%s\nFROM (%s) l0) l1) l2",
					l3.data, l2.data, l1.data, silver_source_sql(r, with_exclusions, range));
}

/*
 * The stored type of a column (PII hash and mask store text).
 */
char *
silver_stored_type(ColumnSpec *col)
{
	if (col->pii && (strcmp(col->pii, "hash") == 0 || strcmp(col->pii, "hash_v1") == 0 ||
					 strcmp(col->pii, "mask") == 0))
		return "pg_catalog.text";
	return qtype_name(col->typid, col->typmod);
}

bool
silver_is_stored(ColumnSpec *col)
{
	return !(col->pii && strcmp(col->pii, "drop") == 0);
}

/*
 * The table keeping the newest delete of each deleted key, so that an older
 * version arriving later does not bring the key back (delete_when only).
 */
char *
silver_tombstone_table(const char *relname)
{
	return quote_qualified_identifier("silver", psprintf("_%s_deleted", relname));
}

/*
 * The version comparison "a is newer than b" of two row aliases.
 */
static char *
newer_than(Contract *c, const char *a, const char *b, bool or_equal)
{
	const char *op = or_equal ? "OPERATOR(pg_catalog.>=)" : "OPERATOR(pg_catalog.>)";

	if (c->order_by)
		return psprintf("(%s.%s, %s._source_seq) %s (%s.%s, %s._source_seq)",
						a, silver_qcol(c->order_by), a, op, b, silver_qcol(c->order_by), b);
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
		appendStringInfo(&keys, "%s%s", keys.len ? ", " : "", silver_qcol(lfirst(lc)));

	/*
	 * Only what the MERGE needs goes through the sort, not the payload: every
	 * checked column (a dropped PII column as its check marker), the lineage.
	 */
	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		appendStringInfo(&cols, "s.%s, ",
						 silver_is_stored(col) ? silver_qcol(col->name) : silver_qcol(psprintf("_dropped_%s", col->name)));
	}
	return psprintf("SELECT DISTINCT ON (%s) %ss._source_seq, s._batch_id, s._is_delete "
					"FROM (%s) s ORDER BY %s, %s%s_source_seq DESC",
					keys.data, cols.data, silver_checked_sql(r, true, false), keys.data,
					c->order_by ? silver_qcol(c->order_by) : "", c->order_by ? " DESC, " : "");
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
char *
silver_tombstone_sql(SilverRun *r)
{
	Contract   *c = r->c;
	StringInfoData keys;
	ListCell   *lc;
	const char *ob = c->order_by ? psprintf("%s, ", silver_qcol(c->order_by)) : "";

	initStringInfo(&keys);
	foreach(lc, c->unique_key)
		appendStringInfo(&keys, "%s%s", keys.len ? ", " : "", silver_qcol(lfirst(lc)));
	return psprintf("INSERT INTO %s AS t (%s, %s_source_seq, _run_id) "
					"SELECT %s, %s_source_seq, $%d FROM (%s) w WHERE w._is_delete "
					"ON CONFLICT (%s) DO UPDATE SET %s_source_seq = EXCLUDED._source_seq, _run_id = EXCLUDED._run_id "
					"WHERE %s",
					r->qtomb, keys.data, ob, keys.data, ob, P_RUN, winners_sql(r), keys.data,
					c->order_by ? psprintf("%s = EXCLUDED.%s, ", silver_qcol(c->order_by), silver_qcol(c->order_by)) : "",
					newer_than(c, "EXCLUDED", "t", false));
}

/*
 * The change-record slot of a column (some gold model maps its partitions
 * through it), or -1.  Only stored date/time columns: a PII column is
 * stored as text, and its models refresh whole (its key is then missing
 * from the run's change record).
 */
int
silver_change_slot(SilverRun *r, ColumnSpec *col)
{
	ListCell   *lc;
	int			slot = 0;

	foreach(lc, medallion_changeset_columns(r->changes))
	{
		if (strcmp(lfirst(lc), col->name) == 0)
		{
			if (col->pii == NULL && silver_is_stored(col) &&
				(col->typid == DATEOID || col->typid == TIMESTAMPOID || col->typid == TIMESTAMPTZOID))
				return slot;
			return -1;
		}
		slot++;
	}
	return -1;
}

/*
 * The MERGE of a run: dedup by key (latest (order_by, _seq) wins), newer
 * versions update, new keys insert, delete markers delete.
 */
char *
silver_merge_sql(SilverRun *r)
{
	Contract   *c = r->c;
	StringInfoData keys,
				on,
				set,
				cols,
				vals,
				noted;
	char	   *newer;
	char	   *not_deleted = "";
	ListCell   *lc;

	initStringInfo(&keys);
	initStringInfo(&on);
	initStringInfo(&set);
	initStringInfo(&cols);
	initStringInfo(&vals);
	initStringInfo(&noted);
	foreach(lc, c->unique_key)
	{
		const char *k = silver_qcol(lfirst(lc));

		appendStringInfo(&keys, "%s%s", keys.len ? ", " : "", k);
		appendStringInfo(&on, "%stgt.%s OPERATOR(pg_catalog.=) src.%s", on.len ? " AND " : "", k, k);
	}
	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);
		int			slot = silver_change_slot(r, col);

		if (!silver_is_stored(col))
			continue;
		appendStringInfo(&cols, "%s, ", silver_qcol(col->name));
		if (slot < 0)
		{
			appendStringInfo(&vals, "src.%s, ", silver_qcol(col->name));
			if (!col->is_key)
				appendStringInfo(&set, "%s = src.%s, ", silver_qcol(col->name), silver_qcol(col->name));
			continue;
		}

		/*
		 * A column some gold model maps through: its old and new values'
		 * days are noted as the row is written (change records).
		 */
		appendStringInfo(&vals, "medallion.change_note(%d, NULL::%s, src.%s), ",
						 slot, silver_stored_type(col), silver_qcol(col->name));
		appendStringInfo(&set, "%s = medallion.change_note(%d, tgt.%s, src.%s), ",
						 silver_qcol(col->name), slot, silver_qcol(col->name), silver_qcol(col->name));
		appendStringInfo(&noted, " AND medallion.change_note(%d, tgt.%s, NULL::%s) IS NULL",
						 slot, silver_qcol(col->name), silver_stored_type(col));
	}
	newer = newer_than(c, "src", "tgt", false);
	if (r->qtomb)
	{
		StringInfoData tk;

		initStringInfo(&tk);
		foreach(lc, c->unique_key)
			appendStringInfo(&tk, " AND d.%s OPERATOR(pg_catalog.=) src.%s", silver_qcol(lfirst(lc)), silver_qcol(lfirst(lc)));
		not_deleted = psprintf(" AND NOT EXISTS (SELECT 1 FROM %s d WHERE true%s AND %s)",
							   r->qtomb, tk.data, newer_than(c, "d", "src", true));
	}

	return psprintf("MERGE INTO %s AS tgt USING (%s) AS src ON %s\n"
					"WHEN MATCHED AND src._is_delete AND %s%s THEN DELETE\n"
					"WHEN MATCHED AND NOT src._is_delete AND %s THEN UPDATE SET %s"
					"_source_seq = src._source_seq, _batch_id = src._batch_id, "
					"_loaded_at = pg_catalog.now(), _run_id = $%d\n"
					"WHEN NOT MATCHED AND NOT src._is_delete%s THEN INSERT (%s_source_seq, _batch_id, _run_id, _created_run_id) "
					"VALUES (%ssrc._source_seq, src._batch_id, $%d, medallion.count_insert($%d))",
					r->qtarget, counted_winners_sql(r), on.data,
					newer, noted.data, newer, set.data, P_RUN, not_deleted, cols.data, vals.data, P_RUN, P_RUN);
}

/*
 * Sets up the parameters of a run's statements, all NULL.
 */
void
silver_init_params(SilverRun *r)
{
	static const Oid types[NPARAMS] = {
		PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID, INT8OID, INT8OID,
		INT8ARRAYOID, INT8OID, JSONBOID, JSONBARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
		XID8OID, INT8OID, XID8OID, INT8OID, XID8OID, XID8OID, XID8ARRAYOID, XID8OID, INT8OID
	};

	memcpy(r->types, types, sizeof(types));
	memset(r->nulls, 'n', sizeof(r->nulls));
}
