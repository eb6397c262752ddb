/*-------------------------------------------------------------------------
 *
 * pipelines.c
 *	  Rows of medallion.pipelines and medallion.batches: pipeline lookup,
 *	  new pipelines, their definitions, and bronze batches.
 *
 * Every statement goes through the gateway (gateway.c) as the catalog owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "medallion.h"

/*
 * The lookup's columns; the 8th tells whether a pause request waits to be
 * folded in (see medallion_pause_fold): the state a run sees is then
 * 'paused'.  The 9th is options.time_budget, as set; the 10th the version
 * of the definition (the key of the parsed-contract cache).
 */
#define LOOKUP_COLUMNS \
	"SELECT p.name, p.layer, p.relname, p.state, p.owner, p.source, p.definition, " \
	"EXISTS (SELECT 1 FROM medallion.pause_requests r " \
	"  WHERE r.pipeline OPERATOR(pg_catalog.=) p.name), " \
	"p.options OPERATOR(pg_catalog.->>) 'time_budget', p.definition_version " \
	"FROM medallion.pipelines p WHERE p.name OPERATOR(pg_catalog.=) $1"

/* The same on a 0.1.0 catalog (before ALTER EXTENSION UPDATE): no pause requests. */
#define LOOKUP_COLUMNS_0_1 \
	"SELECT p.name, p.layer, p.relname, p.state, " \
	"pg_catalog.pg_get_userbyid(p.owner::pg_catalog.oid), p.source, p.definition, false, " \
	"p.options OPERATOR(pg_catalog.->>) 'time_budget', NULL::pg_catalog.int4 " \
	"FROM medallion.pipelines p WHERE p.name OPERATOR(pg_catalog.=) $1"

#define LOCK_WAIT " FOR NO KEY UPDATE OF p"
#define LOCK_SKIP " FOR NO KEY UPDATE OF p SKIP LOCKED"

/*
 * Whether the catalog has medallion.pause_requests (0.2.0 and later).
 */
bool
medallion_catalog_has_pause_requests(void)
{
	Oid			nsp = get_namespace_oid("medallion", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("pause_requests", nsp));
}

/*
 * Copies the lookup's row into *p, in the caller's memory context.
 */
static void
lookup_copy_row(Pipeline *p, MemoryContext callercxt)
{
	HeapTuple	tup = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	MemoryContext spicxt = MemoryContextSwitchTo(callercxt);
	bool		isnull;
	Datum		d;

	p->name = SPI_getvalue(tup, desc, 1);
	p->layer = SPI_getvalue(tup, desc, 2);
	p->relname = SPI_getvalue(tup, desc, 3);
	p->state = SPI_getvalue(tup, desc, 4);
	p->owner_name = SPI_getvalue(tup, desc, 5);
	p->source = SPI_getvalue(tup, desc, 6);
	d = SPI_getbinval(tup, desc, 7, &isnull);
	p->definition = isnull ? NULL : DatumGetJsonbPCopy(d);
	p->pause_requested = DatumGetBool(SPI_getbinval(tup, desc, 8, &isnull));
	p->time_budget = SPI_getvalue(tup, desc, 9);
	d = SPI_getbinval(tup, desc, 10, &isnull);
	p->definition_version = isnull ? 0 : DatumGetInt32(d);
	if (p->pause_requested)
		p->state = pstrdup("paused");
	MemoryContextSwitchTo(spicxt);
}

/*
 * Reads a pipeline; with lock, takes its row lock first (waiting, or not
 * with nowait: then *busy tells that a run holds it).  Returns false when
 * there is no such pipeline.
 *
 * The common case costs one statement: the row is locked without waiting
 * when it is free.  Only when another transaction holds it does the lookup
 * wait (or, with nowait, tell a busy pipeline from a missing one).
 *
 * The owner is stored by name and resolved here: p->owner is InvalidOid and
 * p->owner_name set when no role has that name (renamed or dropped, or a
 * restore into a cluster without it); callers refuse to act for it.
 */
