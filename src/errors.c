/*-------------------------------------------------------------------------
 *
 * errors.c
 *	  Error classes: what kind of failure an error is, by its SQLSTATE.
 *
 * The class decides the strategy (DESIGN.md §1): transient errors are
 * retried, data-quality errors found while validating send the row to the
 * DLQ, schema and infrastructure errors halt the pipeline, a cancel stops
 * the run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/elog.h"

#include "medallion.h"

/*
 * The class of an error: transient, cancelled, data_quality, schema,
 * infrastructure, business_rule or internal.
 */
const char *
medallion_error_class(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	if (sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		category == ERRCODE_CONNECTION_EXCEPTION)
		return "transient";
	if (sqlerrcode == ERRCODE_QUERY_CANCELED ||
		sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
		return "cancelled";
	if (category == ERRCODE_DATA_EXCEPTION ||
		category == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION)
		return "data_quality";
	if (category == ERRCODE_SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION ||
		sqlerrcode == ERRCODE_UNDEFINED_TABLE ||
		sqlerrcode == ERRCODE_UNDEFINED_COLUMN)
		return "schema";
	if (category == ERRCODE_INSUFFICIENT_RESOURCES ||
		category == ERRCODE_PROGRAM_LIMIT_EXCEEDED ||
		category == ERRCODE_SYSTEM_ERROR)
		return "infrastructure";
	if (sqlerrcode == MEDALLION_ERRCODE_EXPECTATION_FAILED)
		return "business_rule";
	return "internal";
}

/*
 * Whether an error found while validating a row makes the row bad (class
 * 22, and 23 which domains raise), rather than the run.
 */
bool
medallion_error_is_data(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category == ERRCODE_DATA_EXCEPTION ||
		category == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION;
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
	MedallionUserContext save;
	Oid			types[4] = {TEXTOID, BOOLOID, BOOLOID, FLOAT8OID};
	Datum		values[4];
	char	   *state = NULL;
	char	   *message = edata->message ? edata->message : "";

	if (strcmp(class, "cancelled") == 0)
		return;

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = BoolGetDatum(halt);
	values[2] = BoolGetDatum(retry);
	values[3] = Float8GetDatum(pg_prng_double(&pg_global_prng_state));

	medallion_become_user(medallion_catalog_owner(), &save);
	SPI_connect();
	if (SPI_execute_with_args(
							  "UPDATE medallion.pipelines p SET "
							  " consecutive_failures = p.consecutive_failures + 1, "
							  " retry_attempt = CASE WHEN $3 THEN p.retry_attempt + 1 ELSE 0 END, "
							  " retry_at = CASE WHEN $3 AND p.retry_attempt < COALESCE((p.options->>'max_retries')::int, 3) "
							  "   THEN pg_catalog.now() + LEAST(COALESCE((p.options->>'retry_cap')::interval, '5 minutes'), "
							  "     COALESCE((p.options->>'retry_base')::interval, '1 second') "
							  "     * pg_catalog.power(2, p.retry_attempt)) * (0.75 + 0.5 * $4) END, "
							  " state = CASE WHEN $2 THEN 'halted' "
							  "   WHEN p.state = 'circuit_open' "
							  "     OR p.consecutive_failures + 1 >= COALESCE((p.options->>'breaker_threshold')::int, 5) "
							  "     OR ($3 AND p.retry_attempt >= COALESCE((p.options->>'max_retries')::int, 3)) "
							  "   THEN 'circuit_open' ELSE p.state END, "
							  " circuit_opened_at = CASE WHEN NOT $2 AND (p.state = 'circuit_open' "
							  "     OR p.consecutive_failures + 1 >= COALESCE((p.options->>'breaker_threshold')::int, 5) "
							  "     OR ($3 AND p.retry_attempt >= COALESCE((p.options->>'max_retries')::int, 3))) "
							  "   THEN pg_catalog.now() ELSE p.circuit_opened_at END "
							  "WHERE p.name OPERATOR(pg_catalog.=) $1 AND p.state <> 'paused' RETURNING p.state",
							  4, types, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not update pipeline \"%s\" after a failure", pipeline);
	if (SPI_processed == 1)
		state = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	SPI_finish();
	medallion_restore_user(&save);

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
 * After a successful run: failures forgotten, a trial closes the breaker.
 */
void
medallion_policy_after_success(const char *pipeline)
{
	MedallionUserContext save;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		closed = false;

	values[0] = CStringGetTextDatum(pipeline);
	medallion_become_user(medallion_catalog_owner(), &save);
	SPI_connect();
	if (SPI_execute_with_args("UPDATE medallion.pipelines p SET consecutive_failures = 0, retry_attempt = 0, "
							  "retry_at = NULL, last_success_at = pg_catalog.now(), "
							  "state = CASE WHEN p.state = 'circuit_open' THEN 'active' ELSE p.state END "
							  "FROM (SELECT state AS old_state FROM medallion.pipelines "
							  "      WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE) o "
							  "WHERE p.name OPERATOR(pg_catalog.=) $1 RETURNING o.old_state",
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not update pipeline \"%s\" after a success", pipeline);
	if (SPI_processed == 1)
		closed = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "circuit_open") == 0;
	SPI_finish();
	medallion_restore_user(&save);
	if (closed)
		medallion_alert_resolve(pipeline, "circuit_open");
}
