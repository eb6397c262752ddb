/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Every setting of the medallion extension.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"
#include "utils/memutils.h"

#include "medallion.h"

/* Days of bronze partitions made ahead of today, so plain INSERT/COPY work. */
int			medallion_premake_days = 3;

/* Lets a superuser UPDATE or DELETE bronze rows (erasure requests). */
bool		medallion_allow_bronze_changes = false;

/* Run workers the cluster may run at once. */
int			medallion_max_workers = 4;

/* Run workers the pipelines of one owner may take at once, in a database. */
int			medallion_max_workers_per_owner = 3;

/* Asynchronous backfills the cluster may run at once. */
int			medallion_max_backfills = 2;

/* Days of run history and replayed DLQ rows kept by the scheduler. */
int			medallion_history_days = 30;

/* Largest single record ingest* accepts, in megabytes. */
int			medallion_max_payload_mb = 64;

/* Hosts and networks HTTP requests may go to (src/net/allow.c); empty: none. */
char	   *medallion_http_allowed_hosts = NULL;

/* Largest HTTP response body kept, in kilobytes (after decompression). */
int			medallion_http_max_response_kb = 10 * 1024;

/* Time one HTTP request may take, in milliseconds (connecting included). */
int			medallion_http_timeout = 30000;

/*
 * Defines the medallion.* settings and reserves the prefix, so that a typo
 * in a setting name is reported instead of silently ignored.
 */
void
medallion_guc_init(void)
{
	/*
	 * Superuser only: ingestion makes the partitions as the table's owner, so
	 * a session's value must not decide how many days someone else's table
	 * gets.
	 */
	DefineCustomIntVariable("medallion.premake_days",
							"Days of bronze partitions created ahead of today.",
							"Plain INSERT and COPY into a bronze table need the day's partition to exist.",
							&medallion_premake_days,
							3, 0, 366,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("medallion.max_record_size",
							"Largest single record that ingestion accepts.",
							"Larger records go to the dead-letter queue.",
							&medallion_max_payload_mb,
							64, 1, 1023,
							PGC_SUSET, GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("medallion.allow_bronze_changes",
							 "Lets a superuser update or delete rows of bronze tables.",
							 "Bronze tables are append-only; this is the door for erasure requests.",
							 &medallion_allow_bronze_changes,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("medallion.max_workers",
							"Run workers medallion may run at once in the cluster.",
							"They share max_worker_processes with parallel query, replication, pg_cron and the schedulers.",
							&medallion_max_workers,
							4, 1, 256,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("medallion.max_backfills",
							"Asynchronous backfills medallion may run at once in the cluster.",
							"Each takes a background worker until its last day is done; the others wait their turn.",
							&medallion_max_backfills,
							2, 0, 64,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("medallion.max_workers_per_owner",
							"Run workers the pipelines of one owner may take at once in a database.",
							"Keeps one owner's slow pipelines from taking every run worker; the cluster-wide limit is medallion.max_workers.",
							&medallion_max_workers_per_owner,
							3, 1, 256,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("medallion.history_days",
							"Days of run history and replayed DLQ rows the scheduler keeps.",
							NULL,
							&medallion_history_days,
							30, 1, 36500,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	/*
	 * The network settings are superuser only: the session that runs a pull
	 * (run() of one's own source) must not widen what it may reach.
	 */
	DefineCustomStringVariable("medallion.http_allowed_hosts",
							   "Hosts and networks that HTTP sources and webhooks may reach.",
							   "A comma-separated list of host names, *.domain, * (any host by name), addresses and networks (10.0.0.0/8). Empty allows nothing.",
							   &medallion_http_allowed_hosts,
							   "",
							   PGC_SUSET, GUC_LIST_INPUT,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("medallion.http_max_response_size",
							"Largest HTTP response body that is received.",
							"Counted as the body is decoded: a compressed body is limited by its decoded size.",
							&medallion_http_max_response_kb,
							10 * 1024, 1, (int) (MaxAllocSize / 1024) - 1,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("medallion.http_timeout",
							"Time one HTTP request may take, connecting included.",
							"A source's timeout option may only shorten it.",
							&medallion_http_timeout,
							30000, 100, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("medallion");
}
