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
/* A model whose query's output columns changed, not yet built (backfill full) */
#define MEDALLION_ERRCODE_GOLD_SHAPE_PENDING MAKE_SQLSTATE('M','D','0','1','2')

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
	char	   *insert_cols;	/* the table's columns: rows are written by name */
	char	   *select_cols;	/* the same, of the query's output "q" */
	MemoryContext cxt;			/* lives as long as the run */
} GoldModel;

/* An output column of a model: its name and SQL type (gold_column_type). */
typedef struct GoldColumn
{
	char	   *name;
	char	   *type;
} GoldColumn;

/* A model's query, validated (create_gold, alter_pipeline's "query"). */
typedef struct GoldDefinition
{
	char	   *pipeline;
	char	   *query;			/* the statement alone */
	char	   *partition_by;	/* or NULL */
	Oid			part_type;
	bool		monthly;
	char	   *lookback;
	char	   *description;
	Jsonb	   *options;		/* create_gold's options, as given (or NULL) */
	char	   *columns;		/* the table's column list, as SQL */
	List	   *shape;			/* of GoldColumn *, the query's output in order */
	List	   *upstreams;		/* of GoldUpstream * */
} GoldDefinition;

/* create.c */
extern void gold_parse_settings(Jsonb *options, Contract *settings);
extern char *gold_column_type(Oid typid, int32 typmod, Oid collation);
extern void gold_definition_validate(const char *pipeline, const char *query,
									 const char *partition_by, Jsonb *options,
									 GoldDefinition *d);
extern Jsonb *gold_definition_json(GoldDefinition *d);
extern void gold_dependencies_store(const char *pipeline, List *upstreams);
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

/* shape.c: output columns, of the definition and of the table */
extern List *gold_table_shape(Oid relid);
extern List *gold_definition_shape(Jsonb *def);
extern bool gold_shape_equal(List *a, List *b);
extern char *gold_shape_names(List *shape, const char *prefix);
extern void gold_shape_check(GoldModel *m);
extern void gold_shape_apply(Oid relid, List *to);

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
extern char *gold_ranges_sql(GoldModel *m, List *starts, const char *alias);
extern List *gold_range_starts(GoldModel *m, int from_day, int to_day);
extern void gold_ensure_partitions_for(GoldModel *m, const char *rows);
extern void gold_record_own_changes(GoldModel *m, int64 run_id, bool full, List *starts);

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
