/*-------------------------------------------------------------------------
 *
 * export.c
 *	  Exports: medallion.create_export(), and a run of an export, which POSTs
 *	  the rows of a silver table that changed since they were last exported,
 *	  or the partitions of a gold table refreshed since.
 *
 * "Changed" is tracked as a set, not a watermark: a silver row carries the
 * id of the run that last wrote it (_run_id), and medallion.export_runs
 * holds the run ids an export has sent.  Run ids are not commit order (a
 * scheduled run takes its id before it waits for the run lock), so a
 * "greater than the last one sent" test would skip a run that committed
 * late; a set does not.  The rows of one run id (and its deletes, from the
 * tombstone table of a pipeline with delete_when) go out in batches of
 * batch_size records, each POST carrying an Idempotency-Key derived from
 * the export and the batch's content: an attempt that fails sends nothing
 * it remembers (the run's transaction rolls back), and the next attempt
 * sends the same batches with the same keys.  Delivery is at least once.
 *
 * A gold model's runs rewrite whole partitions, and a gold table has no
 * _run_id nor tombstones: an export of one consumes the model's change
 * records with a watermark of its own (gold/changes.c), and sends each
 * refreshed partition as a replace-set (its current rows, possibly none),
 * or the whole table when the records name no partition.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/fmgrprotos.h"

#include "net/net.h"

PG_FUNCTION_INFO_V1(medallion_create_export);

#define DEFAULT_BATCH_SIZE 500
#define MAX_BATCH_SIZE 10000

/* An export's definition, as stored in medallion.pipelines.definition. */
typedef struct ExportSpec
{
	char	   *url;
	char	   *source;			/* the silver pipeline */
	int			batch_size;
	int			timeout_ms;
} ExportSpec;

static void
bad_export_option(const char *option, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for option \"%s\" of an export", option),
			 errdetail("%s", why)));
}

static char *
get_string(Jsonb *j, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&j->root, key, strlen(key), NULL);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvString)
		bad_export_option(key, "It must be a string.");
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * Reads an export's definition (or create_export's options), checking it.
 */
static void
export_parse(Jsonb *def, ExportSpec *spec, bool options_only)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;
	JsonbValue *v;
	char	   *s;

	memset(spec, 0, sizeof(*spec));
	it = JsonbIteratorInit(&def->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(k.val.string.val, k.val.string.len);
		if (strcmp(key, "batch_size") != 0 && strcmp(key, "timeout") != 0 &&
			strcmp(key, "headers") != 0 &&
			(options_only || (strcmp(key, "url") != 0 && strcmp(key, "source") != 0)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized option \"%s\" of an export", key),
					 errhint("Options are batch_size, timeout and headers.")));
	}
	spec->url = get_string(def, "url");
	spec->source = get_string(def, "source");
	spec->batch_size = DEFAULT_BATCH_SIZE;
	v = getKeyJsonValueFromContainer(&def->root, "batch_size", 10, NULL);
	if (v && v->type == jbvNumeric)
	{
		int64		n = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));

		if (n < 1 || n > MAX_BATCH_SIZE)
			bad_export_option("batch_size", "It must be between 1 and 10000.");
		spec->batch_size = (int) n;
	}
	else if (v && v->type != jbvNull)
		bad_export_option("batch_size", "It must be a number.");
	s = get_string(def, "timeout");
	if (s)
	{
		Interval   *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(s),
															   ObjectIdGetDatum(InvalidOid),
															   Int32GetDatum(-1)));
		float8		secs = DatumGetFloat8(DirectFunctionCall2(interval_part, CStringGetTextDatum("epoch"),
															  IntervalPGetDatum(iv)));

		if (secs < 0.1 || secs > 3600)
			bad_export_option("timeout", "It must be an interval between 100 milliseconds and 1 hour.");
		spec->timeout_ms = (int) (secs * 1000);
	}
}

/*
 * The silver or gold pipeline a relation is the table of, or an error.
 */
