/*-------------------------------------------------------------------------
 *
 * schedule.c
 *	  schedule(), unschedule(), trigger(), alter_pipeline(): when and how
 *	  pipelines run.
 *
 * Three kinds of schedule: an interval ('30 seconds', down to 1 s) and
 * 'on_change' (upstream data committed) are served by medallion's own
 * scheduler; a cron expression becomes a pg_cron job named
 * 'medallion:<pipeline>' whose command is medallion.trigger(pipeline), so
 * that retries, the circuit breaker and halts apply as for any scheduled
 * run.  Without the scheduler (library not preloaded) trigger() runs the
 * pipeline directly.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "ops/ops.h"

PG_FUNCTION_INFO_V1(medallion_schedule);
PG_FUNCTION_INFO_V1(medallion_unschedule);
PG_FUNCTION_INFO_V1(medallion_trigger);
PG_FUNCTION_INFO_V1(medallion_alter_pipeline);

extern Datum medallion_run(PG_FUNCTION_ARGS);

/*
 * Looks up a pipeline, or fails (locking its row, the run lock, when asked:
 * that waits for a running run).
 */
void
medallion_require_pipeline(const char *name, Pipeline *p, bool lock)
{
	if (!medallion_pipeline_lookup(name, p, lock, false, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", name),
				 errhint("Pipelines are listed in medallion.pipelines.")));
}

/*
 * Looks up a pipeline the caller must own.
 */
void
medallion_require_owned(const char *name, Pipeline *p, bool lock)
{
	medallion_require_pipeline(name, p, lock);
	if (!has_privs_of_role(GetUserId(), p->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of pipeline \"%s\"", name)));
}

/*
 * The pipeline name of argument 0.
 */
static char *
pipeline_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline must not be NULL")));
	return text_to_cstring(PG_GETARG_TEXT_PP(0));
}

/*
 * The pipeline named by argument 0, which the caller must own.
 */
static char *
owned_pipeline(FunctionCallInfo fcinfo, Pipeline *p)
{
	char	   *name = pipeline_arg(fcinfo);

	medallion_require_owned(name, p, false);
	return name;
}

/*
 * Runs one catalog statement through the gateway, as the catalog owner,
 * with text parameters (NULL for a null).
 */
static void
catalog_exec_text(const char *sql, int nargs, const char **args)
{
	Oid			types[4];
	Datum		values[4];
	char		nulls[4];
	int			i;

	Assert(nargs <= 4);
	for (i = 0; i < nargs; i++)
	{
		types[i] = TEXTOID;
		values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
		nulls[i] = args[i] ? ' ' : 'n';
	}
	(void) medallion_catalog_exec(sql, nargs, types, values, nulls, 0);
}

/*
 * Where pg_cron can take our job: here, or a hint of what to run there.
 * pg_cron's job names are unique per user across its databases: a job
 * made there for this database's pipeline names the database too.
 */
static void
require_pg_cron_here(const char *pipeline, const char *cron, const char *owner)
{
	const char *cron_db;
	char	   *dbname = get_database_name(MyDatabaseId);

	if (OidIsValid(get_extension_oid("pg_cron", true)))
		return;
	cron_db = GetConfigOption("cron.database_name", true, false);
	if (cron_db && strcmp(cron_db, dbname) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_cron runs in database \"%s\", not in this one", cron_db),
				 errdetail("medallion creates pg_cron jobs only where pg_cron is installed (cron.database_name)."),
				 errhint("Connected to \"%s\", run: SELECT cron.schedule_in_database(%s, %s, %s, %s, %s);",
						 cron_db,
						 quote_literal_cstr(psprintf("medallion:%s@%s", pipeline, dbname)),
						 quote_literal_cstr(cron),
						 quote_literal_cstr(psprintf("SELECT medallion.trigger(%s)", quote_literal_cstr(pipeline))),
						 quote_literal_cstr(dbname),
						 quote_literal_cstr(owner))));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cron schedules need the pg_cron extension"),
			 errhint("Add pg_cron to shared_preload_libraries and run CREATE EXTENSION pg_cron, or use an interval such as '5 minutes'.")));
}

