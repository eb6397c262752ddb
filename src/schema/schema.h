/*-------------------------------------------------------------------------
 *
 * schema.h
 *	  Declarations private to the schema room (src/schema/): the DDL watch
 *	  on tracked relations and the snapshots of their columns.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEDALLION_SCHEMA_H
#define MEDALLION_SCHEMA_H

#include "medallion.h"

/* One column of a relation, as medallion.column_snapshot() describes it. */
typedef struct ColumnState
{
	int			attnum;
	char	   *name;
	Oid			type;
	char	   *typname;		/* qualified, to compare types across a restore */
	char	   *format;			/* format_type(type, typmod), for people */
	int32		typmod;
	bool		notnull;
	bool		hasdef;
	bool		dropped;
} ColumnState;

typedef enum ChangeClass
{
	CHANGE_SAFE,
	CHANGE_WARNING,
	CHANGE_BREAKING
} ChangeClass;

/* One schema change found in a DDL statement (a medallion.schema_changes row). */
typedef struct SchemaChange
{
	const char *change;			/* column_added, column_dropped, ... */
	ChangeClass class;
	char	   *path;			/* the column, or NULL for the table */
	char	   *detail;			/* a JSON object, as text */
	char	   *describe;		/* one sentence for people */
} SchemaChange;

/* column_diff.c */
extern List *medallion_column_diff(ColumnState *old, int nold, ColumnState *new, int nnew);
extern const char *medallion_change_class_name(ChangeClass class);
extern SchemaChange *medallion_table_change(const char *change, const char *relation,
											const char *new_name);

/* ddl_changes.c: what a DDL statement on a tracked relation did, recorded */
extern void medallion_ddl_changes_apply(Oid relid, bool table_dropped, const char *tag);

/* ddl_watch.c: the tracked relations and their snapshots */
extern void medallion_column_snapshots_sync(void);
extern void medallion_column_snapshots_refresh(void);
extern void medallion_tracked_relations_changed(void);

#endif							/* MEDALLION_SCHEMA_H */