static char *
source_pipeline(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	Oid			silver = get_namespace_oid("silver", true);
	Oid			gold = get_namespace_oid("gold", true);
	Oid			nsp = relname ? get_rel_namespace(relid) : InvalidOid;
	const char *layer;
	char	   *pipeline;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (OidIsValid(gold) && nsp == gold)
		layer = "gold";
	else if (OidIsValid(silver) && nsp == silver)
		layer = "silver";
	else
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a silver or gold table", relname),
				 errhint("An export reads a table made by medallion.create_silver() or medallion.create_gold().")));
	pipeline = medallion_pipeline_name(layer, relname);
	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(layer);
	if (medallion_catalog_exec("SELECT 1 FROM medallion.pipelines WHERE name OPERATOR(pg_catalog.=) $1 "
							   "AND layer OPERATOR(pg_catalog.=) $2",
							   2, types, values, NULL, SPI_OK_SELECT) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s.%s\" is not a %s table managed by medallion", layer, relname, layer)));
	return pipeline;
}

/*
 * medallion.create_export(source, url, options, name) → pipeline name
 */
Datum
medallion_create_export(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *url;
	Jsonb	   *options;
	char	   *source;
	char	   *name;
	char	   *pipeline;
	ExportSpec	spec;
	Jsonb	   *headers;
	StringInfoData def;
	Oid			types[4] = {TEXTOID, TEXTOID, JSONBOID, JSONBOID};
	Datum		values[4];
	char		nulls[4] = "    ";
	const char *c;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source and url must not be NULL")));
	relid = PG_GETARG_OID(0);
	url = text_to_cstring(PG_GETARG_TEXT_PP(1));
	options = PG_ARGISNULL(2) ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))) :
		PG_GETARG_JSONB_P(2);
	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options of an export must be a JSON object")));
	source = source_pipeline(relid);
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s",
						quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid))),
				 errhint("An export reads its table as its owner: the SELECT privilege is needed.")));
	export_parse(options, &spec, true);
	headers = medallion_net_check_headers(options);
	medallion_http_check_url(url, "URL");

	name = PG_ARGISNULL(3) ? get_rel_name(relid) : text_to_cstring(PG_GETARG_TEXT_PP(3));
	for (c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
			break;
	if (*c || name[0] == '\0' || strlen(name) > NAMEDATALEN - 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid export name \"%s\"", name),
				 errdetail("An export name is lower-case letters, digits and underscores.")));
	pipeline = psprintf("export.%s", name);

	initStringInfo(&def);
	appendStringInfoString(&def, "{\"url\": ");
	escape_json(&def, url);
	appendStringInfoString(&def, ", \"source\": ");
	escape_json(&def, source);
	appendStringInfo(&def, ", \"batch_size\": %d", spec.batch_size);
	if (spec.timeout_ms)
		appendStringInfo(&def, ", \"timeout\": \"%d milliseconds\"", spec.timeout_ms);
	appendStringInfoChar(&def, '}');

	medallion_catalog_add_pipeline(pipeline, "export", name, GetUserId(), NULL, (Datum) 0, true,
								   DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))),
								   NULL);
	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(source);
	values[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(def.data));
	if (headers)
		values[3] = JsonbPGetDatum(headers);
	else
		nulls[3] = 'n';
	(void) medallion_catalog_exec("UPDATE medallion.pipelines SET definition = $3 "
								  "WHERE name OPERATOR(pg_catalog.=) $1",
								  4, types, values, nulls, SPI_OK_UPDATE);
	/* a gold table's export consumes its change records through its partition column */
	(void) medallion_catalog_exec("INSERT INTO medallion.dependencies (pipeline, upstream, kind, partition_column) "
								  "SELECT $1, $2, 'export', CASE WHEN u.layer OPERATOR(pg_catalog.=) 'gold'::pg_catalog.text "
								  "  THEN u.definition OPERATOR(pg_catalog.->>) 'partition_by'::pg_catalog.text END "
								  "FROM medallion.pipelines u WHERE u.name OPERATOR(pg_catalog.=) $2",
								  4, types, values, nulls, SPI_OK_INSERT);
	(void) medallion_catalog_exec("INSERT INTO medallion.http_sources (pipeline, headers) "
								  "VALUES ($1, COALESCE($4, '{}'::pg_catalog.jsonb))",
								  4, types, values, nulls, SPI_OK_INSERT);
	PG_RETURN_TEXT_P(cstring_to_text(pipeline));
}