bool
medallion_pipeline_lookup(const char *name, Pipeline *p, bool lock, bool nowait, bool *busy)
{
	MedallionGateway gw;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		found;
	bool		waited = false;
	bool		pauses = medallion_catalog_has_pause_requests();
	const char *plain = pauses ? LOOKUP_COLUMNS : LOOKUP_COLUMNS_0_1;
	MemoryContext callercxt = CurrentMemoryContext;

	if (busy)
		*busy = false;
	values[0] = CStringGetTextDatum(name);
	medallion_catalog_enter(&gw);
	found = medallion_gateway_exec_saved(lock ? psprintf("%s" LOCK_SKIP, plain) : plain,
										 1, argtypes, values, NULL, 1, SPI_OK_SELECT) == 1;
	if (!found && lock && nowait)
	{
		/* skipped: a run holds it, or there is no such pipeline */
		found = medallion_gateway_exec(plain, 1, argtypes, values, NULL, 1,
									   SPI_OK_SELECT) == 1;
		if (found && busy)
			*busy = true;
	}
	else if (!found && lock)
	{
		/* held by another transaction (or missing): wait for it */
		found = medallion_gateway_exec(psprintf("%s" LOCK_WAIT, plain),
									   1, argtypes, values, NULL, 1, SPI_OK_SELECT) == 1;
		waited = true;
	}
	if (found)
		lookup_copy_row(p, callercxt);

	/*
	 * After waiting for the row, a pause asked for meanwhile is newer than
	 * that statement's snapshot: look again.
	 */
	if (found && waited && pauses && !p->pause_requested &&
		medallion_gateway_exec("SELECT 1 FROM medallion.pause_requests "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1",
							   1, argtypes, values, NULL, 1, SPI_OK_SELECT) == 1)
	{
		p->pause_requested = true;
		p->state = MemoryContextStrdup(callercxt, "paused");
	}
	medallion_gateway_leave(&gw);
	if (found)
		p->owner = get_role_oid(p->owner_name, true);
	return found;
}

/*
 * The lookup of a run, with what the run reads next (0.2.0 catalog): the
 * pipeline's row, locked if free, in LOOKUP_COLUMNS' order; then the run
 * row recorded when $3 (its id); the watermark row; the expectations as a
 * text[][] of (name, check_sql, on_fail); the pipeline row's xmin.
 */
#define RUN_LOOKUP \
	"WITH p AS (SELECT p.name, p.layer, p.relname, p.state, p.owner, p.source, p.definition, " \
	"  EXISTS (SELECT 1 FROM medallion.pause_requests r " \
	"    WHERE r.pipeline OPERATOR(pg_catalog.=) p.name) AS pause_requested, " \
	"  p.options OPERATOR(pg_catalog.->>) 'time_budget' AS time_budget, " \
	"  p.retry_attempt, p.xmin AS row_xmin " \
	"  FROM medallion.pipelines p WHERE p.name OPERATOR(pg_catalog.=) $1 " \
	"  FOR NO KEY UPDATE OF p SKIP LOCKED), " \
	"r AS (INSERT INTO medallion.runs (pipeline, kind, status, attempt) " \
	"  SELECT p.name, $2, 'running', p.retry_attempt OPERATOR(pg_catalog.+) 1 FROM p WHERE $3 " \
	"  RETURNING run_id) " \
	"SELECT p.name, p.layer, p.relname, p.state, p.owner, p.source, p.definition, " \
	"  p.pause_requested, p.time_budget, (SELECT r.run_id FROM r), " \
	"  w.system_identifier, w.done_snapshot, w.target_snapshot, w.resume_xid, w.resume_seq, " \
	"  (SELECT pg_catalog.array_agg(ARRAY[e.name, e.check_sql, e.on_fail] ORDER BY e.name) " \
	"   FROM medallion.expectations e WHERE e.pipeline OPERATOR(pg_catalog.=) p.name), " \
	"  p.row_xmin, w.rebase_until " \
	"FROM p LEFT JOIN medallion.watermarks w ON w.pipeline OPERATOR(pg_catalog.=) p.name"

#define RUN_LOOKUP_RUN_ID 10
#define RUN_LOOKUP_WATERMARK 11
#define RUN_LOOKUP_EXPECTATIONS 16
#define RUN_LOOKUP_XMIN 17
#define RUN_LOOKUP_REBASE_UNTIL 18

/*
 * Copies the watermark and expectations the run's lookup read into a new
 * RunPrefetch, in the caller's memory context.
 */
