/*-------------------------------------------------------------------------
 *
 * gateway.c
 *	  The catalog gateway: the one way medallion sends SQL as another role
 *	  (the switch to that role, a pinned search_path, SPI).
 *
 * Catalog writes run as the extension's owner: a role allowed to ingest into
 * a bronze table must be able to record its batch and its dead letters
 * without being able to read or change other pipelines' rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/dependency.h"
#include "common/hashfn.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "medallion.h"

/*
 * medallion.pipelines, as last found by this backend: re-checked on every
 * use (one syscache probe), looked up again by name when it is gone or
 * renamed (DROP EXTENSION and CREATE EXTENSION again, say).  Only that
 * lookup, once per backend in practice, reads pg_extension and pg_depend.
 */
static Oid	pipelines_relid = InvalidOid;

/*
 * The role that owns the extension, and so its catalog tables: the owner of
 * medallion.pipelines.  The extension's script creates every catalog table
 * as the extension's owner, and pg_class has a syscache where pg_extension
 * has none, so this costs no catalog scan.
 */
Oid
medallion_catalog_owner(void)
{
	HeapTuple	tup;
	Oid			owner = InvalidOid;
	int			tries;

	for (tries = 0; tries < 2; tries++)
	{
		if (!OidIsValid(pipelines_relid))
		{
			Oid			nsp = get_namespace_oid("medallion", true);

			if (OidIsValid(nsp))
				pipelines_relid = get_relname_relid("pipelines", nsp);
			/* the extension's own table, not one a role made to look like it */
			if (OidIsValid(pipelines_relid) &&
				getExtensionOfObject(RelationRelationId, pipelines_relid) !=
				get_extension_oid("medallion", true))
				pipelines_relid = InvalidOid;
			if (!OidIsValid(pipelines_relid))
				break;
		}
		tup = SearchSysCache1(RELOID, ObjectIdGetDatum(pipelines_relid));
		if (HeapTupleIsValid(tup))
		{
			Form_pg_class cls = (Form_pg_class) GETSTRUCT(tup);

			/* still medallion.pipelines: not dropped, its OID not reused */
			if (strcmp(NameStr(cls->relname), "pipelines") == 0 &&
				cls->relnamespace == get_namespace_oid("medallion", true))
				owner = cls->relowner;
			ReleaseSysCache(tup);
		}
		if (OidIsValid(owner))
			break;
		pipelines_relid = InvalidOid;
	}

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"medallion\" is not installed in this database")));
	return owner;
}

/*
 * Switches the current user to "role" for the SQL that follows, in a
 * security-restricted context (as REFRESH MATERIALIZED VIEW does), so that
 * code run on another role's behalf cannot change session state.  An error
 * anywhere restores the previous user at (sub)transaction abort.
 */
