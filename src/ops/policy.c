/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  The pipeline state machine: whether a pipeline may run, and what a
 *	  failure, a success, pause() or resume() does to its state, retries
 *	  and circuit breaker.  Also the pipeline options and their defaults.
 *
 * Every transition is decided by next_state() below, in C; the catalog
 * statements only store what it decided.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "ops/ops.h"

/*
 * The pipeline options (medallion.pipelines.options), their types and
 * defaults: the one place that knows them.  alter_pipeline() accepts these
 * keys only; steward, description and owner go to columns of their own
 * (owner: ownership.c gives the pipeline, and its table, to that role).
 */
const MedallionOption medallion_options[] = {
	{"freshness_sla", "interval", NULL},
	{"time_budget", "interval", NULL},
	{"max_retries", "int4", "3"},
	{"retry_base", "interval", "1 second"},
	{"retry_cap", "interval", "5 minutes"},
	{"breaker_threshold", "int4", "5"},
	{"breaker_cooldown", "interval", "5 minutes"},
	{"max_bad_ratio", "float8", NULL},
	{"drift_min_rows", "int8", "10"},
	{"steward", "text", NULL},
	{"description", "text", NULL},
	{"owner", "text", NULL},
	{"backfill_max_days", "int4", NULL},
	{"backfill_max_rows", "int8", NULL},
	{NULL, NULL, NULL}
};

/*
 * An option's default ("" when it has none).
 */
static const char *
option_default(const char *name)
{
	const MedallionOption *o;

	for (o = medallion_options; o->name; o++)
		if (strcmp(o->name, name) == 0)
			return o->dflt ? o->dflt : "";
	elog(ERROR, "no pipeline option \"%s\"", name);
	return NULL;				/* keep compiler quiet */
}

/*
 * A pipeline's state, from its text form in medallion.pipelines.state.
 */
PipelineState
medallion_pipeline_state(const char *state)
{
	if (strcmp(state, "active") == 0)
		return PIPELINE_ACTIVE;
	if (strcmp(state, "paused") == 0)
		return PIPELINE_PAUSED;
	if (strcmp(state, "halted") == 0)
		return PIPELINE_HALTED;
	if (strcmp(state, "circuit_open") == 0)
		return PIPELINE_CIRCUIT_OPEN;
	elog(ERROR, "unexpected pipeline state \"%s\"", state);
	return PIPELINE_HALTED;		/* keep compiler quiet */
}

static const char *const state_names[] = {
	[PIPELINE_ACTIVE] = "active",
	[PIPELINE_PAUSED] = "paused",
	[PIPELINE_HALTED] = "halted",
	[PIPELINE_CIRCUIT_OPEN] = "circuit_open",
};

/*
 * The state machine.  What each event does to each state:
 *
 *   event \ state       active        paused   halted        circuit_open
 *   ------------------  ------------  -------  ------------  ------------
 *   pause()             paused        paused   paused        paused
 *   resume()            active        active   active        active
 *   success             active        paused   halted        active
 *   failure             active        paused   halted        circuit_open
 *   failure, trips      circuit_open  paused   circuit_open  circuit_open
 *   failure, halts      halted        paused   halted        halted
 *
 * "trips": the breaker opens (breaker_threshold consecutive failures, or
 * max_retries transient retries spent); a failed trial run of a
 * circuit_open pipeline re-opens it.  "halts": a scheduled run met a schema
 * or infrastructure error, which only an operator can fix.  A pause asked
 * for while a run held the pipeline is folded in when the run ends, so the
 * pipeline ends paused whatever the run did.  resume() also forgets the
 * failures, retries and the breaker.
 *
 * The scheduler retries a transient failure after retry_at, and tries a
 * circuit_open pipeline once breaker_cooldown has passed (a trial); a manual
 * run() runs active pipelines only (medallion_policy_check_runnable).
 */
