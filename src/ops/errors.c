/*-------------------------------------------------------------------------
 *
 * errors.c
 *	  Error classes: what kind of failure an error is, by its SQLSTATE.
 *
 * The class decides the strategy (policy.c): transient errors are retried,
 * data-quality errors found while validating send the row to the DLQ,
 * schema and infrastructure errors halt the pipeline, a cancel stops the
 * run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

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

	if (medallion_error_is_drift(sqlerrcode))
		return "schema";		/* payload drift: halts, manual runs too */
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
	/* a remote server refused, or was refused (net/net.h): an operator decides */
	if (medallion_error_is_network_refusal(sqlerrcode))
		return "infrastructure";
	return "internal";
}