void
medallion_become_user(Oid role, MedallionUserContext *save)
{
	GetUserIdAndSecContext(&save->saved_userid, &save->saved_sec_context);
	SetUserIdAndSecContext(role,
						   save->saved_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/*
 * Undoes medallion_become_user.
 */
void
medallion_restore_user(MedallionUserContext *save)
{
	SetUserIdAndSecContext(save->saved_userid, save->saved_sec_context);
}

/*
 * The gateway: every statement medallion sends through SPI as a role other
 * than the caller's goes between medallion_gateway_enter and _leave.  Inside,
 * the current user is "role" (security-restricted), search_path is pinned to
 * "pg_catalog, pg_temp" in a GUC nest level of its own (pg_temp last, or the
 * caller's temporary schema would be searched first), and SPI is connected.
 * The SQL itself must still qualify every type, operator and function.
 *
 * An error inside is recovered only by the (sub)transaction abort, which pops
 * the nest level and restores the user: never catch one and carry on.
 */
void
medallion_gateway_enter(Oid role, MedallionGateway *gw)
{
	medallion_become_user(role, &gw->user);
	gw->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * Leaves the gateway: SPI's memory is freed, so copy results out first.
 */
void
medallion_gateway_leave(MedallionGateway *gw)
{
	SPI_finish();
	AtEOXact_GUC(true, gw->nestlevel);
	medallion_restore_user(&gw->user);
}

/*
 * Enters the gateway as the catalog owner.
 */
void
medallion_catalog_enter(MedallionGateway *gw)
{
	medallion_gateway_enter(medallion_catalog_owner(), gw);
}

/*
 * Runs one statement inside the gateway; fails unless SPI returns "expect"
 * (any success when expect is 0).  Returns SPI_processed; the rows are in
 * SPI_tuptable until medallion_gateway_leave.
 */
uint64
medallion_gateway_exec(const char *sql, int nargs, Oid *types, Datum *values,
					   const char *nulls, long count, int expect)
{
	int			ret;

	ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, count);
	if (ret < 0 || (expect != 0 && ret != expect))
		elog(ERROR, "catalog statement failed: SPI error %d", ret);
	return SPI_processed;
}

/*
 * Saved plans of the statements a run sends every time (the lookup, the run
 * row, the watermark, the success record): parsing and planning them anew
 * cost most of a run that finds nothing to do.
 *
 * A plan is kept (SPI_keepplan) per statement text, argument count and
 * types.  PostgreSQL's plan cache keeps it valid: a change to a table or
 * function it uses (DROP EXTENSION and CREATE EXTENSION again included)
 * makes it analyse the text again, under the search_path it was saved with,
 * which is the gateway's pinned one; permissions are checked at every
 * execution, and plans that depend on row-level security are made again for
 * another role.  The plans are generic: they look rows up by key, where a
 * plan for the values would cost its planning every time.
 *
 * Only statements whose text is a constant (or, for a run's probe, fixed
 * per pipeline) come here, so the set is small; MEDALLION_SAVED_PLANS_MAX
 * bounds it all the same (a probe's plan covers every partition of its
 * bronze table), and statements beyond it are planned each time.
 */
#define MEDALLION_SAVED_PLANS_MAX 64

typedef struct SavedStatement
{
	uint64		key;			/* hash of the text (the hash table's key) */
	char	   *sql;			/* the text, to tell a collision */
	int			nargs;
	Oid		   *types;
	SPIPlanPtr	plan;
} SavedStatement;

static HTAB *saved_statements = NULL;

/*
 * The saved plan of a statement, prepared and kept on first use; NULL when
 * it cannot be kept (a hash collision, or the bound reached): the caller
 * then executes it unsaved.
 */
static SPIPlanPtr
saved_plan(const char *sql, int nargs, Oid *types)
{
	uint64		key = hash_bytes_extended((const unsigned char *) sql, strlen(sql), 0);
	SavedStatement *entry;
	bool		found;
	SPIPlanPtr	plan;

	if (saved_statements == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(SavedStatement);
		ctl.hcxt = CacheMemoryContext;
		saved_statements = hash_create("medallion saved statements", 32, &ctl,
									   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(saved_statements, &key, HASH_FIND, NULL);
	if (entry)
	{
		if (entry->nargs == nargs && strcmp(entry->sql, sql) == 0 &&
			(nargs == 0 || memcmp(entry->types, types, sizeof(Oid) * nargs) == 0))
			return entry->plan;
		return NULL;
	}
	if (hash_get_num_entries(saved_statements) >= MEDALLION_SAVED_PLANS_MAX)
		return NULL;

	/* prepared before the entry exists: an error leaves nothing half made */
	plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "could not prepare statement: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the plan of a statement");
	entry = hash_search(saved_statements, &key, HASH_ENTER, &found);
	entry->sql = MemoryContextStrdup(CacheMemoryContext, sql);
	entry->nargs = nargs;
	entry->types = MemoryContextAlloc(CacheMemoryContext, sizeof(Oid) * Max(nargs, 1));
	if (nargs > 0)
		memcpy(entry->types, types, sizeof(Oid) * nargs);
	entry->plan = plan;
	return plan;
}

/*
 * Executes a statement through its saved plan (see saved_plan), in the SPI
 * connection of the caller, who has pinned the settings it runs under;
 * unsaved when it cannot be kept.  Returns SPI's result code.  Also used for
 * a run's probe of its window, as the pipeline's owner (silver_run.c).
 */
int
medallion_exec_saved(const char *sql, int nargs, Oid *types, Datum *values,
					 const char *nulls, long count)
{
	SPIPlanPtr	plan = saved_plan(sql, nargs, types);

	if (plan == NULL)
		return SPI_execute_with_args(sql, nargs, types, values, nulls, false, count);
	return SPI_execute_plan(plan, values, nulls, false, count);
}

/*
 * medallion_gateway_exec_saved under a snapshot the caller took and
 * registered, so that it can tell afterwards which row versions the
 * statement could see (a row locked after a concurrent update is the
 * newest version, which its snapshot may not see).
 */
uint64
medallion_gateway_exec_saved_snapshot(const char *sql, int nargs, Oid *types, Datum *values,
									  const char *nulls, long count, int expect,
									  Snapshot snapshot)
{
	SPIPlanPtr	plan = saved_plan(sql, nargs, types);
	int			ret;

	if (plan == NULL && (plan = SPI_prepare(sql, nargs, types)) == NULL)
		elog(ERROR, "could not prepare statement: %s", SPI_result_code_string(SPI_result));
	ret = SPI_execute_snapshot(plan, values, nulls, snapshot, InvalidSnapshot, false, true, count);
	if (ret < 0 || (expect != 0 && ret != expect))
		elog(ERROR, "catalog statement failed: SPI error %d", ret);
	return SPI_processed;
}

/*
 * medallion_gateway_exec for a statement whose text is a constant: its plan
 * is saved on first use and reused.  Same contract.
 */
uint64
medallion_gateway_exec_saved(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, long count, int expect)
{
	int			ret = medallion_exec_saved(sql, nargs, types, values, nulls, count);

	if (ret < 0 || (expect != 0 && ret != expect))
		elog(ERROR, "catalog statement failed: SPI error %d", ret);
	return SPI_processed;
}

/*
 * One statement as the catalog owner, through the gateway, with no rows
 * returned to the caller.  Returns the number of rows processed.
 */
uint64
medallion_catalog_exec(const char *sql, int nargs, Oid *types, Datum *values,
					   const char *nulls, int expect)
{
	MedallionGateway gw;
	uint64		n;

	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec(sql, nargs, types, values, nulls, 0, expect);
	medallion_gateway_leave(&gw);
	return n;
}

/*
 * The text of one column of every row the last gateway statement returned,
 * copied into "cxt" so that it outlives medallion_gateway_leave.
 */
List *
medallion_gateway_text_column(int column, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	List	   *values = NIL;

	for (uint64 i = 0; i < SPI_processed; i++)
		values = lappend(values, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, column));
	MemoryContextSwitchTo(old);
	return values;
}

/*
 * Row "row" (from 0) of the last gateway statement's result, every column
 * copied into "cxt" so that it outlives medallion_gateway_leave.
 */
MedallionRow *
medallion_gateway_row(uint64 row, MemoryContext cxt)
{
	TupleDesc	desc = SPI_tuptable->tupdesc;
	HeapTuple	tup = SPI_tuptable->vals[row];
	MemoryContext old = MemoryContextSwitchTo(cxt);
	MedallionRow *r = palloc(sizeof(MedallionRow));

	r->values = palloc(sizeof(Datum) * desc->natts);
	r->nulls = palloc(sizeof(bool) * desc->natts);
	for (int col = 0; col < desc->natts; col++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, col);
		Datum		d = SPI_getbinval(tup, desc, col + 1, &r->nulls[col]);

		r->values[col] = r->nulls[col] ? (Datum) 0 : datumCopy(d, att->attbyval, att->attlen);
	}
	MemoryContextSwitchTo(old);
	return r;
}

/*
 * Every row of the last gateway statement's result (a List of
 * MedallionRow), copied into "cxt".
 */
List *
medallion_gateway_rows(MemoryContext cxt)
{
	List	   *rows = NIL;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MedallionRow *r = medallion_gateway_row(i, cxt);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		rows = lappend(rows, r);
		MemoryContextSwitchTo(old);
	}
	return rows;
}

/*
 * One query as the catalog owner, through the gateway: its rows (a List of
 * MedallionRow), copied into the caller's memory context.
 */
List *
medallion_catalog_query(const char *sql, int nargs, Oid *types, Datum *values,
						const char *nulls)
{
	MemoryContext caller = CurrentMemoryContext;
	MedallionGateway gw;
	List	   *rows;

	medallion_catalog_enter(&gw);
	(void) medallion_gateway_exec(sql, nargs, types, values, nulls, 0, SPI_OK_SELECT);
	rows = medallion_gateway_rows(caller);
	medallion_gateway_leave(&gw);
	return rows;
}
