/*-------------------------------------------------------------------------
 *
 * silver_run.c
 *	  A silver run: its window, its MERGE, its next watermark.
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
#include "silver/silver.h"

/* ---------------------------------------------------------------------------
 * Executing
 * ---------------------------------------------------------------------------
 */

void
silver_set_exclusions(SilverRun *r)
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

/*
 * Executes one statement of a run with the run's parameters.  Never
 * read_only: that would reuse the caller's statement snapshot, taken before
 * this run waited for the pipeline's lock and took its target snapshot.
 */
int
silver_exec(SilverRun *r, const char *sql, long limit)
{
	int			ret = SPI_execute_with_args(sql, NPARAMS, r->types, r->values, r->nulls,
											false, limit);

	if (ret < 0)
		elog(ERROR, "SPI_execute_with_args failed (%s) for: %s", SPI_result_code_string(ret), sql);
	return ret;
}


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
 * The watermark after a run: what is done is the rows
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
	r->c = silver_contract_get(p);
	r->source_table = p->source;
	dot = strchr(p->source, '.');
	r->qsource = quote_qualified_identifier(pnstrdup(p->source, dot - p->source), dot + 1);
	r->qtarget = quote_qualified_identifier("silver", p->relname);
	r->qtomb = r->c->delete_when ? silver_tombstone_table(p->relname) : NULL;
	silver_init_params(r);
	r->values[P_RUN - 1] = Int64GetDatum(run_id);
	r->nulls[P_RUN - 1] = ' ';
	r->values[P_DEF - 1] = JsonbPGetDatum(p->definition);
	r->nulls[P_DEF - 1] = ' ';
	silver_set_exclusions(r);
}

/*
 * Computes the window's xid bounds from its snapshots, as constants.
 */
static void
set_xid_bounds(SilverRun *r)
{
	bool		isnull;

	r->values[P_XMAX_TARGET - 1] = medallion_snapshot_xmax(r->values[P_TARGET - 1]);
	r->nulls[P_XMAX_TARGET - 1] = ' ';
	r->nulls[P_XMIN_PREV - 1] = 'n';
	r->nulls[P_XMAX_PREV - 1] = 'n';
	if (r->has_prev)
	{
		r->values[P_XMIN_PREV - 1] = medallion_snapshot_xmin(r->values[P_PREV - 1]);
		r->nulls[P_XMIN_PREV - 1] = ' ';
		r->values[P_XMAX_PREV - 1] = medallion_snapshot_xmax(r->values[P_PREV - 1]);
		r->nulls[P_XMAX_PREV - 1] = ' ';
		r->values[P_PREV_XIP - 1] = medallion_snapshot_xip(r->values[P_PREV - 1], &isnull);
		r->prev_has_xip = !isnull;
		r->nulls[P_PREV_XIP - 1] = isnull ? 'n' : ' ';
	}
}

/*
 * The window of a rebase: restored from another cluster, the watermark's
 * xids mean nothing here, so every row of the source is read once, by _seq
 * (arrival order), up to the last row there is when the rebase begins
 * (P_UNTIL, set by the run as the owner), max_rows_per_run at a time; the
 * watermark keeps the rebase's target snapshot, cursor and end until it is
 * done (rebase_watermark).  The target is this run's snapshot without its
 * own transaction, which may add rows after the run: rows not visible in it
 * are read by the runs after the rebase (those among them the rebase read
 * too are merged again, which changes nothing).
 */
static void
open_rebase(SilverRun *r, Watermark *wm)
{
	r->rebase = true;
	r->has_prev = r->has_partial = r->leftover = r->has_cursor = false;
	if (wm->has_until)
	{
		/* in progress: resumes after its cursor */
		r->values[P_TARGET - 1] = wm->target_snapshot;
		r->has_until = true;
		r->values[P_UNTIL - 1] = Int64GetDatum(wm->rebase_until);
		r->nulls[P_UNTIL - 1] = ' ';
		if (wm->has_resume)
		{
			r->has_cursor = true;
			r->values[P_CUR - 1] = Int64GetDatum(wm->resume_seq);
			r->nulls[P_CUR - 1] = ' ';
		}
	}
	else
	{
		FullTransactionId me = GetTopFullTransactionIdIfAny();
		Datum		target = medallion_current_snapshot();

		if (FullTransactionIdIsValid(me))
			target = medallion_snapshot_set_visible(target, FullTransactionIdGetDatum(me), false);
		r->values[P_TARGET - 1] = target;
	}
}

/*
 * A rebase beginning: its end is the last row of the source now (read as
 * the owner, after the target snapshot was taken, so every row visible in
 * that snapshot is at or below it).
 */
