/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared state of medallion's background processes, and the wake-ups
 *	  between them.
 *
 * One slot per database whose scheduler found the extension there (at most
 * MEDALLION_MAX_DATABASES): its pid and latch, and a wake counter that
 * ingestion bumps after commit for 'on_change' pipelines.  The launcher
 * learns of CREATE EXTENSION here too.
 *
 * A backend that needs a database's scheduler gone (DROP DATABASE and the
 * like, see hooks.c) asks the launcher, which started the scheduler, through
 * the slot, and waits on a condition variable.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "bgw/bgw.h"

MedallionShared *medallion_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* How long a backend waits for a scheduler to stop. */
#define STOP_WAIT_MS 10000

static void
medallion_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(MedallionShared)));
	RequestAddinShmemSpace(MAXALIGN(medallion_progress_shmem_size()));
	RequestNamedLWLockTranche("medallion", 1);
}

static void
medallion_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	medallion_shared = ShmemInitStruct("medallion", sizeof(MedallionShared), &found);
	if (!found)
	{
		memset(medallion_shared, 0, sizeof(MedallionShared));
		medallion_shared->lock = &(GetNamedLWLockTranche("medallion"))->lock;
		ConditionVariableInit(&medallion_shared->scheduler_gone);
	}
	medallion_progress_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The slot of a database, or NULL.  Caller holds the lock.
 */
MedallionDbSlot *
medallion_db_slot(Oid dboid, bool create)
{
	int			i;
	MedallionDbSlot *free_slot = NULL;

	for (i = 0; i < MEDALLION_MAX_DATABASES; i++)
	{
		MedallionDbSlot *s = &medallion_shared->dbs[i];

		if (s->dboid == dboid)
			return s;
		if (s->dboid == InvalidOid && free_slot == NULL)
			free_slot = s;
	}
	if (create && free_slot)
	{
		memset(free_slot, 0, sizeof(MedallionDbSlot));
		free_slot->dboid = dboid;
		return free_slot;
	}
	return NULL;
}

/*
 * Whether a database has, or can get, a scheduler slot: false when every
 * slot is taken by other databases (schedule() and trigger() warn).
 */
bool
medallion_db_slot_available(Oid dboid)
{
	bool		available = false;
	int			i;

	if (medallion_shared == NULL)
		return true;
	LWLockAcquire(medallion_shared->lock, LW_SHARED);
	for (i = 0; i < MEDALLION_MAX_DATABASES && !available; i++)
	{
		MedallionDbSlot *s = &medallion_shared->dbs[i];

		if (s->dboid == dboid || s->dboid == InvalidOid)
			available = true;
	}
	LWLockRelease(medallion_shared->lock);
	return available;
}

/*
 * Sets the launcher's latch, without a rescan.
 */
