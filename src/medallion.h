/*-------------------------------------------------------------------------
 *
 * medallion.h
 *	  Declarations shared by the subsystems of the medallion extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEDALLION_H
#define MEDALLION_H

#include "postgres.h"

#include "utils/jsonb.h"

/* guc.c */
extern int	medallion_premake_days;
extern int	medallion_max_payload_mb;
extern bool medallion_allow_bronze_changes;
extern void medallion_guc_init(void);

/* catalog.c: everything that reads or writes medallion.* tables */
typedef struct MedallionUserContext
{
	Oid			saved_userid;
	int			saved_sec_context;
} MedallionUserContext;

extern Oid	medallion_catalog_owner(void);
extern void medallion_become_user(Oid role, MedallionUserContext *save);
extern void medallion_restore_user(MedallionUserContext *save);
extern void medallion_catalog_add_pipeline(const char *name, const char *layer,
										   const char *relname, Oid owner,
										   const char *source_system,
										   Datum retention, bool retention_null,
										   Jsonb *options, const char *description);
extern bool medallion_catalog_claim_batch(const char *pipeline, const char *batch_id,
										  const char *file_name);
extern void medallion_catalog_finish_batch(const char *pipeline, const char *batch_id,
										   int64 rows_landed, int64 rows_dlq);
extern char *medallion_pipeline_name(const char *layer, const char *relname);

/* dlq.c: dead-letter rows */
typedef struct MedallionDlqEntry
{
	const char *pipeline;
	const char *payload;		/* exactly as it came; may be NULL */
	int			payload_len;
	const char *error_message;
	const char *error_type;
	const char *sqlstate;
	const char *field;
	const char *source_table;
	int64		source_seq;		/* 0 when not from a bronze row */
	int64		run_id;			/* 0 when not from a run */
	const char *batch_id;
	const char *file_name;
	int64		line_number;	/* 0 when unknown */
} MedallionDlqEntry;

extern void medallion_dlq_add(const MedallionDlqEntry *entry);

/* bronze.c */
typedef struct BronzeTarget
{
	Oid			relid;
	Oid			owner;
	char	   *relname;
	char	   *pipeline;		/* 'bronze.<relname>' */
} BronzeTarget;

extern void medallion_bronze_open(Oid relid, BronzeTarget *target);
extern void medallion_bronze_ensure_partitions(const BronzeTarget *target);
extern Oid	medallion_bronze_create(const char *name, const char *source_system,
									Datum retention, bool retention_null,
									ArrayType *redact_keys, Jsonb *options,
									const char *description);
extern void medallion_check_name(const char *what, const char *name, int max_len);

#endif							/* MEDALLION_H */