/*
 * Whether a role has the LOGIN attribute (a pg_cron job runs as a login role).
 */
bool
medallion_role_can_login(Oid role)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(role));
	bool		login;

	if (!HeapTupleIsValid(tup))
		return false;
	login = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	return login;
}

/*
 * Removes the pipeline's pg_cron job, if any.
 */
void
medallion_drop_cron_job(const char *pipeline)
{
	const char *args[1];

	if (!OidIsValid(get_extension_oid("pg_cron", true)))
		return;
	args[0] = psprintf("medallion:%s", pipeline);
	catalog_exec_text("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname OPERATOR(pg_catalog.=) $1 "
				 "AND database OPERATOR(pg_catalog.=) pg_catalog.current_database()",
				 1, args);
}

/*
 * Whether a schedule is a cron expression: '@daily' and the like, or five
 * fields whose first is the minutes (digits, '*', '/', ',' and '-').
 */
static bool
is_cron(const char *schedule)
{
	char	   *copy = pstrdup(schedule);
	char	   *save;
	char	   *field = strtok_r(copy, " \t", &save);
	int			nfields = 0;
	bool		minutes_ok;

	if (schedule[0] == '@')
		return true;
	if (field == NULL)
		return false;
	minutes_ok = strspn(field, "0123456789*/,-") == strlen(field);
	for (; field; field = strtok_r(NULL, " \t", &save))
		nfields++;
	return minutes_ok && nfields == 5;
}

/*
 * Warns when every scheduler slot of the cluster is taken by other
 * databases: schedules would then be accepted and never served.
 */
static void
warn_without_slot(const char *name)
{
	if (!medallion_db_slot_available(MyDatabaseId))
		ereport(WARNING,
				(errmsg("no scheduler slot is free for this database"),
				 errdetail_plural("medallion runs schedulers in at most %d database, and it is taken; pipeline \"%s\" will not run on its schedule.",
								  "medallion runs schedulers in at most %d databases, and they are all taken; pipeline \"%s\" will not run on its schedule.",
								  MEDALLION_MAX_DATABASES, MEDALLION_MAX_DATABASES, name),
				 errhint("Drop the extension from a database that does not use it.")));
}

/*
 * medallion.schedule(pipeline, schedule): an interval, a cron expression or
 * 'on_change'.
 */
