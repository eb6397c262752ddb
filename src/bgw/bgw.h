/*-------------------------------------------------------------------------
 *
 * bgw.h
 *	  Private declarations of the background processes: the shared state
 *	  (shmem.c), the hooks (hooks.c), the launcher, the schedulers and the
 *	  run workers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEDALLION_BGW_H
#define MEDALLION_BGW_H

#include "medallion.h"

#include "datatype/timestamp.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"

#define MEDALLION_MAX_PROBES 16

/*
 * A database's slot: taken by its scheduler once it has found the extension
 * there (so only such databases use the MEDALLION_MAX_DATABASES slots), or
 * for the length of a command that holds the scheduler off.
 */
typedef struct MedallionDbSlot
{
	Oid			dboid;
	bool		has_extension;	/* a scheduler found the extension here */
	pid_t		scheduler_pid;	/* 0: none */
	struct Latch *scheduler_latch;
	uint64		wake_count;		/* bumped when data lands or a run is triggered */
	TimestampTz hold_until;		/* do not start a scheduler before */
	bool		stop_requested; /* a backend asked the launcher to stop it */
	TimestampTz last_start;		/* when the launcher last started one */
	pid_t		reaped_pid;		/* the last one the launcher saw gone */
} MedallionDbSlot;

typedef struct MedallionShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	struct Latch *launcher_latch;
	bool		rescan;			/* probe every database again */
	int			nprobes;		/* databases where CREATE EXTENSION committed */
	Oid			probes[MEDALLION_MAX_PROBES];
	int			running_workers;	/* run workers in the cluster */
	ConditionVariable scheduler_gone;	/* a scheduler exited */
	MedallionDbSlot dbs[MEDALLION_MAX_DATABASES];
} MedallionShared;

/* shmem.c */
extern MedallionShared *medallion_shared;
extern MedallionDbSlot *medallion_db_slot(Oid dboid, bool create);
extern void medallion_wake_launcher_for(Oid dboid);
extern void medallion_nudge_launcher(void);
extern void medallion_wake_scheduler(Oid dboid);
extern Oid	medallion_scheduler_stop(Oid dboid);
extern void medallion_scheduler_release(Oid dboid);

/* progress.c: the slots of runs in progress */
extern Size medallion_progress_shmem_size(void);
extern void medallion_progress_shmem_init(void);

/* register.c */
struct BackgroundWorkerHandle;
extern bool medallion_start_worker(const char *function, const char *type, const char *name,
								   Oid dboid, const char *extra,
								   struct BackgroundWorkerHandle **handle);

/* launcher.c, scheduler.c, worker.c */
extern char *medallion_installed_version(void);
extern void medallion_bgw_xact_begin(void);
extern void medallion_bgw_xact_commit(void);
extern PGDLLEXPORT void medallion_launcher_main(Datum arg);
extern PGDLLEXPORT void medallion_scheduler_main(Datum arg);
extern PGDLLEXPORT void medallion_worker_main(Datum arg);

/* delivery.c: the webhook delivery worker, and its start by the scheduler */
extern PGDLLEXPORT void medallion_delivery_main(Datum arg);
extern TimestampTz medallion_delivery_tick(TimestampTz now);
extern void medallion_delivery_terminate(void);
extern bool medallion_delivery_alive(void);

#endif							/* MEDALLION_BGW_H */
