/*-------------------------------------------------------------------------
 *
 * active_run.c
 *	  The run this backend executes, and the functions its SQL calls to
 *	  reach it (count_read, silver_keep).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/supportnodes.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/xid8.h"

#include "medallion.h"
#include "silver/silver.h"

static ActiveRun *active_run = NULL;
static bool active_run_callbacks = false;

static void
active_run_pop_to(SubTransactionId subid)
{
	while (active_run && active_run->subid >= subid)
	{
		ActiveRun  *prev = active_run->prev;

		pfree(active_run);
		active_run = prev;
	}
}

static void
active_run_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		active_run_pop_to(InvalidSubTransactionId);
}

static void
active_run_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		active_run_pop_to(mySubid);
}

ActiveRun *
silver_active_run_register(SilverRun *r)
{
	ActiveRun  *ar = MemoryContextAllocZero(TopMemoryContext, sizeof(ActiveRun));

	if (!active_run_callbacks)
	{
		RegisterXactCallback(active_run_xact_callback, NULL);
		RegisterSubXactCallback(active_run_subxact_callback, NULL);
		active_run_callbacks = true;
	}
	ar->prev = active_run;
	ar->subid = GetCurrentSubTransactionId();
	ar->owner = r->p->owner;
	ar->r = r;
	r->ar = ar;
	active_run = ar;
	return ar;
}

void
silver_active_run_unregister(ActiveRun *ar)
{
	Assert(active_run == ar);
	active_run = ar->prev;
	pfree(ar);
}

/*
 * Whether this backend is executing a run.
 */
bool
silver_active_run_exists(void)
{
	return active_run != NULL;
}

/*
 * The parsed contract of the run this backend executes, when definition is
 * that run's definition (as its SQL passes it to silver_check); else NULL.
 */
Contract *
silver_active_run_contract(Jsonb *definition)
{
	Jsonb	   *mine;

	if (active_run == NULL || active_run->r->c == NULL || active_run->r->nulls[P_DEF - 1] == 'n')
		return NULL;
	mine = DatumGetJsonbP(active_run->r->values[P_DEF - 1]);
	if (VARSIZE(mine) != VARSIZE(definition) || memcmp(mine, definition, VARSIZE(mine)) != 0)
		return NULL;
	return active_run->r->c;
}

/*
 * Raises unless this backend is executing a run owned by the current user.
 */
void
medallion_active_run_check(const char *function)
{
	if (active_run == NULL || active_run->owner != GetUserId())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is called by silver runs only", function),
				 errdetail("It works only inside a run of a pipeline owned by the current user.")));
}

/* medallion.count_insert(): a row the run's MERGE inserted */
void
medallion_active_run_count_insert(void)
{
	medallion_active_run_check("medallion.count_insert()");
	active_run->inserted++;
}

PG_FUNCTION_INFO_V1(medallion_payload_keys_note);

/*
 * medallion.payload_keys_note(payload): adds the keys of a window's row to
 * the run's registry batch (drift_window.c reads rows that came without a
 * batch through it).
 */
Datum
medallion_payload_keys_note(PG_FUNCTION_ARGS)
{
	Jsonb	   *payload;

	medallion_active_run_check("medallion.payload_keys_note()");
	payload = PG_GETARG_JSONB_P(0);
	if (active_run->keys && JB_ROOT_IS_OBJECT(payload))
		medallion_payload_keys_add_jsonb(active_run->keys, &payload->root);
	PG_RETURN_BOOL(true);
}

PG_FUNCTION_INFO_V1(medallion_count_read);
PG_FUNCTION_INFO_V1(medallion_in_window);
PG_FUNCTION_INFO_V1(medallion_window_support);
PG_FUNCTION_INFO_V1(medallion_silver_keep);

/*
 * medallion.count_read(): counts a row of the window a run's MERGE reads,
 * so that no count(*) pass over the window is needed.
 */
Datum
medallion_count_read(PG_FUNCTION_ARGS)
{
	medallion_active_run_check("medallion.count_read()");
	active_run->read++;
	medallion_progress_rows(active_run->read);
	PG_RETURN_BOOL(true);
}

/* silver_keep writes the rows it leaves out by batches of this many, or bytes */
#define KEEP_BATCH 1000
#define KEEP_BATCH_BYTES (1024 * 1024)

/*
 * Writes the rows silver_keep recorded and frees them: memory stays flat
 * in the number of bad rows.  (A replay keeps them: their DLQ rows are
 * updated at its end.)
 */