static PipelineState
next_state(PipelineState from, PipelineEvent event)
{
	switch (event)
	{
		case PIPELINE_EVENT_PAUSE:
			return PIPELINE_PAUSED;
		case PIPELINE_EVENT_RESUME:
			return PIPELINE_ACTIVE;
		case PIPELINE_EVENT_SUCCESS:
			return from == PIPELINE_CIRCUIT_OPEN ? PIPELINE_ACTIVE : from;
		case PIPELINE_EVENT_FAILURE:
			return from;
		case PIPELINE_EVENT_FAILURE_TRIPS:
			return from == PIPELINE_PAUSED ? from : PIPELINE_CIRCUIT_OPEN;
		case PIPELINE_EVENT_FAILURE_HALTS:
			return from == PIPELINE_PAUSED ? from : PIPELINE_HALTED;
	}
	elog(ERROR, "unexpected pipeline event %d", (int) event);
	return from;				/* keep compiler quiet */
}

/*
 * The text form of the state an event leads to.
 */
const char *
medallion_policy_next_state(const char *from, PipelineEvent event)
{
	return state_names[next_state(medallion_pipeline_state(from), event)];
}

/*
 * Refuses a run the pipeline's state does not allow: only an active
 * pipeline runs, and a circuit_open one for a scheduled trial.
 */
void
medallion_policy_check_runnable(const Pipeline *p, bool scheduled)
{
	switch (medallion_pipeline_state(p->state))
	{
		case PIPELINE_ACTIVE:
			return;
		case PIPELINE_PAUSED:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pipeline \"%s\" is paused", p->name),
					 errhint("Run medallion.resume(%s) to let it run again.", quote_literal_cstr(p->name))));
			break;
		case PIPELINE_HALTED:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pipeline \"%s\" is halted", p->name),
					 errhint("Run medallion.resume(%s) to let it run again.", quote_literal_cstr(p->name))));
			break;
		case PIPELINE_CIRCUIT_OPEN:
			if (scheduled)
				return;			/* a trial */
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pipeline \"%s\" is circuit-open", p->name),
					 errhint("Run medallion.resume(%s) to let it run again.", quote_literal_cstr(p->name))));
			break;
	}
}

/*
 * Whether the scheduler should look at a pipeline: not while paused or
 * halted (a circuit_open one gets its trial).
 */
bool
medallion_policy_schedulable(const Pipeline *p)
{
	switch (medallion_pipeline_state(p->state))
	{
		case PIPELINE_ACTIVE:
		case PIPELINE_CIRCUIT_OPEN:
			return true;
		case PIPELINE_PAUSED:
		case PIPELINE_HALTED:
			return false;
	}
	return false;
}

/*
 * Folds a pause asked for while a run held the pipeline into its state,
 * unless another transaction holds the row (never waits; this one's own
 * lock is no obstacle: a run folds it at its end).
 */
void
medallion_pause_fold(const char *pipeline)
{
	MedallionGateway gw;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	if (!medallion_catalog_has_pause_requests())
		return;					/* a 0.1.0 catalog, not yet updated */
	values[0] = CStringGetTextDatum(pipeline);
	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec("SELECT 1 FROM medallion.pause_requests "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1",
							   1, argtypes, values, NULL, 1, SPI_OK_SELECT) == 1 &&
		medallion_gateway_exec("SELECT 1 FROM medallion.pipelines "
							   "WHERE name OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE SKIP LOCKED",
							   1, argtypes, values, NULL, 1, SPI_OK_SELECT) == 1 &&
		medallion_gateway_exec("DELETE FROM medallion.pause_requests "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1",
							   1, argtypes, values, NULL, 0, SPI_OK_DELETE) > 0)
		(void) medallion_gateway_exec("UPDATE medallion.pipelines SET state = 'paused' "
									  "WHERE name OPERATOR(pg_catalog.=) $1",
									  1, argtypes, values, NULL, 0, SPI_OK_UPDATE);
	medallion_gateway_leave(&gw);
}

/*
 * The length of an interval option in microseconds, as
 * date_part('epoch', interval) counts it (a month is 30 days, a year
 * 365.25).
 */
