/*-------------------------------------------------------------------------
 *
 * backfill.c
 *	  medallion.backfill() and medallion.backfill_plan(): reprocessing a
 *	  date range of a silver or gold pipeline.
 *
 * A backfill is a run of its own kind ('backfill', its strategy and range
 * in runs.detail), under the same run lock as incremental runs (the
 * pipeline's row, FOR NO KEY UPDATE): a manual run() waits for it, or with
 * wait => false is recorded 'skipped'.  It is synchronous, in the caller's
 * transaction: all or nothing.  Only the pipeline's owner (or a member of
 * that role) may backfill; its work runs as the owner with the run's
 * settings pinned, as a run's does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "backfill/backfill.h"
#include "ops/ops.h"

PG_FUNCTION_INFO_V1(medallion_backfill);
PG_FUNCTION_INFO_V1(medallion_backfill_plan);
PG_FUNCTION_INFO_V1(medallion_rollback);

/* What options may say. */
static const char *const backfill_option_names[] = {"force", "async", "max_row_change", "checks", "keep", NULL};

/* A jsonb option's text, or NULL. */
static char *
option_text(Jsonb *options, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	if (options == NULL)
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&options->root, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvBool)
		return pstrdup(v->val.boolean ? "true" : "false");
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	return "";
}

/* Refuses options that are not an object of known keys. */
static void
check_options(Jsonb *options)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(options) || JB_ROOT_IS_SCALAR(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		const char *const *n;
		char	   *key;
		bool		ok = false;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		for (n = backfill_option_names; *n; n++)
			ok |= (strcmp(key, *n) == 0);
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized backfill option \"%s\"", key),
					 errhint("Valid options are force, async, max_row_change, checks and keep.")));
	}
	{
		char	   *force = option_text(options, "force");
		char	   *async = option_text(options, "async");

		if (force && strcmp(force, "true") != 0 && strcmp(force, "false") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("backfill option \"force\" must be a boolean")));
		if (async && strcmp(async, "true") != 0 && strcmp(async, "false") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("backfill option \"async\" must be a boolean")));
	}
}

/*
 * The blue_green options: max_row_change (a fraction, default 0.1), checks
 * (an array of queries returning one boolean), keep (an interval, default
 * 7 days).
 */
static void
read_blue_green_options(Jsonb *options, BackfillRequest *req)
{
	char	   *text = option_text(options, "max_row_change");
	JsonbValue	k;
	JsonbValue *v;

	req->max_row_change = 0.1;
	req->keep = "7 days";
	if (text)
	{
		char	   *end;

		req->max_row_change = strtod(text, &end);
		if (*text == '\0' || *end != '\0' || req->max_row_change < 0 || isnan(req->max_row_change))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("backfill option \"max_row_change\" must be a number at least 0"),
					 errdetail("It is a fraction of the current row count: 0.1 tolerates 10%%.")));
	}
	if ((text = option_text(options, "keep")) != NULL)
	{
		/* checked by the interval type itself */
		(void) DirectFunctionCall3(interval_in, CStringGetDatum(text), ObjectIdGetDatum(InvalidOid),
								   Int32GetDatum(-1));
		req->keep = text;
	}
	if (options == NULL)
		return;
	k.type = jbvString;
	k.val.string.val = "checks";
	k.val.string.len = 6;
	v = findJsonbValueFromContainer(&options->root, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return;
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("backfill option \"checks\" must be an array of queries")));
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (e.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("backfill option \"checks\" must be an array of queries")));
			req->checks = lappend(req->checks, pnstrdup(e.val.string.val, e.val.string.len));
		}
	}
}

/*
 * Reads and checks the arguments common to backfill() and backfill_plan():
 * pipeline, from_date, to_date, strategy.
 */
