/*-------------------------------------------------------------------------
 *
 * webhook.c
 *	  Webhook alerts: add_webhook(), remove_webhook(), and the outbox
 *	  medallion.alert_deliveries.
 *
 * When an alert is raised or resolved (ops/alerts.c), one delivery per
 * matching webhook is queued in the same transaction: it holds what the
 * message says (pipeline, kind, message, time), so trimming old alerts
 * loses no delivery.  Nothing is sent from that transaction: after it
 * commits the scheduler starts a delivery worker (bgw/delivery.c), which
 * sends the due deliveries and records each outcome; a failed one is tried
 * again with an exponential backoff, up to MAX_ATTEMPTS times.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "net/net.h"

PG_FUNCTION_INFO_V1(medallion_add_webhook);
PG_FUNCTION_INFO_V1(medallion_remove_webhook);

/* Attempts of one delivery; the wait doubles from 1 second, up to 5 minutes. */
#define MAX_ATTEMPTS 12
#define MAX_BACKOFF_SECS 300

/* Timeout of one delivery request. */
#define DELIVERY_TIMEOUT_MS 10000

static void
bad_webhook_option(const char *option, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for option \"%s\" of a webhook", option),
			 errdetail("%s", why)));
}

/*
 * An option that is an array of strings, as a text[] datum; NULL when
 * absent.
 */
static bool
string_array_option(Jsonb *options, const char *key, Datum *out)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&options->root, key, strlen(key), NULL);
	ArrayBuildState *astate;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	e;
	Jsonb	   *arr;

	if (v == NULL || v->type == jbvNull)
		return false;
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		bad_webhook_option(key, "It must be an array of strings.");
	arr = JsonbValueToJsonb(v);
	astate = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	it = JsonbIteratorInit(&arr->root);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (e.type != jbvString)
			bad_webhook_option(key, "It must be an array of strings.");
		accumArrayResult(astate,
						 PointerGetDatum(cstring_to_text_with_len(e.val.string.val, e.val.string.len)),
						 false, TEXTOID, CurrentMemoryContext);
	}
	*out = makeArrayResult(astate, CurrentMemoryContext);
	return true;
}

/*
 * medallion.add_webhook(url, options) → id
 */
Datum
medallion_add_webhook(PG_FUNCTION_ARGS)
{
	char	   *url;
	Jsonb	   *options;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;
	JsonbValue *v;
	const char *format = "slack";
	Jsonb	   *headers = NULL;
	Oid			types[5] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID, JSONBOID};
	Datum		values[5];
	char		nulls[5] = "     ";
	MedallionGateway gw;
	int64		id;
	bool		isnull;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("url must not be NULL")));
	url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	options = PG_ARGISNULL(1) ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))) :
		PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options of a webhook must be a JSON object")));
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(k.val.string.val, k.val.string.len);
		if (strcmp(key, "pipelines") != 0 && strcmp(key, "kinds") != 0 &&
			strcmp(key, "format") != 0 && strcmp(key, "headers") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized option \"%s\" of a webhook", key),
					 errhint("Options are pipelines, kinds, format and headers.")));
	}
	medallion_http_check_url(url, "URL");

	values[0] = CStringGetTextDatum(url);
	if (!string_array_option(options, "pipelines", &values[1]))
		nulls[1] = 'n';
	if (!string_array_option(options, "kinds", &values[2]))
		nulls[2] = 'n';
	v = getKeyJsonValueFromContainer(&options->root, "format", 6, NULL);
	if (v && v->type != jbvNull)
	{
		if (v->type != jbvString)
			bad_webhook_option("format", "It must be \"slack\" or \"json\".");
		format = pnstrdup(v->val.string.val, v->val.string.len);
		if (strcmp(format, "slack") != 0 && strcmp(format, "json") != 0)
			bad_webhook_option("format", "It must be \"slack\" or \"json\".");
	}
	values[3] = CStringGetTextDatum(format);
	v = getKeyJsonValueFromContainer(&options->root, "headers", 7, NULL);
	if (v && v->type != jbvNull)
	{
		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			bad_webhook_option("headers", "It must be an object of header names and string values.");
		headers = JsonbValueToJsonb(v);
		medallion_source_header_lines(headers);
	}
	if (headers)
		values[4] = JsonbPGetDatum(headers);
	else
		nulls[4] = 'n';

	medallion_catalog_enter(&gw);
	(void) medallion_gateway_exec("INSERT INTO medallion.webhooks (url, pipelines, kinds, format, headers, created_by) "
								  "VALUES ($1, $2, $3, $4, COALESCE($5, '{}'::pg_catalog.jsonb), "
								  "        pg_catalog.session_user()) "
								  "RETURNING id",
								  5, types, values, nulls, 1, SPI_OK_INSERT_RETURNING);
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	medallion_gateway_leave(&gw);
	PG_RETURN_INT64(id);
}

