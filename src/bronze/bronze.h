/*-------------------------------------------------------------------------
 *
 * bronze.h
 *	  Declarations private to the bronze room: tables, partitions,
 *	  redaction, retention, capture and ingestion.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEDALLION_BRONZE_H
#define MEDALLION_BRONZE_H

#include "medallion.h"

/* Suffix of a partition name: "_pYYYYMMDD". */
#define PARTITION_SUFFIX_LEN 10
#define BRONZE_MAX_NAME (NAMEDATALEN - 1 - PARTITION_SUFFIX_LEN)

/* tables.c */
extern Oid	medallion_bronze_create(const char *name, const char *source_system,
									Datum retention, bool retention_null,
									ArrayType *redact_keys, Jsonb *options,
									const char *description);
extern char *medallion_qualified_relname(Oid relid);
extern Oid	medallion_rel_owner(Oid relid);
extern void medallion_bronze_exec_ddl(const char *sql);

/* partitions.c */
extern void medallion_bronze_ensure_partitions(const BronzeTarget *target);
extern bool medallion_bronze_partition_day(const char *parent, const char *partname, int *day);

#endif							/* MEDALLION_BRONZE_H */