double
medallion_option_usecs(const char *text)
{
	Interval   *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in,
														   CStringGetDatum(text),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));

	return (double) iv->time +
		((double) (iv->month / MONTHS_PER_YEAR) * DAYS_PER_YEAR +
		 (double) (iv->month % MONTHS_PER_YEAR) * DAYS_PER_MONTH +
		 (double) iv->day) * USECS_PER_DAY;
}

/*
 * When the scheduler tries a circuit_open pipeline once more: its
 * breaker_cooldown (as set, NULL for the default) after the breaker opened;
 * at once when the opening time is not known.
 */
TimestampTz
medallion_policy_trial_at(bool opened, TimestampTz opened_at, const char *cooldown)
{
	if (!opened)
		return DT_NOBEGIN;
	if (cooldown == NULL)
		cooldown = option_default("breaker_cooldown");
	return opened_at + (int64) medallion_option_usecs(cooldown);
}

/*
 * The text of option "key" in a row read by policy_after_failure (column
 * "col"), or its default.
 */
static const char *
row_option(int col, const char *key)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);

	return v ? v : option_default(key);
}

/*
 * After a failed run: the strategy of its class, as recorded in
 * medallion.runs: medallion_error_class(), or 'over_budget' (stopped by the
 * pipeline's own time budget), or 'crashed' (its process ended
 * abnormally).
 *
 * - transient (scheduled runs): retry after an exponential backoff with
 *   jitter, at most max_retries times in a row;
 * - schema, infrastructure (scheduled runs): halt the pipeline and alert;
 *   payload drift (MD050-MD052) halts manual runs too, alert schema_change;
 * - over budget: alert (no blind retry); a cancel: nothing more;
 * - every other failure counts toward the circuit breaker:
 *   breaker_threshold consecutive failures open it (alert); a failed trial
 *   re-opens it.
 *
 * A paused pipeline keeps its state and its counters.  Runs as the catalog
 * owner.
 */