/*
 * medallion.remove_webhook(id): the webhook and its undelivered messages.
 */
Datum
medallion_remove_webhook(PG_FUNCTION_ARGS)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("id must not be NULL")));
	values[0] = PG_GETARG_DATUM(0);
	if (medallion_catalog_exec("DELETE FROM medallion.webhooks WHERE id OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, SPI_OK_DELETE) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("webhook " INT64_FORMAT " does not exist", PG_GETARG_INT64(0)),
				 errhint("Webhooks are listed in medallion.webhooks.")));
	PG_RETURN_VOID();
}

/*
 * Whether the catalog has the outbox (a 0.1.0 catalog, not updated yet,
 * has not).
 */
static bool
outbox_exists(void)
{
	Oid			nsp = get_namespace_oid("medallion", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("alert_deliveries", nsp));
}

/*
 * Queues the messages of an alert event ("raised" or "resolved") of a
 * pipeline's alert kind, one per matching webhook, once: the open alert
 * just raised, or the one just resolved.  A webhook matches when its
 * pipelines (names, or patterns with *) and kinds (when given) do.  Wakes
 * the scheduler at commit, which starts the delivery worker.
 */
void
medallion_webhook_enqueue(const char *pipeline, const char *kind, const char *event)
{
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];

	if (!outbox_exists())
		return;
	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(kind);
	values[2] = CStringGetTextDatum(event);
	if (medallion_catalog_exec(
		"INSERT INTO medallion.alert_deliveries "
		"  (alert_id, webhook_id, event, pipeline, kind, message, event_at) "
		"SELECT a.id, w.id, $3, a.pipeline, a.kind, a.message, "
		"       CASE WHEN $3 OPERATOR(pg_catalog.=) 'raised' "
		"            THEN COALESCE(a.last_raised_at, a.raised_at) ELSE a.resolved_at END "
		"FROM (SELECT * FROM medallion.alerts x "
		"      WHERE x.pipeline OPERATOR(pg_catalog.=) $1 AND x.kind OPERATOR(pg_catalog.=) $2 "
		"        AND (CASE WHEN $3 OPERATOR(pg_catalog.=) 'raised' "
		"                  THEN x.resolved_at IS NULL AND x.occurrences OPERATOR(pg_catalog.=) 1 "
		"                  ELSE x.resolved_at IS NOT NULL END) "
		"      ORDER BY x.id DESC LIMIT 1) a "
		"JOIN medallion.webhooks w "
		"  ON (w.kinds IS NULL OR a.kind OPERATOR(pg_catalog.=) ANY (w.kinds)) "
		" AND (w.pipelines IS NULL OR EXISTS ( "
		"      SELECT 1 FROM pg_catalog.unnest(w.pipelines) pat "
		"      WHERE a.pipeline OPERATOR(pg_catalog.~~) pg_catalog.replace(pg_catalog.replace(pg_catalog.replace( "
		"            pg_catalog.replace(pat, '\\', '\\\\'), '%', '\\%'), '_', '\\_'), '*', '%'))) "
		"WHERE NOT EXISTS (SELECT 1 FROM medallion.alert_deliveries d "
		"                  WHERE d.alert_id OPERATOR(pg_catalog.=) a.id "
		"                    AND d.webhook_id OPERATOR(pg_catalog.=) w.id "
		"                    AND d.event OPERATOR(pg_catalog.=) $3) "
		"ON CONFLICT DO NOTHING",
		3, types, values, NULL, SPI_OK_INSERT) > 0)
		medallion_wake_scheduler_at_commit();
}

/*
 * When the next undelivered message is due; DT_NOEND when none is.
 */
