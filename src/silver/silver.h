/*-------------------------------------------------------------------------
 *
 * silver.h
 *	  Private declarations of the silver room.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SILVER_H
#define SILVER_H

#include "medallion.h"

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
#define P_XMAX_PREV 20			/* xid8: xmax of the previous snapshot */
#define P_UNTIL		21			/* int8: a rebase re-reads the rows up to that _seq */
#define NPARAMS		21

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
	bool		has_until;		/* P_UNTIL set: a rebase's rows end there */
	bool		replay_quarantine;	/* a replay of quarantined rows, not dead letters */
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
	struct ActiveRun *ar;		/* its registration (active_run.c) */
	MedallionChangeSet *changes;	/* change records for gold models, or NULL */
	double		max_bad_ratio;	/* options.max_bad_ratio; < 0: unset */
	const char *backfill_where; /* a backfill: the bronze rows it reads (over b), or NULL */
	bool		typing_only;	/* checked_sql types and computes, without checks nor PII (backfill keys) */
	bool		typed_rows_only;	/* source_sql keeps only the rows silver_check accepts */
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
	PayloadKeys *keys;			/* payload_keys_note's registry batch, or NULL */
} ActiveRun;

typedef void (*TryFn) (SilverRun *r, void *arg);

/* Longest silver name that leaves room for its tombstone table's. */
#define SILVER_MAX_NAME_WITH_DELETES (NAMEDATALEN - 1 - 9)

/* contract_parse.c */
extern Contract *medallion_contract_parse(Jsonb *definition, bool validate);
extern bool silver_is_datetime_type(Oid typid);

/* contract_cache.c: parsed once per backend and version; shared, read-only */
extern Contract *silver_contract_get(const Pipeline *p);
extern void silver_reject_relative_datetime(const char *s, const char *column);

/* active_run.c */
extern void medallion_active_run_check(const char *function);

/* active_run.c */
extern ActiveRun *silver_active_run_register(SilverRun *r);
extern void silver_active_run_unregister(ActiveRun *ar);
extern void silver_flush_kept(ActiveRun *ar);
extern bool silver_active_run_exists(void);
extern Contract *silver_active_run_contract(Jsonb *definition);

/* slow_path.c */
extern void silver_apply_expectations(SilverRun *r, void *arg);
extern void silver_do_merge(SilverRun *r, void *arg);
extern void silver_find_failing_rows(SilverRun *r);
extern void silver_find_untyped_rows(SilverRun *r);
extern int64 silver_insert_dlq_rows(SilverRun *r, List *rows);
extern bool silver_merge_keeping(SilverRun *r, int64 *merged);
extern ErrorData *silver_try_data(SilverRun *r, TryFn fn, void *arg);
extern void silver_write_bad_rows(SilverRun *r, RunCounts *counts);

/* sql_gen.c */
extern char *silver_checked_sql(SilverRun *r, bool with_exclusions, bool range);
extern int	silver_change_slot(SilverRun *r, ColumnSpec *col);
extern void silver_init_params(SilverRun *r);
extern bool silver_is_stored(ColumnSpec *col);
extern char *silver_merge_sql(SilverRun *r);
extern const char *silver_qcol(const char *name);
extern char *silver_source_sql(SilverRun *r, bool with_exclusions, bool range);
extern char *silver_stored_type(ColumnSpec *col);
extern char *silver_tombstone_sql(SilverRun *r);
extern char *silver_tombstone_table(const char *relname);
extern char *silver_typed_sql(ColumnSpec *col, const char *val);

/* drift_window.c: payload drift, judged on the run's window */
extern void silver_drift_before_load(SilverRun *r);
extern void silver_drift_check_bad_ratio(SilverRun *r, int64 read);

/* silver_run.c */
extern int silver_exec(SilverRun *r, const char *sql, long limit);
extern void silver_run_setup(SilverRun *r, Pipeline *p, int64 run_id);
extern void silver_run_open_changes(SilverRun *r);
extern List *silver_run_load_expectations(Pipeline *p, MemoryContext cxt);
extern void silver_set_exclusions(SilverRun *r);
extern void silver_run_next_watermark(SilverRun *r, Watermark *wm);

/* replay.c */
extern int64 silver_finish_replay(SilverRun *r, List *rows);
extern List *silver_load_replay_rows(SilverRun *r, const MedallionReplay *replay);

/* ddl.c: names that must become table or column names of ours */
typedef enum MedallionNameKind
{
	MEDALLION_NAME_SILVER,
	MEDALLION_NAME_SILVER_DELETES,
	MEDALLION_NAME_COLUMN,
} MedallionNameKind;
extern void medallion_check_name(MedallionNameKind kind, const char *name, int max_len);
extern List *silver_check_references(Contract *c);
extern void silver_plan_contract(Contract *c, const char *qsource, const char *qtarget,
								 const char *qtomb, Oid role, const char *pipeline);
extern void silver_plan_expectation(Contract *c, const char *source, Oid owner,
									const char *pipeline, const char *check_sql);

#endif							/* SILVER_H */