Datum
medallion_schedule(PG_FUNCTION_ARGS)
{
	Pipeline	p = {0};
	char	   *name = owned_pipeline(fcinfo, &p);
	char	   *schedule;
	const char *kind;
	const char *args[3];

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("schedule must not be NULL"),
				 errhint("Use medallion.unschedule() to remove a schedule.")));
	schedule = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!medallion_run_accepts_layer(p.layer))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot schedule pipeline \"%s\"", name),
				 errdetail("Only silver and gold pipelines, HTTP sources and exports are scheduled; pipeline \"%s\" of layer \"%s\" lands data through ingest functions.",
						   name, p.layer)));
	/* on_change follows bronze landings: neither a source nor an export sees them */
	if ((strcmp(p.layer, "source") == 0 || strcmp(p.layer, "export") == 0) &&
		strcmp(schedule, "on_change") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot schedule pipeline \"%s\" on_change", name),
				 errdetail("An HTTP source or an export learns of new data only when it runs."),
				 errhint("Use an interval such as '5 minutes', or a cron expression.")));

	if (strcmp(schedule, "on_change") == 0)
		kind = "on_change";
	else if (is_cron(schedule))
		kind = "cron";
	else
	{
		Interval   *iv;
		Interval	one_second = {0};

		one_second.time = USECS_PER_SEC;
		PG_TRY();
		{
			iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(schedule),
													   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
		}
		PG_CATCH();
		{
			FlushErrorState();
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid schedule \"%s\"", schedule),
					 errhint("Use an interval such as '30 seconds', a cron expression such as '*/5 * * * *', or 'on_change'.")));
		}
		PG_END_TRY();
		if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(iv),
											  IntervalPGetDatum(&one_second))) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("schedule interval must be at least 1 second")));
		kind = "interval";
		schedule = DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)));
	}

	if (strcmp(kind, "cron") == 0 && !OidIsValid(p.owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", p.owner_name),
				 errdetail("Pipeline \"%s\" is owned by role \"%s\"; its pg_cron job would run as that role.",
						   name, p.owner_name)));
	medallion_drop_cron_job(name);
	if (strcmp(kind, "cron") == 0)
	{
		const char *cron_args[4];

		if (!medallion_role_can_login(p.owner))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("role \"%s\" cannot log in, so pg_cron cannot run the job of pipeline \"%s\"",
							p.owner_name, name),
					 errdetail("A pg_cron job runs as the pipeline's owner, who must have the LOGIN attribute."),
					 errhint("Grant LOGIN to role \"%s\", or use an interval schedule such as '5 minutes'.",
							 p.owner_name)));
		require_pg_cron_here(name, schedule, p.owner_name);

		/*
		 * The job runs as the pipeline's owner, never as the catalog owner
		 * (who makes it: pg_cron lets only a superuser name another user).
		 */
		cron_args[0] = psprintf("medallion:%s", name);
		cron_args[1] = schedule;
		cron_args[2] = psprintf("SELECT medallion.trigger(%s)", quote_literal_cstr(name));
		cron_args[3] = p.owner_name;
		catalog_exec_text("SELECT cron.schedule_in_database($1, $2, $3, "
						  "pg_catalog.current_database()::pg_catalog.text, $4)", 4, cron_args);
	}
	args[0] = name;
	args[1] = schedule;
	args[2] = kind;
	catalog_exec_text("UPDATE medallion.pipelines SET schedule = $2, schedule_kind = $3 "
				 "WHERE name OPERATOR(pg_catalog.=) $1", 3, args);

	if (strcmp(kind, "cron") != 0)
		warn_without_slot(name);
	if (strcmp(kind, "cron") != 0 && !medallion_scheduler_running(MyDatabaseId))
		ereport(WARNING,
				(errmsg("medallion's scheduler is not running in this database"),
				 errdetail("Pipeline \"%s\" will not run on its schedule until it is.", name),
				 errhint("Add medallion to shared_preload_libraries and restart the server.")));
	else
		medallion_wake_scheduler_at_commit();
	PG_RETURN_VOID();
}

/*
 * medallion.unschedule(pipeline)
 */
Datum
medallion_unschedule(PG_FUNCTION_ARGS)
{
	Pipeline	p = {0};
	char	   *name = owned_pipeline(fcinfo, &p);
	const char *args[1];

	medallion_drop_cron_job(name);
	args[0] = name;
	catalog_exec_text("UPDATE medallion.pipelines SET schedule = NULL, schedule_kind = NULL "
				 "WHERE name OPERATOR(pg_catalog.=) $1", 1, args);
	PG_RETURN_VOID();
}

/*
 * medallion.trigger(pipeline): asks the scheduler to run it soon, or, with
 * no scheduler, runs it now.
 */
Datum
medallion_trigger(PG_FUNCTION_ARGS)
{
	Pipeline	p = {0};
	char	   *name = pipeline_arg(fcinfo);
	const char *args[1];

	medallion_require_pipeline(name, &p, false);
	medallion_require_operator(&p, "trigger");

	warn_without_slot(name);
	if (!medallion_scheduler_running(MyDatabaseId))
	{
		(void) DirectFunctionCall3(medallion_run, CStringGetTextDatum(name),
								   BoolGetDatum(false), BoolGetDatum(true));
		PG_RETURN_VOID();
	}
	args[0] = name;
	catalog_exec_text("UPDATE medallion.pipelines SET trigger_requested = true "
				 "WHERE name OPERATOR(pg_catalog.=) $1", 1, args);
	medallion_wake_scheduler_at_commit();
	PG_RETURN_VOID();
}