/*
 * The qualified name of a relation of the silver schema, or NULL.
 */
static char *
silver_rel(const char *relname)
{
	Oid			nsp = get_namespace_oid("silver", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	return OidIsValid(relid) ? quote_qualified_identifier("silver", relname) : NULL;
}

/*
 * The run ids not exported yet whose rows (or deletes) are in the source,
 * in order; read as the export's owner.
 */
static List *
pending_runs(Pipeline *p, const char *export, const char *qtable, const char *qtomb)
{
	MedallionGateway gw;
	MemoryContext callercxt = CurrentMemoryContext;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *sql;
	List	   *ids = NIL;
	uint64		i;
	uint64		n;

	sql = psprintf("SELECT DISTINCT r.id FROM (SELECT t._run_id AS id FROM %s t%s%s) r "
				   "WHERE r.id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM medallion.export_runs e "
				   "  WHERE e.export OPERATOR(pg_catalog.=) $1 AND e.run_id OPERATOR(pg_catalog.=) r.id) "
				   "ORDER BY r.id",
				   qtable, qtomb ? " UNION ALL SELECT d._run_id FROM " : "", qtomb ? psprintf("%s d", qtomb) : "");
	values[0] = CStringGetTextDatum(export);
	medallion_gateway_enter(p->owner, &gw);
	n = medallion_gateway_exec(sql, 1, types, values, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(callercxt);

		ids = lappend(ids, psprintf(INT64_FORMAT, id));
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return ids;
}

/*
 * The batches of one run id (JSON arrays of records, in a fixed order),
 * read as the export's owner.
 */
static List *
run_batches(Pipeline *p, const char *qtable, const char *qtomb, int64 run_id, int batch_size)
{
	MedallionGateway gw;
	MemoryContext callercxt = CurrentMemoryContext;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2];
	char	   *sql;
	List	   *batches = NIL;

	sql = psprintf("SELECT pg_catalog.jsonb_agg(b.rec ORDER BY b.ord)::pg_catalog.text FROM ("
				   "  SELECT x.rec, x.ord, (pg_catalog.row_number() OVER (ORDER BY x.ord) "
				   "      OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog./) $2 AS n FROM ("
				   "    SELECT pg_catalog.jsonb_build_object('op', 'upsert', 'row', pg_catalog.to_jsonb(t)) AS rec, "
				   "           'u'::pg_catalog.text OPERATOR(pg_catalog.||) t::pg_catalog.text COLLATE pg_catalog.\"C\" AS ord "
				   "    FROM %s t WHERE t._run_id OPERATOR(pg_catalog.=) $1%s%s) x) b "
				   "GROUP BY b.n ORDER BY b.n",
				   qtable,
				   qtomb ? " UNION ALL SELECT pg_catalog.jsonb_build_object('op', 'delete', 'key', pg_catalog.to_jsonb(d)), "
				   "'d'::pg_catalog.text OPERATOR(pg_catalog.||) d::pg_catalog.text COLLATE pg_catalog.\"C\" FROM " : "",
				   qtomb ? psprintf("%s d WHERE d._run_id OPERATOR(pg_catalog.=) $1", qtomb) : "");
	values[0] = Int64GetDatum(run_id);
	values[1] = Int32GetDatum(batch_size);
	medallion_gateway_enter(p->owner, &gw);
	(void) medallion_gateway_exec(sql, 2, types, values, NULL, 0, SPI_OK_SELECT);
	batches = medallion_gateway_text_column(1, callercxt);
	medallion_gateway_leave(&gw);
	return batches;
}

/*
 * Counts the records of a batch (a JSON array of objects).
 */
static int64
batch_records(const char *batch)
{
	Jsonb	   *j = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(batch)));

	return JsonContainerSize(&j->root);
}

/*
 * The secret headers of an export, as header lines.
 */