static RunPrefetch *
run_prefetch_copy(MemoryContext callercxt)
{
	HeapTuple	tup = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	MemoryContext spicxt = MemoryContextSwitchTo(callercxt);
	RunPrefetch *pf = palloc0(sizeof(RunPrefetch));
	bool		isnull;
	Datum		d;

	for (int i = 0; i < 5; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, RUN_LOOKUP_WATERMARK + i - 1);

		d = SPI_getbinval(tup, desc, RUN_LOOKUP_WATERMARK + i, &isnull);
		pf->watermark_null[i] = isnull;
		pf->watermark[i] = isnull ? (Datum) 0 : datumCopy(d, att->attbyval, att->attlen);
	}
	d = SPI_getbinval(tup, desc, RUN_LOOKUP_REBASE_UNTIL, &isnull);
	pf->watermark_null[5] = isnull;
	pf->watermark[5] = d;		/* int8: by value */
	/* the system identifier is NOT NULL: a NULL means no watermark row */
	pf->has_watermark = !pf->watermark_null[0];

	d = SPI_getbinval(tup, desc, RUN_LOOKUP_EXPECTATIONS, &isnull);
	if (!isnull)
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		for (int i = 0; i + 2 < n; i += 3)
		{
			char	  **e = palloc(sizeof(char *) * 3);

			for (int k = 0; k < 3; k++)
				e[k] = nulls[i + k] ? NULL : TextDatumGetCString(elems[i + k]);
			pf->expectations = lappend(pf->expectations, e);
		}
	}
	MemoryContextSwitchTo(spicxt);
	return pf;
}

/*
 * The lookup at the start of a run: medallion_pipeline_lookup with lock,
 * and, when the pipeline's row is free, in the same statement: the run row
 * recorded as 'running' (unless *run_id names one already, as for a
 * scheduled run; *run_id is then set), and the watermark and expectations
 * read into p->prefetch.  When the row is held by another transaction, or
 * the catalog is 0.1.0's, this is medallion_pipeline_lookup, *run_id is
 * left alone and p->prefetch NULL: the caller records the run.
 *
 * The run row is written before the caller's checks (privileges, state):
 * a refusal is an error, which takes the row back with it.
 *
 * The watermark a run reads must be the one the previous run committed.
 * That run held the pipeline's row and updated it at its end; the row is
 * then locked in its newest version, which this statement's snapshot may
 * not see (the previous run committed between the snapshot and the lock),
 * and neither does it see that run's watermark: p->prefetch is then left
 * NULL and the run reads the watermark again, under a new snapshot.
 */
bool
medallion_pipeline_lookup_run(const char *name, Pipeline *p, bool nowait, bool *busy,
							  const char *kind, int64 *run_id)
{
	MedallionGateway gw;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, BOOLOID};
	Datum		values[3];
	MemoryContext callercxt = CurrentMemoryContext;
	Snapshot	snapshot;
	bool		found;

	if (!medallion_catalog_has_pause_requests())
		return medallion_pipeline_lookup(name, p, true, nowait, busy);

	if (busy)
		*busy = false;
	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(kind);
	values[2] = BoolGetDatum(*run_id == 0);
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	medallion_catalog_enter(&gw);
	found = medallion_gateway_exec_saved_snapshot(RUN_LOOKUP, 3, argtypes, values, NULL, 1,
												  SPI_OK_SELECT, snapshot) == 1;
	if (found)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		TransactionId xmin;

		lookup_copy_row(p, callercxt);
		d = SPI_getbinval(tup, desc, RUN_LOOKUP_RUN_ID, &isnull);
		if (!isnull)
			*run_id = DatumGetInt64(d);
		xmin = DatumGetTransactionId(SPI_getbinval(tup, desc, RUN_LOOKUP_XMIN, &isnull));
		if (!XidInMVCCSnapshot(xmin, snapshot))
			p->prefetch = run_prefetch_copy(callercxt);
	}
	medallion_gateway_leave(&gw);
	UnregisterSnapshot(snapshot);
	if (!found)
		return medallion_pipeline_lookup(name, p, true, nowait, busy);
	p->owner = get_role_oid(p->owner_name, true);
	return true;
}

/*
 * The pipeline name of a layer table: 'layer.relname', exactly as given.
 */
char *
medallion_pipeline_name(const char *layer, const char *relname)
{
	return psprintf("%s.%s", layer, relname);
}

/*
 * The table of a bronze, silver or gold pipeline (InvalidOid when there is
 * none), found by its layer schema and name.  A pipeline is bound to its
 * table by name, so a table another role created under that name (after the
 * owner renamed or dropped the pipeline's own) must not receive the owner's
 * rows: the table must belong to the pipeline's owner.
 */
Oid
medallion_pipeline_table(const Pipeline *p)
{
	Oid			nsp = get_namespace_oid(p->layer, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(p->relname, nsp) : InvalidOid;
	Oid			relowner;
	HeapTuple	tup;

	if (!OidIsValid(relid))
		return InvalidOid;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		return InvalidOid;		/* dropped meanwhile */
	relowner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	if (!OidIsValid(p->owner) || relowner != p->owner)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("table %s.%s is not owned by the owner of pipeline \"%s\"",
						quote_identifier(p->layer), quote_identifier(p->relname), p->name),
				 errdetail("The table belongs to role \"%s\", the pipeline to role \"%s\".",
						   GetUserNameFromId(relowner, true) ? GetUserNameFromId(relowner, true) : "?",
						   p->owner_name),
				 errhint("If the table is the pipeline's, give it to the pipeline's owner (ALTER TABLE ... OWNER TO) or the pipeline to the table's (alter_pipeline(..., '{\"owner\": ...}')); otherwise drop the pipeline.")));
	return relid;
}