void
silver_flush_kept(ActiveRun *ar)
{
	if (ar->keep_bad == NIL || ar->r->replay)
		return;
	ar->kept_new += silver_insert_dlq_rows(ar->r, ar->keep_bad);
	ar->kept += list_length(ar->keep_bad);
	ar->keep_bad = NIL;
	MemoryContextReset(ar->keep_cxt);
}

/*
 * medallion.silver_keep(seq, payload, batch_id, silver_check's result): in
 * the slow path's MERGE, keeps (and counts) a row that types, records one
 * that does not and leaves it out.  Finding the bad rows and merging the
 * good ones is then one pass over the window, not two.
 */
Datum
medallion_silver_keep(PG_FUNCTION_ARGS)
{
	ActiveRun  *ar;
	MemoryContext old;
	BadRow	   *b;
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	Jsonb	   *raw;

	medallion_active_run_check("medallion.silver_keep()");
	ar = active_run;
	if (!ar->keeping)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("medallion.silver_keep() is called by silver runs only")));
	if (PG_ARGISNULL(3))
	{
		ar->read++;
		PG_RETURN_BOOL(true);
	}
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("seq and payload must not be NULL")));
	raw = PG_GETARG_JSONB_P(1);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	if (n != 4 || enulls[0] || enulls[2] || enulls[3])
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("error must be silver_check's result")));
	old = MemoryContextSwitchTo(ar->keep_cxt);
	b = palloc0(sizeof(BadRow));
	b->seq = PG_GETARG_INT64(0);
	b->raw = JsonbToCString(NULL, &raw->root, VARSIZE(raw));
	b->batch = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	b->type = TextDatumGetCString(elems[0]);
	b->field = enulls[1] ? NULL : TextDatumGetCString(elems[1]);
	b->sqlstate = TextDatumGetCString(elems[2]);
	b->message = TextDatumGetCString(elems[3]);
	ar->keep_bad = lappend(ar->keep_bad, b);
	MemoryContextSwitchTo(old);
	if (list_length(ar->keep_bad) >= KEEP_BATCH ||
		MemoryContextMemAllocated(ar->keep_cxt, false) >= KEEP_BATCH_BYTES)
		silver_flush_kept(ar);
	PG_RETURN_BOOL(false);
}

/*
 * medallion.in_window(xid, snapshot): whether a bronze row's transaction is
 * visible in a run's target snapshot (pg_visible_in_snapshot, with a planner
 * support function).
 */
Datum
medallion_in_window(PG_FUNCTION_ARGS)
{
	return DirectFunctionCall2(pg_visible_in_snapshot, PG_GETARG_DATUM(0), PG_GETARG_DATUM(1));
}

/*
 * The planner support of count_read() and in_window(): as conditions of a
 * window they keep (nearly) every row its xid range holds, not a third.
 */
Datum
medallion_window_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);

	if (IsA(rawreq, SupportRequestSelectivity))
	{
		SupportRequestSelectivity *req = (SupportRequestSelectivity *) rawreq;

		req->selectivity = 1.0;
		PG_RETURN_POINTER(req);
	}
	PG_RETURN_POINTER(NULL);
}

PG_FUNCTION_INFO_V1(medallion_change_note);

/*
 * medallion.change_note(slot, old_value, new_value) → new_value: called by
 * a run's MERGE for each row it writes, with the old and new value of a
 * column some gold model maps through (gold/changes.c keeps the days).
 */
Datum
medallion_change_note(PG_FUNCTION_ARGS)
{
	Oid			typid;
	MedallionChangeSet *cs;
	int			slot;

	medallion_active_run_check("medallion.change_note()");
	/* once per call site: the argument type, cached */
	if (fcinfo->flinfo->fn_extra == NULL)
	{
		Oid		   *t = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(Oid));

		*t = get_fn_expr_argtype(fcinfo->flinfo, 1);
		fcinfo->flinfo->fn_extra = t;
	}
	typid = *(Oid *) fcinfo->flinfo->fn_extra;
	cs = active_run->r->changes;
	slot = PG_ARGISNULL(0) ? -1 : PG_GETARG_INT32(0);
	if (!PG_ARGISNULL(1))
		medallion_changeset_note(cs, slot, typid, PG_GETARG_DATUM(1));
	if (PG_ARGISNULL(2))
		PG_RETURN_NULL();
	medallion_changeset_note(cs, slot, typid, PG_GETARG_DATUM(2));
	PG_RETURN_DATUM(PG_GETARG_DATUM(2));
}