TimestampTz
medallion_webhook_next_due(void)
{
	MedallionGateway gw;
	TimestampTz next = DT_NOEND;
	bool		isnull;
	Datum		d;

	if (!outbox_exists())
		return DT_NOEND;
	medallion_catalog_enter(&gw);
	(void) medallion_gateway_exec("SELECT pg_catalog.min(next_attempt_at) FROM medallion.alert_deliveries "
								  "WHERE delivered_at IS NULL",
								  0, NULL, NULL, NULL, 1, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		next = DatumGetTimestampTz(d);
	medallion_gateway_leave(&gw);
	return next;
}

/*
 * Takes the messages due now (at most limit), in the caller's memory
 * context.  Each attempt is counted, and the next one planned, before the
 * message is sent: a worker that dies while sending, or cannot record the
 * outcome, sends it again only after the backoff (never after
 * MAX_ATTEMPTS).  Delivery is at least once.
 */
List *
medallion_webhook_due(int limit)
{
	MedallionGateway gw;
	MemoryContext callercxt = CurrentMemoryContext;
	Oid			types[3] = {INT4OID, INT4OID, INT4OID};
	Datum		values[3];
	List	   *due = NIL;
	uint64		i;
	uint64		n;

	if (!outbox_exists())
		return NIL;
	values[0] = Int32GetDatum(limit);
	values[1] = Int32GetDatum(MAX_ATTEMPTS);
	values[2] = Int32GetDatum(MAX_BACKOFF_SECS);
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec(
		"WITH d AS (UPDATE medallion.alert_deliveries d "
		"  SET attempts = d.attempts OPERATOR(pg_catalog.+) 1, "
		"      next_attempt_at = CASE WHEN d.attempts OPERATOR(pg_catalog.+) 1 OPERATOR(pg_catalog.>=) $2 THEN NULL "
		"        ELSE pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => "
		"          LEAST($3::pg_catalog.float8, "
		"                pg_catalog.power(2::pg_catalog.float8, d.attempts::pg_catalog.float8))) END "
		"  WHERE d.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT x.id FROM medallion.alert_deliveries x "
		"      WHERE x.delivered_at IS NULL "
		"        AND x.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() "
		"      ORDER BY x.next_attempt_at, x.id LIMIT $1 FOR UPDATE SKIP LOCKED)) "
		"  RETURNING d.*) "
		"SELECT d.id, w.url, w.headers, "
		"  CASE WHEN w.format OPERATOR(pg_catalog.=) 'slack' THEN "
		"    pg_catalog.jsonb_build_object('text', pg_catalog.format('[medallion] %s %s on %s at %s: %s', "
		"      d.kind, d.event, d.pipeline, "
		"      pg_catalog.to_char(pg_catalog.timezone('UTC', d.event_at), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
		"      d.message))::pg_catalog.text "
		"  ELSE pg_catalog.jsonb_build_object('pipeline', d.pipeline, 'kind', d.kind, 'event', d.event, "
		"      'message', d.message, 'at', d.event_at, 'alert_id', d.alert_id, "
		"      'database', pg_catalog.current_database())::pg_catalog.text END "
		"FROM d JOIN medallion.webhooks w ON w.id OPERATOR(pg_catalog.=) d.webhook_id "
		"ORDER BY d.id",
		3, types, values, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(callercxt);
		WebhookDelivery *d = palloc0(sizeof(WebhookDelivery));
		bool		isnull;
		Datum		h;

		d->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		d->url = SPI_getvalue(tup, desc, 2);
		h = SPI_getbinval(tup, desc, 3, &isnull);
		d->headers = isnull ? NIL : medallion_source_header_lines(DatumGetJsonbPCopy(h));
		d->payload = SPI_getvalue(tup, desc, 4);
		due = lappend(due, d);
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return due;
}

/*
 * Sends one message; raises an error when it was not accepted (a 2xx
 * status).
 */
void
medallion_webhook_send(const WebhookDelivery *d)
{
	HttpRequest req = {0};
	HttpResponse resp;

	req.method = "POST";
	req.url = d->url;
	req.headers = lappend(list_copy(d->headers), "Content-Type: application/json");
	req.body = d->payload;
	req.body_len = strlen(d->payload);
	req.timeout_ms = DELIVERY_TIMEOUT_MS;
	medallion_http_request(&req, &resp);
	medallion_http_require_success(d->url, &resp);
}

/*
 * Records the outcome of an attempt: delivered (error NULL), or why not
 * (the next attempt was planned when it was taken).
 */
void
medallion_webhook_record(int64 id, const char *error)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = "  ";

	values[0] = Int64GetDatum(id);
	if (error)
		values[1] = CStringGetTextDatum(medallion_capped_message(error));
	else
		nulls[1] = 'n';
	(void) medallion_catalog_exec(
		"UPDATE medallion.alert_deliveries SET last_error = $2, "
		"  delivered_at = CASE WHEN $2 IS NULL THEN pg_catalog.clock_timestamp() END, "
		"  next_attempt_at = CASE WHEN $2 IS NULL THEN NULL ELSE next_attempt_at END "
		"WHERE id OPERATOR(pg_catalog.=) $1",
		2, types, values, nulls, SPI_OK_UPDATE);
}
