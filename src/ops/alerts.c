/*-------------------------------------------------------------------------
 *
 * alerts.c
 *	  Alerts: rows of medallion.alerts plus NOTIFY medallion_alerts.
 *
 * One open alert per (pipeline, kind): raising it again while it is open
 * counts it in place, so a breach alerts once; resolving it closes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "ops/ops.h"

/* Resolved alerts kept per pipeline and kind (and none older than medallion.history_days). */
#define MEDALLION_ALERT_HISTORY 100

/*
 * Raises an alert, or, when the same one is open, raises it again in place
 * (occurrences, last_raised_at and message updated): a failure loop keeps
 * one row.  A new alert is announced on channel medallion_alerts with
 * {id, pipeline, kind} only: anyone may LISTEN, and the message may quote
 * data values (read it from medallion.alert_details as the owner).  Runs as
 * the catalog owner.
 */
void
medallion_alert_raise(const char *pipeline, const char *kind, const char *message)
{
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(kind);
	values[2] = CStringGetTextDatum(medallion_capped_message(message));
	(void) medallion_catalog_exec(
		"WITH a AS (INSERT INTO medallion.alerts AS o (pipeline, kind, message) "
		"  VALUES ($1, $2, $3) "
		"  ON CONFLICT (pipeline, kind) WHERE resolved_at IS NULL DO UPDATE "
		"  SET occurrences = o.occurrences OPERATOR(pg_catalog.+) 1, "
		"      last_raised_at = pg_catalog.now(), message = excluded.message "
		"  RETURNING o.id, o.pipeline, o.kind, o.occurrences) "
		"SELECT pg_catalog.pg_notify('medallion_alerts', pg_catalog.row_to_json(n)::pg_catalog.text) "
		"FROM (SELECT a.id, a.pipeline, a.kind FROM a WHERE a.occurrences OPERATOR(pg_catalog.=) 1) n",
		3, types, values, NULL, SPI_OK_SELECT);
	/* webhooks: queued now, sent after commit (net/webhook.c) */
	medallion_webhook_enqueue(pipeline, kind, "raised");
}

/*
 * Closes the open alert of that kind, if any, and trims that kind's
 * history.
 */
void
medallion_alert_resolve(const char *pipeline, const char *kind)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(kind);
	if (medallion_catalog_exec("UPDATE medallion.alerts SET resolved_at = pg_catalog.now() "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND kind OPERATOR(pg_catalog.=) $2 "
							   "AND resolved_at IS NULL",
							   2, types, values, NULL, SPI_OK_UPDATE) > 0)
	{
		medallion_webhook_enqueue(pipeline, kind, "resolved");
		medallion_alert_trim(pipeline, kind);
	}
}

/*
 * Deletes a pipeline's resolved alerts of one kind older than
 * medallion.history_days, and all but the latest MEDALLION_ALERT_HISTORY.
 */
void
medallion_alert_trim(const char *pipeline, const char *kind)
{
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(kind);
	values[2] = Int32GetDatum(medallion_history_days);
	values[3] = Int32GetDatum(MEDALLION_ALERT_HISTORY);
	(void) medallion_catalog_exec("DELETE FROM medallion.alerts a "
								  "WHERE a.pipeline OPERATOR(pg_catalog.=) $1 AND a.kind OPERATOR(pg_catalog.=) $2 "
								  "AND a.resolved_at IS NOT NULL "
								  "AND (a.resolved_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) "
								  "       pg_catalog.make_interval(days => $3)) "
								  "  OR a.id OPERATOR(pg_catalog.<=) (SELECT k.id FROM medallion.alerts k "
								  "     WHERE k.pipeline OPERATOR(pg_catalog.=) $1 AND k.kind OPERATOR(pg_catalog.=) $2 "
								  "     AND k.resolved_at IS NOT NULL ORDER BY k.id DESC OFFSET $4 LIMIT 1))",
								  4, types, values, NULL, SPI_OK_DELETE);
}