void
medallion_policy_after_failure(const char *pipeline, ErrorData *edata, const char *class,
							   bool scheduled)
{
	bool		budget = (strcmp(class, "over_budget") == 0);

	/*
	 * A manual run's caller sees its error: only a scheduled one halts.
	 * Payload drift halts every run: it is a property of the data.
	 */
	bool		drift = medallion_error_is_drift(edata->sqlerrcode);
	bool		halt = drift || (scheduled &&
								 (strcmp(class, "schema") == 0 || strcmp(class, "infrastructure") == 0));
	bool		retry = scheduled && strcmp(class, "transient") == 0;
	MedallionGateway gw;
	Oid			types[6] = {TEXTOID, TEXTOID, INT4OID, INT4OID, FLOAT8OID, BOOLOID};
	Datum		values[6];
	char		nulls[6] = "      ";
	const char *from;
	const char *state = NULL;
	char	   *message = medallion_capped_message(edata->message);
	int			failures;
	int			attempt;
	bool		trips;
	PipelineEvent event;

	if (strcmp(class, "cancelled") == 0)
		return;

	medallion_catalog_enter(&gw);
	values[0] = CStringGetTextDatum(pipeline);
	if (medallion_gateway_exec("SELECT state, consecutive_failures, retry_attempt, "
							   "options OPERATOR(pg_catalog.->>) 'max_retries', "
							   "options OPERATOR(pg_catalog.->>) 'breaker_threshold', "
							   "options OPERATOR(pg_catalog.->>) 'retry_base', "
							   "options OPERATOR(pg_catalog.->>) 'retry_cap' "
							   "FROM medallion.pipelines WHERE name OPERATOR(pg_catalog.=) $1 "
							   "FOR NO KEY UPDATE",
							   1, types, values, NULL, 1, SPI_OK_SELECT) == 1)
	{
		int			max_retries = pg_strtoint32(row_option(4, "max_retries"));
		int			threshold = pg_strtoint32(row_option(5, "breaker_threshold"));
		double		delay = 0;
		bool		isnull;

		from = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		failures = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		attempt = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));

		/* the next retry: base * 2^attempt, capped, with +-25% jitter */
		if (retry && attempt < max_retries)
		{
			delay = Min(medallion_option_usecs(row_option(7, "retry_cap")),
						medallion_option_usecs(row_option(6, "retry_base")) * pow(2.0, attempt));
			delay *= 0.75 + 0.5 * pg_prng_double(&pg_global_prng_state);
		}
		/* an HTTP server's Retry-After: the retry comes no sooner */
		if (delay > 0)
		{
			int			retry_after = medallion_net_take_retry_after();

			if (retry_after >= 0)
				delay = Max(delay, (double) retry_after * USECS_PER_SEC);
		}
		trips = medallion_pipeline_state(from) == PIPELINE_CIRCUIT_OPEN ||
			failures + 1 >= threshold ||
			(retry && attempt >= max_retries);
		event = halt ? PIPELINE_EVENT_FAILURE_HALTS :
			trips ? PIPELINE_EVENT_FAILURE_TRIPS : PIPELINE_EVENT_FAILURE;
		state = medallion_policy_next_state(from, event);

		if (medallion_pipeline_state(from) != PIPELINE_PAUSED)
		{
			values[1] = CStringGetTextDatum(state);
			values[2] = Int32GetDatum(failures + 1);
			values[3] = Int32GetDatum(retry ? attempt + 1 : 0);
			values[4] = Float8GetDatum(delay / USECS_PER_SEC);
			if (delay <= 0)
				nulls[4] = 'n';
			/* the breaker (re)opens now */
			values[5] = BoolGetDatum(event == PIPELINE_EVENT_FAILURE_TRIPS);
			(void) medallion_gateway_exec("UPDATE medallion.pipelines SET state = $2, "
										  "consecutive_failures = $3, retry_attempt = $4, "
										  "retry_at = pg_catalog.now() OPERATOR(pg_catalog.+) "
										  "  pg_catalog.make_interval(secs => $5), "
										  "circuit_opened_at = CASE WHEN $6 THEN pg_catalog.now() "
										  "  ELSE circuit_opened_at END "
										  "WHERE name OPERATOR(pg_catalog.=) $1",
										  6, types, values, nulls, 0, SPI_OK_UPDATE);
		}
		else
			state = NULL;
		if (state)
			state = pstrdup(state);
	}
	medallion_gateway_leave(&gw);
	medallion_pause_fold(pipeline);

	if (budget)
		medallion_alert_raise(pipeline, "over_budget", message);
	if (state && strcmp(state, "halted") == 0 && drift)
		medallion_alert_raise(pipeline, "schema_change",
							  psprintf("payload drift, pipeline halted until resume(): %s", message));
	else if (state && strcmp(state, "halted") == 0)
		medallion_alert_raise(pipeline, "halted",
							  psprintf("%s error, pipeline halted until resume(): %s", class, message));
	else if (state && strcmp(state, "circuit_open") == 0)
		medallion_alert_raise(pipeline, "circuit_open",
							  psprintf("circuit breaker open after repeated failures: %s", message));
}

/*
 * After a successful run: the run recorded as succeeded with its counts,
 * failures forgotten, a trial closes the breaker, a pause asked for during
 * the run is folded in, and the alerts the failures raised are resolved (a
 * run that fits its budget again resolves over_budget).  One catalog
 * statement; runs while the run holds the pipeline's row.
 */
