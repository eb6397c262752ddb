/*-------------------------------------------------------------------------
 *
 * backfill.h
 *	  Private declarations of the backfill room: reprocessing a date range
 *	  (or the whole history) of a silver or gold pipeline.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKFILL_H
#define BACKFILL_H

#include "medallion.h"

/* SQLSTATEs of the backfill room (MD080-MD089) */
#define MEDALLION_ERRCODE_BACKFILL_LAYER		MAKE_SQLSTATE('M','D','0','8','0')
#define MEDALLION_ERRCODE_BACKFILL_OVER_BUDGET	MAKE_SQLSTATE('M','D','0','8','1')
#define MEDALLION_ERRCODE_BACKFILL_NOT_RETAINED	MAKE_SQLSTATE('M','D','0','8','2')
#define MEDALLION_ERRCODE_BACKFILL_INVALID		MAKE_SQLSTATE('M','D','0','8','3')

/* What a backfill was asked for. */
typedef struct BackfillRequest
{
	const char *pipeline;
	bool		whole;			/* NULL dates: the whole history */
	int			from_day;		/* days since 2000-01-01 (a DateADT) */
	int			to_day;
	const char *strategy;		/* partition, full, blue_green */
	bool		force;			/* over budget all the same */
	double		max_row_change; /* blue_green: tolerated change of the row count */
	List	   *checks;			/* blue_green: of char *, queries over "shadow" */
	const char *keep;			/* blue_green: how long the old version is kept */
	bool		async;			/* handed to a background worker, a day at a time */
} BackfillRequest;

/* No day: a partition not named by its day, a model without partitions. */
#define BACKFILL_NO_DAY PG_INT32_MIN

/* One day of a plan. */
typedef struct BackfillDay
{
	int			day;			/* days since 2000-01-01; whole model: BACKFILL_NO_DAY */
	int64		est_rows;
	const char *action;			/* recompute, skip, rebuild */
} BackfillDay;

typedef struct BackfillPlan
{
	List	   *days;			/* of BackfillDay *, in day order */
	int			ndays;			/* days with work */
	int64		est_rows;
	int			from_day;		/* the range, resolved (whole: the days held) */
	int			to_day;
} BackfillPlan;

/* plan.c */
extern void backfill_plan_make(const Pipeline *p, BackfillRequest *req, BackfillPlan *plan);
extern char *backfill_day_text(int day);

/* silver_partition.c */
extern void backfill_silver_partition(Pipeline *p, int64 run_id, const BackfillRequest *req,
									  const char *qtarget, RunCounts *counts, int64 *removed);

/* silver_partition.c: shared with silver_full.c (SilverRun: silver/silver.h) */
struct SilverRun;
extern Datum backfill_silver_rows_read(struct SilverRun *r);
extern int64 backfill_silver_mark_reprocessed(struct SilverRun *r, Datum seqs);
struct ActiveRun;
extern int64 backfill_silver_merge(struct SilverRun *r, struct ActiveRun *ar, RunCounts *counts);

/* silver_full.c */
extern void backfill_silver_full(Pipeline *p, int64 run_id, const BackfillRequest *req,
								 RunCounts *counts, int64 *removed);

/* swap.c */
extern void medallion_backfill_swap_heap(Oid target, Oid shadow);
extern uint64 medallion_backfill_swap_rows(Oid target, Oid shadow);

/* async.c */
extern void backfill_async_queue(const char *pipeline, int64 run_id, const BackfillPlan *plan);
extern int64 backfill_async_running(const char *pipeline, const char *detail_range);

/* blue_green.c */
extern void backfill_blue_green(Pipeline *p, int64 run_id, const BackfillRequest *req,
								RunCounts *counts, int64 *removed);
extern bool backfill_rollback(Pipeline *p);
extern void backfill_validate_as_owner(const BackfillRequest *req, const char *pipeline,
									   const char *qtarget, const char *qshadow);
extern void backfill_record_kept(const Pipeline *p, int64 run_id, Oid kept,
								 const BackfillRequest *req);

/* gold_rebuild.c */
extern int64 backfill_gold_rebuild(Pipeline *p, int64 run_id, const BackfillRequest *req);
extern void backfill_gold_swap_back(Oid target, Oid kept);


#endif							/* BACKFILL_H */