/*
 * max_rows_per_run given to alter_pipeline() of a silver pipeline: the
 * contract's option, changed by a new contract version, so that the
 * contract stays the one place a run reads its bound from (create_silver
 * and alter_contract set it there too; pipelines.options keeps the copy
 * create_silver made, which alter_pipeline updates with the other options).  Takes the pipeline's row lock as
 * alter_contract does: a run in progress finishes first, the next one reads
 * the new bound.
 */
static void
alter_max_rows(const char *name, JsonbValue *v)
{
	Pipeline	p = {0};
	StringInfoData patch;

	initStringInfo(&patch);
	appendStringInfoString(&patch, "{\"max_rows_per_run\": ");
	if (v->type == jbvNull)
		appendStringInfoString(&patch, "null");
	else if (v->type == jbvNumeric)
		appendStringInfoString(&patch, DatumGetCString(DirectFunctionCall1(numeric_out,
																		   NumericGetDatum(v->val.numeric))));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option max_rows_per_run must be a positive integer or null"),
				 errhint("null removes the bound.")));
	appendStringInfoChar(&patch, '}');

	medallion_require_owned(name, &p, true);
	(void) medallion_contract_alter(&p, NULL,
									DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(patch.data))),
									false);
}

/*
 * A pipeline's description given to alter_pipeline() becomes its table's
 * COMMENT (null removes it), run as the caller, who has the privileges of
 * the table's owner (COMMENT needs them); the table found by OID.
 */
static void
comment_table(const Pipeline *p, JsonbValue *v)
{
	Oid			nsp = get_namespace_oid(p->layer, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(p->relname, nsp) : InvalidOid;
	char	   *sql;

	if (!OidIsValid(relid))
		return;
	sql = psprintf("COMMENT ON TABLE %s IS %s",
				   quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
											  get_rel_name(relid)),
				   v->type == jbvString ?
				   quote_literal_cstr(pnstrdup(v->val.string.val, v->val.string.len)) : "NULL");
	SPI_connect();
	medallion_own_ddl_begin();
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not comment on the table of pipeline \"%s\"", p->name);
	medallion_own_ddl_end();
	SPI_finish();
}

/*
 * medallion.alter_pipeline(pipeline, options): merges options into the
 * pipeline's (null removes a key); steward and description have their own
 * columns; max_rows_per_run of a silver pipeline is its contract's.
 */