static void
read_request(FunctionCallInfo fcinfo, BackfillRequest *req)
{
	DateADT		from;
	DateADT		to;

	memset(req, 0, sizeof(*req));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline must not be NULL")));
	req->pipeline = text_to_cstring(PG_GETARG_TEXT_PP(0));
	req->strategy = PG_ARGISNULL(3) ? "partition" : text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (strcmp(req->strategy, "partition") != 0 && strcmp(req->strategy, "full") != 0 &&
		strcmp(req->strategy, "blue_green") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized backfill strategy \"%s\"", req->strategy),
				 errhint("Valid strategies are partition, full and blue_green.")));
	if (PG_ARGISNULL(1) != PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_date and to_date must both be given, or both be NULL"),
				 errdetail("NULL dates mean the whole history.")));
	req->whole = PG_ARGISNULL(1);
	if (req->whole)
		return;
	if (strcmp(req->strategy, "full") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a full backfill takes no dates"),
				 errdetail("Strategy full rebuilds the whole history."),
				 errhint("Pass NULL for from_date and to_date, or use strategy partition or blue_green for a range.")));
	from = PG_GETARG_DATEADT(1);
	to = PG_GETARG_DATEADT(2);
	if (DATE_NOT_FINITE(from) || DATE_NOT_FINITE(to))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("backfill dates must be finite")));
	if (from > to)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_date %s is after to_date %s", backfill_day_text(from), backfill_day_text(to))));
	req->from_day = from;
	req->to_day = to;
}

/*
 * Finds the pipeline (locked: the run lock) and checks who may backfill it
 * and whether it can be.
 */
static void
require_backfillable(const BackfillRequest *req, Pipeline *p, bool lock)
{
	if (!medallion_pipeline_lookup(req->pipeline, p, lock, false, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", req->pipeline),
				 errhint("Pipelines are listed in medallion.pipelines.")));
	if (!OidIsValid(p->owner) || !has_privs_of_role(GetUserId(), p->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of pipeline \"%s\"", p->name),
				 errdetail("Only the pipeline's owner (or a member of that role) may backfill it.")));
	if (strcmp(p->layer, "silver") != 0 && strcmp(p->layer, "gold") != 0)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_BACKFILL_LAYER),
				 errmsg("cannot backfill pipeline \"%s\" of layer \"%s\"", p->name, p->layer),
				 errdetail("Only silver and gold pipelines are backfilled: they are computed from what lies upstream."),
				 errhint("Backfill the silver pipelines that read it.")));
	medallion_policy_check_runnable(p, false);
	/* its table must be the owner's (refused otherwise) */
	(void) medallion_pipeline_table(p);
}

/* The pipeline's budgets (alter_pipeline options), as the catalog owner. */
static void
read_budgets(const char *pipeline, int64 *max_days, int64 *max_rows)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(pipeline)};
	List	   *rows;
	MedallionRow *row;

	*max_days = *max_rows = -1;
	rows = medallion_catalog_query("SELECT (options OPERATOR(pg_catalog.->>) 'backfill_max_days'::pg_catalog.text)::pg_catalog.int8, "
								   "(options OPERATOR(pg_catalog.->>) 'backfill_max_rows'::pg_catalog.text)::pg_catalog.int8 "
								   "FROM medallion.pipelines WHERE name OPERATOR(pg_catalog.=) $1",
								   1, t, v, NULL);
	if (rows == NIL)
		return;
	row = linitial(rows);
	if (!row->nulls[0])
		*max_days = DatumGetInt64(row->values[0]);
	if (!row->nulls[1])
		*max_rows = DatumGetInt64(row->values[1]);
}

/* Refuses a plan over the pipeline's budgets, unless forced. */
static void
check_budgets(const BackfillRequest *req, const BackfillPlan *plan)
{
	int64		max_days;
	int64		max_rows;

	read_budgets(req->pipeline, &max_days, &max_rows);
	if (req->force)
		return;
	if (max_days >= 0 && plan->ndays > max_days)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_BACKFILL_OVER_BUDGET),
				 errmsg("backfill of pipeline \"%s\" covers %d days, over its budget of %lld",
						req->pipeline, plan->ndays, (long long) max_days),
				 errhint("Narrow the range, raise backfill_max_days with medallion.alter_pipeline(), or pass options {\"force\": true}.")));
	if (max_rows >= 0 && plan->est_rows > max_rows)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_BACKFILL_OVER_BUDGET),
				 errmsg("backfill of pipeline \"%s\" reads about %lld rows, over its budget of %lld",
						req->pipeline, (long long) plan->est_rows, (long long) max_rows),
				 errhint("Narrow the range, raise backfill_max_rows with medallion.alter_pipeline(), or pass options {\"force\": true}.")));
}