static void
rebase_set_until(SilverRun *r)
{
	bool		isnull;
	Datum		d;

	silver_exec(r, psprintf("SELECT pg_catalog.max(_seq) FROM %s", r->qsource), 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	r->has_until = true;
	r->values[P_UNTIL - 1] = isnull ? Int64GetDatum(0) : d;
	r->nulls[P_UNTIL - 1] = ' ';
}

/*
 * The watermark after a run of a rebase: done once its rows are (the
 * target snapshot is then what is done), else its target, cursor and end.
 */
static void
rebase_watermark(SilverRun *r, Watermark *wm, bool drained)
{
	memset(wm, 0, sizeof(Watermark));
	wm->found = true;
	if (drained)
	{
		wm->has_done = true;
		wm->done_snapshot = r->values[P_TARGET - 1];
		return;
	}
	wm->has_target = true;
	wm->target_snapshot = r->values[P_TARGET - 1];
	wm->has_resume = true;
	wm->resume_xid = FullTransactionIdGetDatum(InvalidFullTransactionId);
	wm->resume_seq = DatumGetInt64(r->values[P_HSEQ - 1]);
	wm->has_until = true;
	wm->rebase_until = DatumGetInt64(r->values[P_UNTIL - 1]);
}

/*
 * Reads the watermark and sets up the window of bronze rows a run reads.
 */
static void
open_window(SilverRun *r, Watermark *wm)
{
	medallion_watermark_load(r->p, wm);
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

	if (wm->rebase || wm->has_until)
		open_rebase(r, wm);
	set_xid_bounds(r);
}

/* The arrival time of the oldest row of a window, or 0 (as the owner). */
static TimestampTz
window_oldest(SilverRun *r)
{
	TimestampTz oldest = 0;
	bool		isnull;
	Datum		d;

	silver_exec(r, psprintf("SELECT pg_catalog.min(b._ingested_at) FROM (%s) b", silver_source_sql(r, false, false)), 1);
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
	{
		/* a copy: the cached contract is shared */
		Contract   *c = palloc(sizeof(Contract));

		*c = *r.c;
		c->delete_when = NULL;	/* not needed to tell which rows are there */
		r.c = c;
	}
	r.leftover = false;
	medallion_run_settings_push(r.c, &nestlevel);
	medallion_become_user(p->owner, &save);
	SPI_connect();
	(void) set_config_option("max_parallel_workers_per_gather", "0", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	oldest = window_oldest(&r);
	if (wm.has_target)
	{
		SilverRun	beyond = {0};
		TimestampTz later;

		/* the rows after the window: done is the window's target */
		beyond.p = p;
		beyond.c = r.c;
		beyond.cxt = r.cxt;
		beyond.qsource = r.qsource;
		silver_init_params(&beyond);
		silver_set_exclusions(&beyond);
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
 * Opens the run's change set when gold models read this table: the MERGE
 * notes the days of the columns they map through.  A column the MERGE
 * cannot note (not a stored date/time column of the contract) is unknown
 * for this run: its models refresh whole rather than miss a change.
 */
static void
open_changes(SilverRun *r)
{
	ListCell   *lc;
	int			slot = 0;

	r->changes = medallion_changeset_open(r->p->name, r->cxt);
	foreach(lc, medallion_changeset_columns(r->changes))
	{
		ColumnSpec *col = medallion_contract_column(r->c, lfirst(lc));

		if (col == NULL || silver_change_slot(r, col) != slot)
			medallion_changeset_forget(r->changes, slot);
		slot++;
	}
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
medallion_silver_run(Pipeline *p, int64 run_id, const char *kind, const MedallionReplay *replay,
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
	bool		empty;
	bool		keep_watermark;

	r.replay = (replay != NULL);
	r.replay_quarantine = (replay != NULL && replay->quarantine);
	setup_run(&r, p, run_id);
	open_changes(&r);
	ar = silver_active_run_register(&r);

	/* expectations, as the catalog owner (or as the run's lookup read them) */
	if (p->prefetch)
		r.expectations = p->prefetch->expectations;
	else
		r.expectations = silver_run_load_expectations(p, r.cxt);

	medallion_progress_phase("window", -1);
	if (r.replay)
		replay_rows = silver_load_replay_rows(&r, replay);
	else
	{
		open_window(&r, &wm);
	}

	medallion_run_settings_push(r.c, &nestlevel);
	medallion_become_user(p->owner, &save);
	SPI_connect();

	if (r.rebase && !r.has_until)
		rebase_set_until(&r);
	if (!r.replay && r.c->max_rows_per_run > 0)
	{
		/*
		 * In arrival order: rows a transaction adds later come after the
		 * cursor.  One row past the cap tells whether the window ends at it:
		 * a window of exactly the cap is drained by this run.
		 */
		silver_exec(&r, psprintf("SELECT _source_seq FROM (%s) b ORDER BY _source_seq OFFSET %lld LIMIT 2",
						  silver_source_sql(&r, false, false), (long long) (r.c->max_rows_per_run - 1)), 2);
		if (SPI_processed == 2)
		{
			bool		isnull;

			r.has_hi = true;
			drained = false;
			r.values[P_HSEQ - 1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			r.nulls[P_HSEQ - 1] = ' ';
		}
	}

	/*
	 * An empty window: no MERGE.  The probe is one index probe: in _xid
	 * order, so even its saved generic plan, which cannot see how narrow the
	 * xid range is, walks the (_xid, _seq) index and stops at the first row.
	 */
	ar->read = 0;
	ar->inserted = 0;
	if (medallion_exec_saved(psprintf("SELECT 1 FROM (%s) b ORDER BY b._xid LIMIT 1",
									  silver_source_sql(&r, false, false)),
							 NPARAMS, r.types, r.values, r.nulls, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not probe the window of pipeline \"%s\"", p->name);
	empty = (SPI_processed == 0);
	if (!empty)
		silver_drift_before_load(&r);
	/* rows to do: known when a bounded run stops at its bound */
	medallion_progress_phase("merge", r.has_hi ? r.c->max_rows_per_run : -1);
	if (!empty)
	{
		bool		slow = (r.expectations != NIL);

		if (!slow)
		{
			edata = silver_try_data(&r, silver_do_merge, &merged);
			slow = (edata != NULL);
		}
		/* (with delete markers, silver_do_merge's second statement reads the window too) */
		if (slow && r.expectations == NIL && r.qtomb == NULL && silver_merge_keeping(&r, &merged))
			slow = false;
		if (slow)
		{
			medallion_progress_phase("typing", -1);
			silver_find_untyped_rows(&r);
			if (r.expectations != NIL && silver_try_data(&r, silver_apply_expectations, counts) != NULL)
			{
				silver_find_failing_rows(&r);
				silver_apply_expectations(&r, counts);
			}
			medallion_progress_phase("merge", r.has_hi ? r.c->max_rows_per_run : -1);
			if (silver_try_data(&r, silver_do_merge, &merged) != NULL)
			{
				silver_find_failing_rows(&r);
				silver_do_merge(&r, &merged);
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
	if (!empty)
		silver_drift_check_bad_ratio(&r, counts->read);

	/*
	 * An empty window of a plain run leaves the watermark as it is: every
	 * row visible in the target snapshot is done, and a transaction still in
	 * progress (this run's own included) is invisible in both snapshots, so
	 * the next window is the same either way.  No write for nothing.
	 */
	keep_watermark = (empty && !r.replay && drained && r.has_prev && !r.has_partial &&
					  !r.has_cursor && !r.leftover && !r.rebase && !wm.has_target);
	if (!r.replay && !keep_watermark)
	{
		/* in the run's context: the snapshots must outlive this SPI connection */
		MemoryContext old = MemoryContextSwitchTo(r.cxt);

		if (r.rebase)
			rebase_watermark(&r, &wm, drained);
		else
			next_watermark(&r, &wm, drained);
		MemoryContextSwitchTo(old);
	}

	SPI_finish();
	medallion_restore_user(&save);
	AtEOXact_GUC(true, nestlevel);

	if (r.replay)
		counts->replayed = silver_finish_replay(&r, replay_rows);
	medallion_progress_phase("dlq", list_length(r.bad));
	silver_write_bad_rows(&r, counts);
	counts->unchanged = counts->read - counts->inserted - counts->updated - counts->dlq -
		counts->quarantined - counts->dropped;

	/* what changed, for the gold models reading this table (with the output) */
	if (merged > 0)
		medallion_changeset_write(r.changes, run_id);

	if (!r.replay && !keep_watermark)
	{
		medallion_watermark_save(p->name, &wm);
		if (!drained)
			request_next_run(p);
	}
	silver_active_run_unregister(ar);
	(void) kind;
}

/*
 * A pipeline's expectations (name, check_sql, on_fail), by name, as the
 * catalog owner; in cxt.
 */
List *
silver_run_load_expectations(Pipeline *p, MemoryContext cxt)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(p->name)};
	uint64		k;
	uint64		n;
	MedallionGateway gw;
	List	   *out = NIL;

	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec_saved("SELECT name, check_sql, on_fail FROM medallion.expectations "
									 "WHERE pipeline OPERATOR(pg_catalog.=) $1 ORDER BY name",
									 1, t, v, NULL, 0, SPI_OK_SELECT);
	for (k = 0; k < n; k++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);
		char	  **e = palloc(sizeof(char *) * 3);

		e[0] = SPI_getvalue(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 1);
		e[1] = SPI_getvalue(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 2);
		e[2] = SPI_getvalue(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 3);
		out = lappend(out, e);
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return out;
}

/* A run's setup and change set, for a backfill reading its own rows (src/backfill/). */
void
silver_run_setup(SilverRun *r, Pipeline *p, int64 run_id)
{
	setup_run(r, p, run_id);
}

void
silver_run_open_changes(SilverRun *r)
{
	open_changes(r);
}

/*
 * The watermark after a run that read every row visible in its target
 * snapshot (a full backfill, src/backfill/): done is that snapshot, less
 * the rows its own transaction may add yet.  As the owner, SPI connected.
 */
void
silver_run_next_watermark(SilverRun *r, Watermark *wm)
{
	memset(wm, 0, sizeof(Watermark));
	r->leftover = false;
	next_watermark(r, wm, true);
}
