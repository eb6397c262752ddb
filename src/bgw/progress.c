/*-------------------------------------------------------------------------
 *
 * progress.c
 *	  medallion.progress: what each run in progress is doing, fed live by
 *	  the running process through shared memory.
 *
 * One slot per backend (indexed by its BackendId, so a writer never waits
 * for a lock): the pipeline, the run id, the phase and the rows done of the
 * rows to do.  A run writes its own slot only; readers copy a slot and
 * retry while a write is under way (a change counter, odd while writing,
 * as pg_stat_activity's backend entries do).  Without the library in
 * shared_preload_libraries there are no slots and the view is empty.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/backendid.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "bgw/bgw.h"

PG_FUNCTION_INFO_V1(medallion_progress);

#define PROGRESS_NAME_LEN 128
#define PROGRESS_PHASE_LEN 32

typedef struct ProgressSlot
{
	uint32		changecount;	/* odd while its backend writes it */
	Oid			dboid;			/* InvalidOid: no run in progress */
	int			pid;
	int64		run_id;
	char		pipeline[PROGRESS_NAME_LEN];
	char		phase[PROGRESS_PHASE_LEN];
	int64		rows_done;
	int64		rows_total;		/* -1: not known */
	TimestampTz started_at;
	TimestampTz phase_started_at;
} ProgressSlot;

static ProgressSlot *progress_slots = NULL;
static int	progress_nslots = 0;

/* this backend's slot while it runs a pipeline, else NULL */
static volatile ProgressSlot *my_slot = NULL;
static bool callback_registered = false;

/*
 * The shared memory the slots take (called from the shmem request hook,
 * when MaxBackends is known).
 */
Size
medallion_progress_shmem_size(void)
{
	return mul_size(MaxBackends, sizeof(ProgressSlot));
}

/*
 * Finds or makes the slots (shmem startup hook; the caller holds
 * AddinShmemInitLock).
 */
void
medallion_progress_shmem_init(void)
{
	bool		found;

	progress_slots = ShmemInitStruct("medallion progress", medallion_progress_shmem_size(), &found);
	if (!found)
		memset(progress_slots, 0, medallion_progress_shmem_size());
	progress_nslots = MaxBackends;
}

#define BEGIN_WRITE(s) \
	do { (s)->changecount++; pg_write_barrier(); } while (0)
#define END_WRITE(s) \
	do { pg_write_barrier(); (s)->changecount++; } while (0)

/* A transaction that ends (committed or aborted) ends the run it held. */
static void
progress_xact_callback(XactEvent event, void *arg)
{
	if (my_slot == NULL)
		return;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
		medallion_progress_end();
}

/*
 * A run starts: it takes this backend's slot.
 */
void
medallion_progress_begin(const char *pipeline, int64 run_id)
{
	volatile ProgressSlot *s;
	TimestampTz now = GetCurrentTimestamp();

	if (progress_slots == NULL || MyBackendId == InvalidBackendId || MyBackendId > progress_nslots)
		return;
	if (!callback_registered)
	{
		RegisterXactCallback(progress_xact_callback, NULL);
		callback_registered = true;
	}
	s = &progress_slots[MyBackendId - 1];
	BEGIN_WRITE(s);
	s->dboid = MyDatabaseId;
	s->pid = MyProcPid;
	s->run_id = run_id;
	strlcpy((char *) s->pipeline, pipeline,
			pg_mbcliplen(pipeline, strlen(pipeline), PROGRESS_NAME_LEN - 1) + 1);
	strlcpy((char *) s->phase, "start", PROGRESS_PHASE_LEN);
	s->rows_done = 0;
	s->rows_total = -1;
	s->started_at = now;
	s->phase_started_at = now;
	END_WRITE(s);
	my_slot = s;
}

/*
 * The run enters a phase; rows_total is what it has to do there (-1 when
 * not known); its rows done start at 0.
 */
void
medallion_progress_phase(const char *phase, int64 rows_total)
{
	volatile ProgressSlot *s = my_slot;

	if (s == NULL)
		return;
	BEGIN_WRITE(s);
	strlcpy((char *) s->phase, phase, PROGRESS_PHASE_LEN);
	s->rows_done = 0;
	s->rows_total = rows_total;
	s->phase_started_at = GetCurrentTimestamp();
	END_WRITE(s);
}

/*
 * The rows the phase has done so far (cheap: called for every row a
 * silver run's MERGE reads).
 */
void
medallion_progress_rows(int64 rows_done)
{
	volatile ProgressSlot *s = my_slot;

	if (s == NULL)
		return;
	BEGIN_WRITE(s);
	s->rows_done = rows_done;
	END_WRITE(s);
}

/*
 * The run is over: the slot is free.
 */
void
medallion_progress_end(void)
{
	volatile ProgressSlot *s = my_slot;

	if (s == NULL)
		return;
	BEGIN_WRITE(s);
	s->dboid = InvalidOid;
	s->run_id = 0;
	END_WRITE(s);
	my_slot = NULL;
}

/*
 * medallion.progress() → the runs in progress in this database.
 */
Datum
medallion_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < progress_nslots && progress_slots != NULL; i++)
	{
		volatile ProgressSlot *s = &progress_slots[i];
		ProgressSlot copy;
		Datum		values[8];
		bool		nulls[8] = {0};

		for (;;)
		{
			uint32		before = s->changecount;

			pg_read_barrier();
			memcpy(&copy, (ProgressSlot *) s, sizeof(copy));
			pg_read_barrier();
			if (before == s->changecount && (before & 1) == 0)
				break;
			CHECK_FOR_INTERRUPTS();
		}
		if (copy.dboid != MyDatabaseId || copy.run_id == 0)
			continue;
		values[0] = CStringGetTextDatum(copy.pipeline);
		values[1] = Int64GetDatum(copy.run_id);
		values[2] = Int32GetDatum(copy.pid);
		values[3] = CStringGetTextDatum(copy.phase);
		values[4] = Int64GetDatum(copy.rows_done);
		values[5] = Int64GetDatum(copy.rows_total);
		nulls[5] = (copy.rows_total < 0);
		values[6] = TimestampTzGetDatum(copy.started_at);
		values[7] = TimestampTzGetDatum(copy.phase_started_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