/* The strategy and range of a backfill, as JSON members. */
static char *
detail_key(const BackfillRequest *req)
{
	char	   *range = req->whole ? "null" :
		psprintf("[\"%s\", \"%s\"]", backfill_day_text(req->from_day), backfill_day_text(req->to_day));

	return psprintf("\"strategy\": \"%s\", \"range\": %s", req->strategy, range);
}

/* runs.detail of a backfill, as the catalog owner. */
static void
record_detail(int64 run_id, const BackfillRequest *req, const BackfillPlan *plan, int64 removed,
			  bool whole_model, int32 definition_version)
{
	Oid			t[2] = {INT8OID, JSONBOID};
	Datum		v[2];

	/* definition_version: the contract or query version the backfill built */
	v[0] = Int64GetDatum(run_id);
	v[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(
		psprintf("{%s, \"days\": %d, \"est_rows\": %lld, "
				 "\"removed\": %lld, \"forced\": %s, \"whole_model\": %s, \"async\": %s, "
				 "\"definition_version\": %d}",
				 detail_key(req), plan->ndays, (long long) plan->est_rows,
				 (long long) removed, req->force ? "true" : "false", whole_model ? "true" : "false",
				 req->async ? "true" : "false", definition_version)));
	(void) medallion_catalog_exec("UPDATE medallion.runs SET detail = $2 "
								  "WHERE run_id OPERATOR(pg_catalog.=) $1",
								  2, t, v, NULL, SPI_OK_UPDATE);
}

/* A blue-green backfill, as a subtransaction's work. */
typedef struct BlueGreenAttempt
{
	Pipeline   *p;
	int64		run_id;
	BackfillRequest *req;
	RunCounts  *counts;
	int64	   *removed;
} BlueGreenAttempt;

static void
attempt_blue_green(void *arg)
{
	BlueGreenAttempt *a = arg;

	if (strcmp(a->p->layer, "gold") == 0)
		a->counts->read = a->counts->inserted = backfill_gold_rebuild(a->p, a->run_id, a->req);
	else
		backfill_blue_green(a->p, a->run_id, a->req, a->counts, a->removed);
}

/*
 * medallion.backfill(pipeline, from_date, to_date, strategy, dry_run,
 * options) → the run id (NULL for a dry run)
 */