static List *
export_headers(Pipeline *p)
{
	MedallionGateway gw;
	MemoryContext callercxt = CurrentMemoryContext;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	List	   *headers = NIL;

	values[0] = CStringGetTextDatum(p->name);
	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec("SELECT headers FROM medallion.http_sources WHERE pipeline OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, 1, SPI_OK_SELECT) == 1)
	{
		bool		isnull;
		Datum		h = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(callercxt);

		if (!isnull)
			headers = medallion_source_header_lines(DatumGetJsonbPCopy(h));
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return headers;
}

/*
 * POSTs one batch with its Idempotency-Key; an error unless the receiver
 * took it.
 */
static void
post_batch(ExportSpec *spec, List *headers, StringInfo body, const char *key)
{
	HttpRequest req = {0};
	HttpResponse resp;

	req.method = "POST";
	req.url = spec->url;
	req.headers = list_copy(headers);
	req.headers = lappend(req.headers, "Content-Type: application/json");
	req.headers = lappend(req.headers, psprintf("Idempotency-Key: %s", key));
	req.body = body->data;
	req.body_len = body->len;
	req.timeout_ms = spec->timeout_ms;
	medallion_http_request(&req, &resp);
	medallion_http_require_success(spec->url, &resp);
}

/*
 * The rows of a table (those a predicate over alias t selects, or all) in
 * batches (JSON arrays of upsert records, in a fixed order), read as the
 * export's owner.
 */
static List *
table_batches(Pipeline *p, const char *qtable, const char *predicate, int batch_size)
{
	MedallionGateway gw;
	MemoryContext callercxt = CurrentMemoryContext;
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	char	   *sql;
	List	   *batches = NIL;

	sql = psprintf("SELECT pg_catalog.jsonb_agg(b.rec ORDER BY b.ord)::pg_catalog.text FROM ("
				   "  SELECT x.rec, x.ord, (pg_catalog.row_number() OVER (ORDER BY x.ord) "
				   "      OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog./) $1 AS n FROM ("
				   "    SELECT pg_catalog.jsonb_build_object('op', 'upsert', 'row', pg_catalog.to_jsonb(t)) AS rec, "
				   "           t::pg_catalog.text COLLATE pg_catalog.\"C\" AS ord "
				   "    FROM %s t%s%s) x) b "
				   "GROUP BY b.n ORDER BY b.n",
				   qtable, predicate ? " WHERE " : "", predicate ? predicate : "");
	values[0] = Int32GetDatum(batch_size);
	medallion_gateway_enter(p->owner, &gw);
	(void) medallion_gateway_exec(sql, 1, types, values, NULL, 0, SPI_OK_SELECT);
	batches = medallion_gateway_text_column(1, callercxt);
	medallion_gateway_leave(&gw);
	/* an empty replace-set still tells the receiver to drop what it holds */
	if (batches == NIL)
		batches = list_make1(pstrdup("[]"));
	return batches;
}

/*
 * Sends one replace-set: the rows of a refreshed partition (part), or of
 * the whole table (part NULL), batch by batch.  Returns the batches sent.
 */
static int
send_replace_set(Pipeline *p, ExportSpec *spec, List *headers, const char *qtable,
				 GoldRefreshedPartition *part, const char *from_mark, RunCounts *counts)
{
	List	   *batches = table_batches(p, qtable, part ? part->predicate : NULL, spec->batch_size);
	ListCell   *bc;
	int			n = 0;

	foreach(bc, batches)
	{
		const char *records = lfirst(bc);
		StringInfoData body;

		CHECK_FOR_INTERRUPTS();
		initStringInfo(&body);
		appendStringInfoString(&body, "{\"export\": ");
		escape_json(&body, p->name);
		appendStringInfoString(&body, ", \"source\": ");
		escape_json(&body, spec->source);
		appendStringInfoString(&body, ", \"replace\": ");
		if (part)
		{
			appendStringInfoString(&body, "{\"from\": ");
			escape_json(&body, part->from);
			appendStringInfoString(&body, ", \"to\": ");
			escape_json(&body, part->to);
			appendStringInfoChar(&body, '}');
		}
		else
			appendStringInfoString(&body, "\"table\"");
		appendStringInfo(&body, ", \"batch\": %d, \"batches\": %d, \"records\": %s}",
						 ++n, list_length(batches), records);
		/* the same content from the same watermark: the same key when sent again */
		post_batch(spec, headers, &body,
				   medallion_net_digest("", psprintf("%s\n%s", p->name, from_mark), body.data, body.len));
		counts->read += batch_records(records);
	}
	return n;
}

/*
 * A run of an export of a gold table: the partitions the model's runs
 * refreshed since the export's watermark (change records, consumed as a
 * gold model consumes them), each sent as a replace-set; the whole table
 * after a full refresh, for an unpartitioned model, or the first time.
 */
static void
gold_export_run(Pipeline *p, ExportSpec *spec, int64 run_id, RunCounts *counts)
{
	Pipeline	model;
	GoldRefreshed refreshed;
	Watermark	wm;
	Datum		target;
	char	   *from_mark;
	char	   *qtable;
	Oid			nsp = get_namespace_oid("gold", true);
	Oid			relid;
	List	   *headers;
	ListCell   *lc;
	int			sent = 0;
	MemoryContext run_cxt;

	if (!medallion_pipeline_lookup(spec->source, &model, false, false, NULL) ||
		strcmp(model.layer, "gold") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("source of export \"%s\" does not exist", p->name),
				 errdetail("The export reads \"%s\".", spec->source)));
	relid = OidIsValid(nsp) ? get_relname_relid(model.relname, nsp) : InvalidOid;
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("source table of export \"%s\" does not exist", p->name),
				 errdetail("The export reads \"%s\".", spec->source)));
	qtable = quote_qualified_identifier("gold", get_rel_name(relid));
	headers = export_headers(p);

	/* where this export read up to: part of every key, so a retry repeats them */
	medallion_watermark_load(p, &wm);
	from_mark = (wm.found && wm.has_done && !wm.rebase) ?
		DatumGetCString(DirectFunctionCall1(pg_snapshot_out, wm.done_snapshot)) : "first";
	if (wm.has_resume && !wm.rebase)
		from_mark = psprintf("%s/" INT64_FORMAT, from_mark, wm.resume_seq);

	target = medallion_current_snapshot();
	medallion_gold_refreshed_read(p, &model, target, &refreshed);
	run_cxt = AllocSetContextCreate(CurrentMemoryContext, "medallion export run", ALLOCSET_DEFAULT_SIZES);
	if (refreshed.whole)
		sent += send_replace_set(p, spec, headers, qtable, NULL, from_mark, counts);
	else
		foreach(lc, refreshed.partitions)
		{
			MemoryContext old;

			/* one partition's batches at a time in memory */
			MemoryContextReset(run_cxt);
			old = MemoryContextSwitchTo(run_cxt);
			sent += send_replace_set(p, spec, headers, qtable, lfirst(lc), from_mark, counts);
			MemoryContextSwitchTo(old);
		}
	medallion_gold_refreshed_consume(p, &model, target);
	counts->inserted = counts->read;
	if (run_id > 0)
	{
		Oid			dtypes[2] = {INT8OID, TEXTOID};
		Datum		dvalues[2];

		dvalues[0] = Int64GetDatum(run_id);
		dvalues[1] = CStringGetTextDatum(psprintf("{\"batches\": %d, \"whole\": %s, \"partitions\": %d}",
												  sent, refreshed.whole ? "true" : "false",
												  list_length(refreshed.partitions)));
		(void) medallion_catalog_exec("UPDATE medallion.runs SET detail = $2::pg_catalog.jsonb "
									  "WHERE run_id OPERATOR(pg_catalog.=) $1",
									  2, dtypes, dvalues, NULL, SPI_OK_UPDATE);
	}
}