void
medallion_policy_after_success(const char *pipeline, int64 run_id, const RunCounts *c)
{
	MedallionGateway gw;
	Oid			types[13] = {TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
	INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		values[13];
	List	   *resolved = NIL;
	ListCell   *lc;
	uint64		i;
	bool		pauses = medallion_catalog_has_pause_requests();
	MemoryContext callercxt = CurrentMemoryContext;

	/*
	 * the run's row, as medallion_run_record_finish() writes it (a 0.1.0
	 * catalog, which has no pause requests, has no usage columns either)
	 */
#define SUCCESS_RUN \
	"WITH r AS (UPDATE medallion.runs SET status = 'succeeded', " \
	"  finished_at = pg_catalog.clock_timestamp(), " \
	"  rows_read = $3, rows_inserted = $4, rows_updated = $5, rows_unchanged = $6, " \
	"  rows_dlq = $7, rows_quarantined = $8, rows_dropped = $9, rows_warned = $10, " \
	"  shared_blks_hit = $11, shared_blks_read = $12, wal_bytes = $13, " \
	"  error_class = NULL, error_message = NULL, sqlstate = NULL " \
	"  WHERE run_id OPERATOR(pg_catalog.=) $2), " \
	"o AS (SELECT state AS old_state FROM medallion.pipelines " \
	"  WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE), "
#define SUCCESS_RUN_0_1 \
	"WITH r AS (UPDATE medallion.runs SET status = 'succeeded', " \
	"  finished_at = pg_catalog.clock_timestamp(), " \
	"  rows_read = $3, rows_inserted = $4, rows_updated = $5, rows_unchanged = $6, " \
	"  rows_dlq = $7, rows_quarantined = $8, rows_dropped = $9, rows_warned = $10, " \
	"  error_class = NULL, error_message = NULL, sqlstate = NULL " \
	"  WHERE run_id OPERATOR(pg_catalog.=) $2), " \
	"o AS (SELECT state AS old_state FROM medallion.pipelines " \
	"  WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE), "

	/*
	 * The new state is the state machine's success transition (circuit_open
	 * → active), or paused when a pause request is folded in.
	 */
#define SUCCESS_UPDATE(PAUSED) \
	"p AS (UPDATE medallion.pipelines p SET consecutive_failures = 0, retry_attempt = 0, " \
	"  retry_at = NULL, last_success_at = pg_catalog.now(), " \
	"  state = CASE WHEN " PAUSED " THEN 'paused' " \
	"    WHEN p.state OPERATOR(pg_catalog.=) 'circuit_open' THEN 'active' ELSE p.state END " \
	"  FROM o WHERE p.name OPERATOR(pg_catalog.=) $1 RETURNING o.old_state), "
#define SUCCESS_RESOLVE \
	"a AS (UPDATE medallion.alerts a SET resolved_at = pg_catalog.now() " \
	"  WHERE a.pipeline OPERATOR(pg_catalog.=) $1 AND a.resolved_at IS NULL " \
	"  AND (a.kind OPERATOR(pg_catalog.=) 'over_budget' " \
	"       OR (a.kind OPERATOR(pg_catalog.=) 'circuit_open' " \
	"           AND EXISTS (SELECT 1 FROM p WHERE p.old_state OPERATOR(pg_catalog.=) 'circuit_open'))) " \
	"  RETURNING a.kind) " \
	"SELECT a.kind FROM a"

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = Int64GetDatum(run_id);
	medallion_run_counts_datums(c, &values[2]);
	medallion_catalog_enter(&gw);
	(void) medallion_gateway_exec_saved(pauses ?
										SUCCESS_RUN
										"f AS (DELETE FROM medallion.pause_requests r "
										"  WHERE r.pipeline OPERATOR(pg_catalog.=) $1 RETURNING 1), "
										SUCCESS_UPDATE("EXISTS (SELECT 1 FROM f)")
										SUCCESS_RESOLVE :
										SUCCESS_RUN_0_1
										SUCCESS_UPDATE("false")
										SUCCESS_RESOLVE,
										13, types, values, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
		resolved = lappend(resolved,
						   MemoryContextStrdup(callercxt,
											   SPI_getvalue(SPI_tuptable->vals[i],
															SPI_tuptable->tupdesc, 1)));
	medallion_gateway_leave(&gw);
#undef SUCCESS_RUN
#undef SUCCESS_RUN_0_1
#undef SUCCESS_UPDATE
#undef SUCCESS_RESOLVE

	/* resolved alerts announced to webhooks, their history trimmed (rare) */
	foreach(lc, resolved)
	{
		medallion_webhook_enqueue(pipeline, lfirst(lc), "resolved");
		medallion_alert_trim(pipeline, lfirst(lc));
	}
}