void
medallion_nudge_launcher(void)
{
	Latch	   *latch;

	LWLockAcquire(medallion_shared->lock, LW_SHARED);
	latch = medallion_shared->launcher_latch;
	LWLockRelease(medallion_shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Wakes the launcher to start a scheduler in one database (the extension
 * was created there); with too many such requests at once, every database.
 */
void
medallion_wake_launcher_for(Oid dboid)
{
	int			i;
	bool		known = false;

	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < medallion_shared->nprobes; i++)
		if (medallion_shared->probes[i] == dboid)
			known = true;
	if (!known)
	{
		if (medallion_shared->nprobes < MEDALLION_MAX_PROBES)
			medallion_shared->probes[medallion_shared->nprobes++] = dboid;
		else
			medallion_shared->rescan = true;
	}
	LWLockRelease(medallion_shared->lock);
	medallion_nudge_launcher();
}

/*
 * Wakes this database's scheduler now: data landed, a run was triggered.
 */
void
medallion_wake_scheduler(Oid dboid)
{
	MedallionDbSlot *slot;
	Latch	   *latch = NULL;

	if (medallion_shared == NULL)
		return;
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	slot = medallion_db_slot(dboid, false);
	if (slot)
	{
		slot->wake_count++;
		latch = slot->scheduler_latch;
	}
	LWLockRelease(medallion_shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Whether this database is served by a scheduler: its own is running, or
 * the launcher is, which starts (or restarts) it and which it will find
 * the requests of schedule() and trigger() in the catalog.
 */
bool
medallion_scheduler_running(Oid dboid)
{
	MedallionDbSlot *slot;
	bool		running = false;

	if (medallion_shared == NULL)
		return false;
	LWLockAcquire(medallion_shared->lock, LW_SHARED);
	slot = medallion_db_slot(dboid, false);
	if ((slot && slot->scheduler_pid != 0) || medallion_shared->launcher_pid != 0)
		running = true;
	LWLockRelease(medallion_shared->lock);
	return running;
}

/*
 * Stops the scheduler of a database (and so its run workers) and keeps the
 * launcher from restarting it until medallion_scheduler_release(): for DROP
 * DATABASE and the like, which fail while anyone is connected.  The
 * launcher, which started it and is told when it has ended, is asked to
 * stop it; this backend waits on a condition variable for the launcher to
 * say it has, for a while.  Returns the database held, or InvalidOid.
 */
Oid
medallion_scheduler_stop(Oid dboid)
{
	MedallionDbSlot *slot;
	pid_t		pid = 0;
	Latch	   *launcher = NULL;
	TimestampTz deadline;

	if (!OidIsValid(dboid) || medallion_shared == NULL)
		return InvalidOid;
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	slot = medallion_db_slot(dboid, true);
	if (slot)
	{
		/* released after the command or transaction; the time is a safety net */
		slot->hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 60000);
		pid = slot->scheduler_pid;
		if (pid != 0)
		{
			slot->stop_requested = true;
			launcher = medallion_shared->launcher_latch;
		}
	}
	LWLockRelease(medallion_shared->lock);
	if (slot == NULL)
		return InvalidOid;
	if (pid == 0)
		return dboid;

	/* no launcher: it is restarting, and its schedulers went with it */
	if (launcher)
		SetLatch(launcher);

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), STOP_WAIT_MS);
	ConditionVariablePrepareToSleep(&medallion_shared->scheduler_gone);
	for (;;)
	{
		bool		gone;
		long		left;

		/*
		 * Gone when the launcher has seen the process end (it is out of the
		 * database only then, a moment after it cleared its slot); with no
		 * launcher, when it cleared its slot.
		 */
		LWLockAcquire(medallion_shared->lock, LW_SHARED);
		gone = (slot->dboid != dboid || slot->reaped_pid == pid ||
				(slot->scheduler_pid != pid && medallion_shared->launcher_pid == 0));
		LWLockRelease(medallion_shared->lock);
		if (gone)
			break;
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0 ||
			ConditionVariableTimedSleep(&medallion_shared->scheduler_gone, left, PG_WAIT_EXTENSION))
			break;
	}
	ConditionVariableCancelSleep();
	return dboid;
}

/*
 * The command is over (done or failed): the launcher may start the
 * database's scheduler again, if the database is still there.
 */
void
medallion_scheduler_release(Oid dboid)
{
	MedallionDbSlot *slot;

	if (!OidIsValid(dboid) || medallion_shared == NULL)
		return;
	LWLockAcquire(medallion_shared->lock, LW_EXCLUSIVE);
	slot = medallion_db_slot(dboid, false);
	if (slot)
	{
		slot->hold_until = 0;
		slot->stop_requested = false;
		slot->last_start = 0;	/* stopped on purpose: no restart delay */
		/* a slot taken only to hold the database off is given back */
		if (!slot->has_extension && slot->scheduler_pid == 0)
			memset(slot, 0, sizeof(MedallionDbSlot));
	}
	LWLockRelease(medallion_shared->lock);
	medallion_nudge_launcher();
}

/*
 * Installs the shared memory hooks; with shared_preload_libraries only.
 */
void
medallion_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = medallion_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = medallion_shmem_startup;
}