Datum
medallion_alter_pipeline(PG_FUNCTION_ARGS)
{
	Pipeline	p = {0};
	char	   *name = owned_pipeline(fcinfo, &p);
	Jsonb	   *opts;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	const char *args[2];
	const MedallionOption *o;
	StringInfoData check;
	JsonbValue *max_rows;
	JsonbValue *v_desc;
	JsonbValue *gold_columns;
	JsonbValue *v_owner;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("options must not be NULL")));
	opts = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_OBJECT(opts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	/* an HTTP source's or an export's own options change its definition (net/) */
	if (strcmp(p.layer, "source") == 0)
		opts = medallion_source_alter(name, p.definition, opts);
	else if (strcmp(p.layer, "export") == 0)
		opts = medallion_export_alter(name, p.definition, opts);
	/* a gold model's "query": the next version of its definition (gold/alter.c) */
	else if (strcmp(p.layer, "gold") == 0)
		opts = medallion_gold_alter(name, opts);
	max_rows = getKeyJsonValueFromContainer(&opts->root, "max_rows_per_run",
											strlen("max_rows_per_run"), NULL);
	if (max_rows && strcmp(p.layer, "silver") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option max_rows_per_run applies to silver pipelines only"),
				 errdetail("Pipeline \"%s\" is of layer \"%s\".", name, p.layer),
				 errhint("Bound the run with option time_budget instead.")));
	/* a gold model's output column descriptions: its column comments */
	gold_columns = getKeyJsonValueFromContainer(&opts->root, "columns", strlen("columns"), NULL);
	if (gold_columns && strcmp(p.layer, "gold") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option columns applies to gold models only"),
				 errdetail("Pipeline \"%s\" is of layer \"%s\".", name, p.layer),
				 errhint("A silver pipeline's column descriptions are its contract's: medallion.alter_contract(pipeline, '{\"column\": {\"description\": \"...\"}}').")));
	it = JsonbIteratorInit(&opts->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		bool		ok = false;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		for (o = medallion_options; o->name; o++)
			ok |= (strcmp(key, o->name) == 0);
		if (!ok && strcmp(key, "max_rows_per_run") != 0 && strcmp(key, "columns") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized pipeline option \"%s\"", key),
					 errhint("Valid options are freshness_sla, time_budget, max_retries, retry_base, retry_cap, breaker_threshold, breaker_cooldown, max_bad_ratio, drift_min_rows, backfill_max_days, backfill_max_rows, max_rows_per_run (silver), query and columns (gold), steward, description and owner.")));
		if (strcmp(key, "max_bad_ratio") == 0 || strcmp(key, "drift_min_rows") == 0)
		{
			tok = JsonbIteratorNext(&it, &v, true);
			if (v.type == jbvNumeric)
				medallion_drift_check_option(key, DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric))));
			else if (v.type == jbvString)
				medallion_drift_check_option(key, pnstrdup(v.val.string.val, v.val.string.len));
		}
	}

	args[0] = name;
	args[1] = JsonbToCString(NULL, &opts->root, VARSIZE(opts));
	/* typed checks of the values, in SQL: a bad one is a clear cast error */
	initStringInfo(&check);
	appendStringInfoString(&check, "SELECT $1");
	for (o = medallion_options; o->name; o++)
		appendStringInfo(&check, ", (o OPERATOR(pg_catalog.->>) %s)::pg_catalog.%s",
						 quote_literal_cstr(o->name), o->type);
	appendStringInfoString(&check, " FROM (SELECT $2::pg_catalog.jsonb AS o) x");
	catalog_exec_text(check.data, 2, args);
	catalog_exec_text("UPDATE medallion.pipelines SET "
					  "options = pg_catalog.jsonb_strip_nulls(options OPERATOR(pg_catalog.||) "
					  "  ($2::pg_catalog.jsonb OPERATOR(pg_catalog.-) "
					  "   ARRAY['steward', 'description', 'owner']::pg_catalog.text[])), "
					  "steward = CASE WHEN $2::pg_catalog.jsonb OPERATOR(pg_catalog.?) 'steward' "
					  "  THEN $2::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'steward' ELSE steward END, "
					  "description = CASE WHEN $2::pg_catalog.jsonb OPERATOR(pg_catalog.?) 'description' "
					  "  THEN $2::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'description' ELSE description END "
					  "WHERE name OPERATOR(pg_catalog.=) $1", 2, args);
	if ((v_desc = getKeyJsonValueFromContainer(&opts->root, "description", strlen("description"), NULL)) != NULL)
		comment_table(&p, v_desc);
	if (gold_columns)
		medallion_gold_alter_columns(&p, gold_columns);
	if (max_rows)
		alter_max_rows(name, max_rows);
	/* last: the checks above were the current owner's */
	if ((v_owner = getKeyJsonValueFromContainer(&opts->root, "owner", strlen("owner"), NULL)) != NULL)
	{
		if (v_owner->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option owner must be a role name")));
		medallion_require_owned(name, &p, true);
		medallion_pipeline_set_owner(&p, pnstrdup(v_owner->val.string.val, v_owner->val.string.len));
	}
	PG_RETURN_VOID();
}
