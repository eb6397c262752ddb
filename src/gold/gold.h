/*-------------------------------------------------------------------------
 *
 * gold.h
 *	  Private declarations of the gold room: models (a query over silver and
 *	  gold tables), their partitions, refreshes and change records.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GOLD_H
#define GOLD_H

#include "medallion.h"
#include "nodes/parsenodes.h"
#include "nodes/primnodes.h"

/* SQLSTATEs of the gold room (MD010-MD019) */
#define MEDALLION_ERRCODE_GOLD_CYCLE		MAKE_SQLSTATE('M','D','0','1','0')
#define MEDALLION_ERRCODE_GOLD_NULL_PARTITION MAKE_SQLSTATE('M','D','0','1','1')

/* Longest model name: its partitions add "_pYYYYMMDD" (as bronze's). */
#define GOLD_PARTITION_SUFFIX_LEN 10
#define GOLD_MAX_NAME (NAMEDATALEN - 1 - GOLD_PARTITION_SUFFIX_LEN)

/* An upstream of a model and how its changes map to the model's partitions. */
typedef struct GoldUpstream
{
	char	   *pipeline;		/* 'silver.x' or 'gold.y' */
	char	   *column;			/* the upstream column partitions map through, or NULL */
	bool		widen;			/* a timestamptz seen through a time zone: +-1 day */
} GoldUpstream;

/* A model, as its definition (medallion.pipelines.definition) says. */
typedef struct GoldModel
{
	Pipeline   *p;
	Oid			relid;
	char	   *qrel;			/* quoted gold.<name> */
	char	   *query;
	char	   *partition_by;	/* an output column, or NULL */
	Oid			part_type;		/* DATEOID, TIMESTAMPOID, TIMESTAMPTZOID */
	bool		monthly;		/* granularity month (else day) */
	char	   *lookback;		/* an interval, or NULL */
	List	   *upstreams;		/* of GoldUpstream * (from medallion.dependencies) */
	Contract	settings;		/* only setting_names / setting_values */
	MemoryContext cxt;			/* lives as long as the run */
} GoldModel;

/* create.c */
extern void gold_parse_settings(Jsonb *options, Contract *settings);
extern Var *gold_partition_source(Query *q, TargetEntry *part, bool *exact);

/* descriptions.c: option columns, the output columns' descriptions */
typedef struct GoldColumnDoc
{
	char	   *column;
	char	   *description;	/* NULL: no comment */
} GoldColumnDoc;

extern List *gold_column_docs_parse(JsonbValue *v);
extern void gold_column_docs_check(List *docs, List *names, const char *pipeline);
extern void gold_column_docs_apply(Oid relid, List *docs);

/* pushdown.c */
extern char *gold_query_for_partitions(GoldModel *m, List *starts);

/* partitions.c: day or month partitions, by their first day */
extern char *gold_partition_name(const char *relname, int day);
extern char *gold_bound_literal(Oid part_type, int day);
extern int	gold_partition_start(int day, bool monthly);
extern int	gold_partition_end(int day, bool monthly);
extern void gold_ensure_partition(GoldModel *m, int day);

/* refresh.c */
extern void gold_model_load(Pipeline *p, GoldModel *m, bool need_table);

/* changes.c: change records and the model's watermark */
typedef struct GoldChanges
{
	bool		first;			/* no watermark yet: refresh everything */
	bool		whole;			/* a change that maps to no partition */
	List	   *days;			/* of int (days since 2000-01-01), upstream buckets mapped */
	TimestampTz oldest;			/* when the oldest unconsumed change was recorded */
} GoldChanges;

extern void gold_changes_read(GoldModel *m, Datum target, GoldChanges *out);
extern void gold_watermark_advance(GoldModel *m, Datum target);
extern TimestampTz gold_changes_oldest(GoldModel *m);

#endif							/* GOLD_H */