/*
 * A run of an export: every run id of its source not exported yet, batch
 * by batch, then remembered as exported.
 */
void
medallion_export_run(Pipeline *p, int64 run_id, RunCounts *counts)
{
	ExportSpec	spec;
	char	   *relname;
	char	   *qtable;
	char	   *qtomb;
	List	   *headers = NIL;
	List	   *runs;
	ListCell   *lc;
	int			sent = 0;
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2];
	MemoryContext run_cxt;

	medallion_net_note_retry_after(-1);
	export_parse(p->definition, &spec, false);
	if (spec.url != NULL && spec.source != NULL && strncmp(spec.source, "gold.", 5) == 0)
	{
		gold_export_run(p, &spec, run_id, counts);
		return;
	}
	if (spec.url == NULL || spec.source == NULL || strncmp(spec.source, "silver.", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("definition of export \"%s\" lacks its url or source", p->name)));
	relname = spec.source + 7;
	qtable = silver_rel(relname);
	if (qtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("source table of export \"%s\" does not exist", p->name),
				 errdetail("The export reads \"%s\".", spec.source)));
	qtomb = silver_rel(psprintf("_%s_deleted", relname));

	values[0] = CStringGetTextDatum(p->name);
	headers = export_headers(p);

	runs = pending_runs(p, p->name, qtable, qtomb);
	run_cxt = AllocSetContextCreate(CurrentMemoryContext, "medallion export run", ALLOCSET_DEFAULT_SIZES);
	foreach(lc, runs)
	{
		int64		source_run = pg_strtoint64(lfirst(lc));
		List	   *batches;
		ListCell   *bc;
		int			n = 0;
		MemoryContext old;

		/* one source run's batches at a time in memory */
		MemoryContextReset(run_cxt);
		old = MemoryContextSwitchTo(run_cxt);
		batches = run_batches(p, qtable, qtomb, source_run, spec.batch_size);

		foreach(bc, batches)
		{
			const char *records = lfirst(bc);
			StringInfoData body;
			char	   *key;

			CHECK_FOR_INTERRUPTS();
			initStringInfo(&body);
			appendStringInfoString(&body, "{\"export\": ");
			escape_json(&body, p->name);
			appendStringInfoString(&body, ", \"source\": ");
			escape_json(&body, spec.source);
			appendStringInfo(&body, ", \"run_id\": " INT64_FORMAT ", \"batch\": %d, \"records\": %s}",
							 source_run, ++n, records);
			key = medallion_net_digest("", p->name, body.data, body.len);
			post_batch(&spec, headers, &body, key);
			counts->read += batch_records(records);
			sent++;
		}
		MemoryContextSwitchTo(old);
		values[1] = Int64GetDatum(source_run);
		(void) medallion_catalog_exec("INSERT INTO medallion.export_runs (export, run_id) VALUES ($1, $2) "
									  "ON CONFLICT DO NOTHING",
									  2, types, values, NULL, SPI_OK_INSERT);
	}
	counts->inserted = counts->read;
	if (run_id > 0)
	{
		Oid			dtypes[2] = {INT8OID, TEXTOID};
		Datum		dvalues[2];

		dvalues[0] = Int64GetDatum(run_id);
		dvalues[1] = CStringGetTextDatum(psprintf("{\"batches\": %d, \"source_runs\": %d}", sent, list_length(runs)));
		(void) medallion_catalog_exec("UPDATE medallion.runs SET detail = $2::pg_catalog.jsonb "
									  "WHERE run_id OPERATOR(pg_catalog.=) $1",
									  2, dtypes, dvalues, NULL, SPI_OK_UPDATE);
	}
}

/* The options of an export that alter_pipeline() takes. */
static const char *const export_options[] = {"url", "batch_size", "timeout", "headers", NULL};

static void
check_export_definition(Jsonb *def)
{
	ExportSpec	spec;

	export_parse(def, &spec, false);
}

/*
 * alter_pipeline() of an export: url, batch_size, timeout, headers (null
 * removes one), checked as at creation; returns the other options.
 */
Jsonb *
medallion_export_alter(const char *pipeline, Jsonb *definition, Jsonb *options)
{
	return medallion_net_alter(pipeline, definition, options, export_options,
							   check_export_definition);
}