Datum
medallion_backfill(PG_FUNCTION_ARGS)
{
	BackfillRequest req;
	BackfillPlan plan;
	Pipeline	p = {0};
	Jsonb	   *options = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);
	bool		dry_run = !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	RunCounts	counts = {0};
	int64		run_id;
	int64		removed = 0;
	bool		whole_model = false;
	char	   *force;

	read_request(fcinfo, &req);
	if (options)
		check_options(options);
	force = option_text(options, "force");
	req.force = force && strcmp(force, "true") == 0;
	force = option_text(options, "async");
	req.async = force && strcmp(force, "true") == 0;
	if (req.async && strcmp(req.strategy, "partition") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("only partition backfills run asynchronously"),
				 errdetail("Strategies full and blue_green swap a whole version at once, in one transaction.")));
	read_blue_green_options(options, &req);

	/* checked before the plan reads anything; again once the run lock is held */
	require_backfillable(&req, &p, false);
	backfill_plan_make(&p, &req, &plan);
	check_budgets(&req, &plan);
	if (dry_run)
	{
		ereport(NOTICE,
				(errmsg("backfill of pipeline \"%s\" would recompute %d days, about %lld rows",
						p.name, plan.ndays, (long long) plan.est_rows),
				 errdetail("medallion.backfill_plan() lists the days.")));
		PG_RETURN_NULL();
	}

	if (req.async)
	{
		if (plan.days != NIL && ((BackfillDay *) linitial(plan.days))->day == BACKFILL_NO_DAY)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("gold model \"%s\" has no partitions to backfill day by day", p.name),
					 errdetail("A model without partitions is recomputed whole, in one transaction."),
					 errhint("Backfill it without options.async.")));
		/* the same backfill asked again: it resumes, once */
		run_id = backfill_async_running(p.name, psprintf("{%s}", detail_key(&req)));
		if (run_id != 0)
		{
			ereport(NOTICE,
					(errmsg("backfill %lld of pipeline \"%s\" is already running; it resumes at its first day not done",
							(long long) run_id, p.name)));
			PG_RETURN_INT64(run_id);
		}
		run_id = medallion_run_record_start(p.name, "backfill", "running", 0);
		record_detail(run_id, &req, &plan, 0, false, p.definition_version);
		backfill_async_queue(p.name, run_id, &plan);
		if (plan.ndays == 0)
			medallion_run_record_finish(run_id, "succeeded", &counts, NULL, NULL);
		PG_RETURN_INT64(run_id);
	}

	require_backfillable(&req, &p, true);
	run_id = medallion_run_record_start(p.name, "backfill", "running", 0);
	if (strcmp(p.layer, "gold") == 0 && strcmp(req.strategy, "partition") == 0)
		whole_model = medallion_gold_backfill(&p, run_id, req.from_day, req.to_day,
											  req.whole, &counts);
	else if (strcmp(p.layer, "gold") == 0 && strcmp(req.strategy, "full") == 0)
	{
		/* built aside from the query, swapped in (gold_rebuild.c) */
		counts.read = counts.inserted = backfill_gold_rebuild(&p, run_id, &req);
		whole_model = true;
	}
	else if (strcmp(req.strategy, "blue_green") == 0)
	{
		BlueGreenAttempt attempt = {&p, run_id, &req, &counts, &removed};
		ErrorData  *edata = medallion_try(attempt_blue_green, &attempt, true);

		if (edata && edata->sqlerrcode != MEDALLION_ERRCODE_BACKFILL_INVALID)
			ReThrowError(edata);
		if (edata)
		{
			/* nothing swapped: the run failed, and says why */
			memset(&counts, 0, sizeof(counts));
			record_detail(run_id, &req, &plan, 0, false, p.definition_version);
			medallion_run_record_finish(run_id, "failed", &counts, edata, "business_rule");
			medallion_alert_raise(p.name, "backfill", edata->detail ? edata->detail : edata->message);
			ereport(WARNING,
					(errmsg("run %lld of pipeline \"%s\" failed: %s", (long long) run_id, p.name, edata->message),
					 edata->detail ? errdetail("%s", edata->detail) : 0,
					 errhint("Nothing was swapped: the current version is untouched.")));
			PG_RETURN_INT64(run_id);
		}
	}
	else if (strcmp(req.strategy, "full") == 0)
		backfill_silver_full(&p, run_id, &req, &counts, &removed);
	else
		backfill_silver_partition(&p, run_id, &req, NULL, &counts, &removed);
	record_detail(run_id, &req, &plan, removed, whole_model, p.definition_version);
	medallion_run_record_finish(run_id, "succeeded", &counts, NULL, NULL);
	PG_RETURN_INT64(run_id);
}

/*
 * medallion.backfill_plan(pipeline, from_date, to_date, strategy)
 *   → TABLE(day date, est_rows bigint, action text)
 */
Datum
medallion_backfill_plan(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BackfillRequest req;
	BackfillPlan plan;
	Pipeline	p = {0};
	ListCell   *lc;

	read_request(fcinfo, &req);
	require_backfillable(&req, &p, false);
	backfill_plan_make(&p, &req, &plan);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	foreach(lc, plan.days)
	{
		BackfillDay *d = lfirst(lc);
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = DateADTGetDatum(d->day);
		nulls[0] = (d->day == BACKFILL_NO_DAY);
		values[1] = Int64GetDatum(d->est_rows);
		values[2] = CStringGetTextDatum(d->action);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * medallion.rollback(pipeline): the version a blue-green backfill replaced,
 * swapped back in with the watermark and definition version it had, while
 * it is kept.
 */
Datum
medallion_rollback(PG_FUNCTION_ARGS)
{
	BackfillRequest req = {0};
	Pipeline	p = {0};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline must not be NULL")));
	req.pipeline = text_to_cstring(PG_GETARG_TEXT_PP(0));
	req.strategy = "blue_green";
	require_backfillable(&req, &p, true);
	if (!backfill_rollback(&p))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pipeline \"%s\" has no version to roll back to", p.name),
				 errdetail("A blue-green backfill keeps the version it replaced for options.keep (7 days by default)."),
				 errhint("Recompute the range with medallion.backfill() instead.")));
	PG_RETURN_VOID();
}
