/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  The pipeline state machine: what a failure, a success or a pause
 *	  request does to a pipeline's state, retries and circuit breaker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "medallion.h"

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
 * After a failed run: the strategy of its class (DESIGN.md §1), as
 * recorded in medallion.runs: medallion_error_class(), or 'over_budget'
 * (stopped by the pipeline's own time budget), or 'crashed' (its process
 * ended abnormally).
 *
 * - transient (scheduled runs): retry after an exponential backoff with
 *   jitter, at most max_retries times in a row;
 * - schema, infrastructure (scheduled runs): halt the pipeline and alert;
 * - over budget: alert (no blind retry); a cancel: nothing more;
 * - every other failure counts toward the circuit breaker:
 *   breaker_threshold consecutive failures open it (alert); a failed trial
 *   re-opens it.
 *
 * Runs as the catalog owner.  Options (medallion.pipelines.options):
 * max_retries (3), retry_base ('1 second'), retry_cap ('5 minutes'),
 * breaker_threshold (5), breaker_cooldown ('5 minutes').
 */
void
medallion_policy_after_failure(const char *pipeline, ErrorData *edata, const char *class,
							   bool scheduled)
{
	bool		budget = (strcmp(class, "over_budget") == 0);
	/* a manual run's caller sees its error: only a scheduled one halts */
	bool		halt = scheduled &&
		(strcmp(class, "schema") == 0 || strcmp(class, "infrastructure") == 0);
	bool		retry = scheduled && strcmp(class, "transient") == 0;
	MedallionGateway gw;
	Oid			types[4] = {TEXTOID, BOOLOID, BOOLOID, FLOAT8OID};
	Datum		values[4];
	char	   *state = NULL;
	char	   *message = medallion_capped_message(edata->message);

	if (strcmp(class, "cancelled") == 0)
		return;

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = BoolGetDatum(halt);
	values[2] = BoolGetDatum(retry);
	values[3] = Float8GetDatum(pg_prng_double(&pg_global_prng_state));

	/*
	 * Every operator, cast and function qualified: this runs as the catalog
	 * owner.  (OPERATOR() binds like any other operator, left to right: the
	 * parentheses are needed.)  "opens" says whether the breaker opens.
	 */
#define OPT_INT(key, dflt) \
	"COALESCE((p.options OPERATOR(pg_catalog.->>) '" key "')::pg_catalog.int4, " dflt ")"
#define OPT_INTERVAL(key, dflt) \
	"COALESCE((p.options OPERATOR(pg_catalog.->>) '" key "')::pg_catalog.interval, '" dflt "'::pg_catalog.interval)"
#define OPENS \
	"(p.state OPERATOR(pg_catalog.=) 'circuit_open' " \
	" OR (p.consecutive_failures OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.>=) " OPT_INT("breaker_threshold", "5") \
	" OR ($3 AND p.retry_attempt OPERATOR(pg_catalog.>=) " OPT_INT("max_retries", "3") "))"

	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec(
							   "UPDATE medallion.pipelines p SET "
							   " consecutive_failures = p.consecutive_failures OPERATOR(pg_catalog.+) 1, "
							   " retry_attempt = CASE WHEN $3 THEN p.retry_attempt OPERATOR(pg_catalog.+) 1 ELSE 0 END, "
							   " retry_at = CASE WHEN $3 AND p.retry_attempt OPERATOR(pg_catalog.<) " OPT_INT("max_retries", "3")
							   "   THEN pg_catalog.now() OPERATOR(pg_catalog.+) "
							   "     (LEAST(" OPT_INTERVAL("retry_cap", "5 minutes") ", "
							   "            " OPT_INTERVAL("retry_base", "1 second")
							   "            OPERATOR(pg_catalog.*) pg_catalog.power(2::pg_catalog.float8, "
							   "                                   p.retry_attempt::pg_catalog.float8)) "
							   "      OPERATOR(pg_catalog.*) (0.75::pg_catalog.float8 OPERATOR(pg_catalog.+) "
							   "                              (0.5::pg_catalog.float8 OPERATOR(pg_catalog.*) $4))) END, "
							   " state = CASE WHEN $2 THEN 'halted' WHEN " OPENS " THEN 'circuit_open' ELSE p.state END, "
							   " circuit_opened_at = CASE WHEN NOT $2 AND " OPENS
							   "   THEN pg_catalog.now() ELSE p.circuit_opened_at END "
							   "WHERE p.name OPERATOR(pg_catalog.=) $1 AND p.state OPERATOR(pg_catalog.<>) 'paused' "
							   "RETURNING p.state",
							   4, types, values, NULL, 0, SPI_OK_UPDATE_RETURNING) == 1)
		state = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	medallion_gateway_leave(&gw);
#undef OPT_INT
#undef OPT_INTERVAL
#undef OPENS
	medallion_pause_fold(pipeline);

	if (budget)
		medallion_alert_raise(pipeline, "over_budget", message);
	if (state && strcmp(state, "halted") == 0)
		medallion_alert_raise(pipeline, "halted",
							  psprintf("%s error, pipeline halted until resume(): %s", class, message));
	else if (state && strcmp(state, "circuit_open") == 0)
		medallion_alert_raise(pipeline, "circuit_open",
							  psprintf("circuit breaker open after repeated failures: %s", message));
}

/*
 * After a successful run: failures forgotten, a trial closes the breaker,
 * and the alerts the failures raised are resolved (a run that fits its
 * budget again resolves over_budget).
 */
void
medallion_policy_after_success(const char *pipeline)
{
	MedallionGateway gw;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		closed = false;

	values[0] = CStringGetTextDatum(pipeline);
	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec("UPDATE medallion.pipelines p SET consecutive_failures = 0, retry_attempt = 0, "
							   "retry_at = NULL, last_success_at = pg_catalog.now(), "
							   "state = CASE WHEN p.state OPERATOR(pg_catalog.=) 'circuit_open' "
							   "  THEN 'active' ELSE p.state END "
							   "FROM (SELECT state AS old_state FROM medallion.pipelines "
							   "      WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE) o "
							   "WHERE p.name OPERATOR(pg_catalog.=) $1 RETURNING o.old_state",
							   1, types, values, NULL, 0, SPI_OK_UPDATE_RETURNING) == 1)
		closed = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "circuit_open") == 0;
	medallion_gateway_leave(&gw);
	if (closed)
		medallion_alert_resolve(pipeline, "circuit_open");
	medallion_alert_resolve(pipeline, "over_budget");
	medallion_pause_fold(pipeline);
}