/*
 * Whether medallion.pipelines.owner is still 0.1.0's regrole.
 */
static bool
owner_is_regrole(void)
{
	Oid			nsp = get_namespace_oid("medallion", false);
	Oid			relid = get_relname_relid("pipelines", nsp);

	return OidIsValid(relid) && get_atttype(relid, get_attnum(relid, "owner")) == REGROLEOID;
}

/*
 * Records a new pipeline.  A name already taken is a duplicate_object error.
 */
void
medallion_catalog_add_pipeline(const char *name, const char *layer,
							   const char *relname, Oid owner,
							   const char *source_system,
							   Datum retention, bool retention_null,
							   Jsonb *options, const char *description)
{
	Oid			argtypes[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	INTERVALOID, JSONBOID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = "        ";

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(layer);
	values[2] = CStringGetTextDatum(relname);
	/* by name: a dump restores into a cluster whatever roles it has */
	values[3] = CStringGetTextDatum(GetUserNameFromId(owner, false));
	if (source_system)
		values[4] = CStringGetTextDatum(source_system);
	else
		nulls[4] = 'n';
	values[5] = retention;
	if (retention_null)
		nulls[5] = 'n';
	values[6] = JsonbPGetDatum(options);
	if (description)
		values[7] = CStringGetTextDatum(description);
	else
		nulls[7] = 'n';

	/* a 0.1.0 catalog (not updated yet) keeps the owner as regrole */
	if (medallion_catalog_exec(
		owner_is_regrole() ?
		"INSERT INTO medallion.pipelines "
		"(name, layer, relname, owner, source_system, retention, options, description) "
		"VALUES ($1, $2, $3, pg_catalog.quote_ident($4)::pg_catalog.regrole, $5, $6, $7, $8) "
		"ON CONFLICT DO NOTHING" :
		"INSERT INTO medallion.pipelines "
		"(name, layer, relname, owner, source_system, retention, options, description) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
		"ON CONFLICT DO NOTHING",
		8, argtypes, values, nulls, SPI_OK_INSERT) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("pipeline \"%s\" already exists", name)));
}

/*
 * Claims a batch id for a bronze pipeline.  Returns false when the batch has
 * already landed.  A concurrent claim of the same id waits for the first
 * claimer's transaction: if it commits, this one finds the batch landed; if
 * it aborts, this one lands it.  Exactly one lands.
 */
bool
medallion_catalog_claim_batch(const char *pipeline, const char *batch_id,
							  const char *file_name)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(batch_id);
	if (file_name)
		values[2] = CStringGetTextDatum(file_name);
	else
		nulls[2] = 'n';

	return medallion_catalog_exec(
		"INSERT INTO medallion.batches (pipeline, batch_id, file_name) "
		"VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
		3, argtypes, values, nulls, SPI_OK_INSERT) == 1;
}

/*
 * Stores the counts of a batch claimed by medallion_catalog_claim_batch.
 */
void
medallion_catalog_finish_batch(const char *pipeline, const char *batch_id,
							   int64 rows_landed, int64 rows_dlq)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT8OID, INT8OID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(batch_id);
	values[2] = Int64GetDatum(rows_landed);
	values[3] = Int64GetDatum(rows_dlq);

	(void) medallion_catalog_exec(
		"UPDATE medallion.batches SET rows_landed = $3, rows_dlq = $4 "
		"WHERE pipeline OPERATOR(pg_catalog.=) $1 "
		"AND batch_id OPERATOR(pg_catalog.=) $2",
		4, argtypes, values, NULL, SPI_OK_UPDATE);
}

/*
 * Stores a silver pipeline's source and definition.
 */
void
medallion_catalog_set_definition(const char *pipeline, const char *source, Jsonb *definition)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, JSONBOID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(source);
	values[2] = JsonbPGetDatum(definition);
	(void) medallion_catalog_exec("UPDATE medallion.pipelines SET source = $2, definition = $3 "
								  "WHERE name OPERATOR(pg_catalog.=) $1",
								  3, argtypes, values, NULL, SPI_OK_UPDATE);
}
