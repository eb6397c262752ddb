/*-------------------------------------------------------------------------
 *
 * source_run.c
 *	  A run of an HTTP source: pulls its pages and lands each in its bronze
 *	  table as it is received.
 *
 * A page is a batch of the bronze table: _file_name is the page's URL and
 * _batch_id "http:" followed by the SHA-256 of the URL and the body, so a
 * page fetched again unchanged lands nothing (its records count as
 * unchanged).  Records land through ingest_text(), as the source's owner
 * (the catalog gateway), so the owner's INSERT privilege, the bronze
 * table's checks and its DLQ apply as to any ingest; a json body that is not
 * JSON at all is one DLQ row of the source.  Counts: rows_read the records
 * received, rows_inserted those landed, rows_unchanged those of pages
 * landed before, rows_dlq those that could not be parsed.
 *
 * Errors follow the classes (ops/errors.c): a timeout, a failed connection,
 * 408, 429 and 5xx are class 08 (transient: retried when scheduled, no
 * sooner than the Retry-After the server sent); other 4xx, refused hosts or
 * redirects, TLS failures and oversized bodies have their own SQLSTATEs
 * (MD06x) and halt a scheduled source.  No retry loop hides inside a run:
 * each attempt is a run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/jsonapi.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "net/net.h"

/* Bytes kept of a body longer than medallion.max_record_size, as ingestion keeps of a record. */
#define DLQ_HEAD (64 * 1024)

/* The Retry-After of this process's last refused pull (-1: none). */
static int	last_retry_after = -1;

/* A pull in progress. */
typedef struct Pull
{
	Pipeline   *p;
	SourceSpec	spec;
	int64		run_id;
	RunCounts  *counts;
	Oid			relid;
	char	   *relname;
	char	   *bronze;			/* the bronze table's pipeline */
	List	   *header_lines;
	char	   *etag;			/* validators of the last response (one-page sources) */
	char	   *last_modified;
	int			pages;
	int			pages_landed;
	int			pages_unchanged;
	bool		not_modified;
	bool		truncated;		/* max_pages reached with more to fetch */
} Pull;

/* What one page held. */
typedef struct SourcePage
{
	int64		records;		/* records in it */
	char	   *next;			/* the body's next link, resolved; or NULL */
} SourcePage;

void
medallion_net_note_retry_after(int seconds)
{
	last_retry_after = seconds;
}

/*
 * The Retry-After (seconds) of this process's last failed pull, or -1; the
 * policy reads it once when it plans the retry.
 */
int
medallion_net_take_retry_after(void)
{
	int			s = last_retry_after;

	last_retry_after = -1;
	return s;
}

/*
 * prefix followed by the hex SHA-256 of a, a newline and b (palloc'd): a
 * page's batch id (its URL and body), an export batch's idempotency key.
 */
char *
medallion_net_digest(const char *prefix, const char *a, const char *b, size_t blen)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		hex[PG_SHA256_DIGEST_LENGTH * 2 + 1];

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) a, strlen(a)) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) "\n", 1) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) b, blen) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	hex_encode((const char *) digest, sizeof(digest), hex);
	hex[sizeof(hex) - 1] = '\0';
	return psprintf("%s%s", prefix, hex);
}

/*
 * Whether a page's batch landed already; if so its records are counted as
 * received and unchanged.
 */
static bool
page_landed(Pull *pull, const char *batch_id, int64 *records)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	MedallionGateway gw;
	bool		landed;

	values[0] = CStringGetTextDatum(pull->bronze);
	values[1] = CStringGetTextDatum(batch_id);
	medallion_catalog_enter(&gw);
	landed = medallion_gateway_exec("SELECT rows_landed OPERATOR(pg_catalog.+) rows_dlq "
									"FROM medallion.batches "
									"WHERE pipeline OPERATOR(pg_catalog.=) $1 "
									"AND batch_id OPERATOR(pg_catalog.=) $2",
									2, types, values, NULL, 1, SPI_OK_SELECT) == 1;
	if (landed)
	{
		bool		isnull;

		*records = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	medallion_gateway_leave(&gw);
	return landed;
}

/*
 * Lands records (a JSON array's text, or ndjson) as one batch, as the
 * source's owner; adds the batch's counts.
 */
static void
land_records(Pull *pull, const char *text, size_t len, const char *format,
			 const char *batch_id, const char *url)
{
	Oid			types[5] = {REGCLASSOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	MedallionGateway gw;
	bool		isnull;
	int64		landed = 0;
	int64		dlq = 0;
	bool		mine = false;

	values[0] = ObjectIdGetDatum(pull->relid);
	values[1] = PointerGetDatum(cstring_to_text_with_len(text, (int) len));
	values[2] = CStringGetTextDatum(format);
	values[3] = CStringGetTextDatum(batch_id);
	values[4] = CStringGetTextDatum(url);
	medallion_gateway_enter(pull->p->owner, &gw);
	(void) medallion_gateway_exec("SELECT medallion.ingest_text($1, $2, $3, $4, $5)",
								  5, types, values, NULL, 1, SPI_OK_SELECT);
	medallion_gateway_leave(&gw);

	values[0] = CStringGetTextDatum(pull->bronze);
	values[1] = CStringGetTextDatum(batch_id);
	types[0] = TEXTOID;
	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec("SELECT rows_landed, rows_dlq, xmin FROM medallion.batches "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1 "
							   "AND batch_id OPERATOR(pg_catalog.=) $2",
							   2, types, values, NULL, 1, SPI_OK_SELECT) == 1)
	{
		landed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		dlq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		mine = TransactionIdIsCurrentTransactionId(
			DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)));
	}
	medallion_gateway_leave(&gw);
	pull->counts->read += landed + dlq;
	if (!mine)
	{
		/* another pull of the same page claimed it first (ingest_text waited for it) */
		pull->counts->unchanged += landed + dlq;
		pull->pages_unchanged++;
		return;
	}
	pull->counts->inserted += landed;
	pull->counts->dlq += dlq;
	pull->pages_landed++;
}

/*
 * A json body that is not JSON: one DLQ row of the source, the body as it
 * came (up to its first invalid byte), as a batch of its own so that a
 * refetch adds nothing.
 */
static void
land_unparseable(Pull *pull, const char *body, size_t len, const char *batch_id,
				 const char *url, const char *why)
{
	MedallionDlqEntry e = {0};

	if (!medallion_catalog_claim_batch(pull->bronze, batch_id, url))
	{
		/* another pull of the same page claimed it first */
		pull->counts->read += 1;
		pull->counts->unchanged += 1;
		pull->pages_unchanged++;
		return;
	}
	e.pipeline = pull->p->name;
	/* as ingestion keeps a bad record: nothing when the table redacts, a head when long */
	if (!medallion_bronze_redacts(pull->relid))
	{
		size_t		keep = len > (size_t) medallion_max_payload_mb * 1024 * 1024 ?
			Min(len, DLQ_HEAD) : len;

		e.payload = body;
		e.payload_len = pg_encoding_verifymbstr(GetDatabaseEncoding(), body, (int) keep);
	}
	e.error_message = why;
	e.error_type = "parse";
	e.sqlstate = "22P02";
	e.source_table = quote_qualified_identifier("bronze", pull->relname);
	e.run_id = pull->run_id;
	e.batch_id = batch_id;
	e.file_name = url;
	e.original_length = (int64) len;
	medallion_dlq_add(&e);
	medallion_catalog_finish_batch(pull->bronze, batch_id, 0, 1);
	pull->counts->read += 1;
	pull->counts->dlq += 1;
	pull->pages_landed++;
}

/*
 * The value at a path of keys in a JSON document, or NULL.
 */
static JsonbValue *
value_at(Jsonb *doc, List *path)
{
	JsonbValue *v = NULL;
	JsonbContainer *c = &doc->root;
	ListCell   *lc;

	if (path == NIL)
	{
		v = palloc(sizeof(JsonbValue));
		if (JB_ROOT_IS_SCALAR(doc))
			return getIthJsonbValueFromContainer(c, 0);
		v->type = jbvBinary;
		v->val.binary.data = c;
		v->val.binary.len = VARSIZE(doc) - VARHDRSZ;
		return v;
	}
	foreach(lc, path)
	{
		const char *key = lfirst(lc);

		if (c == NULL || !JsonContainerIsObject(c))
			return NULL;
		v = getKeyJsonValueFromContainer(c, key, strlen(key), NULL);
		if (v == NULL)
			return NULL;
		c = v->type == jbvBinary ? v->val.binary.data : NULL;
	}
	return v;
}

/*
 * Why a body is not a JSON document, or NULL when it is one.
 */
static const char *
not_json(const char *body, size_t len)
{
	JsonLexContext *lex;

	if (len == 0)
		return "the response body is empty";
	if ((size_t) pg_encoding_verifymbstr(GetDatabaseEncoding(), body, (int) len) != len)
		return "the response body is not valid text in the database's encoding";
	if (medallion_jsonscan_too_deep(body, (int) len, MEDALLION_MAX_JSON_DEPTH))
		return "the response body is nested too deeply";
	lex = makeJsonLexContextCstringLen((char *) body, (int) len, GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return "the response body is not JSON";
	return NULL;
}

/*
 * One json page: its records landed (or counted unchanged), its next link.
 */
static void
json_page(Pull *pull, const char *url, const HttpResponse *resp, SourcePage *page)
{
	char	   *batch_id = medallion_net_digest("http:", url, resp->body, resp->body_len);
	const char *why = not_json(resp->body, resp->body_len);
	Jsonb	   *doc;
	JsonbValue *records;
	JsonbValue *next;
	int64		known;
	char	   *text = NULL;

	page->records = 0;
	page->next = NULL;
	if (why)
	{
		if (page_landed(pull, batch_id, &known))
		{
			pull->counts->read += known;
			pull->counts->unchanged += known;
			pull->pages_unchanged++;
		}
		else
			land_unparseable(pull, resp->body, resp->body_len, batch_id, url, why);
		return;
	}

	doc = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(resp->body)));
	records = value_at(doc, pull->spec.records_path);
	if (records && records->type == jbvBinary && JsonContainerIsArray(records->val.binary.data))
	{
		page->records = JsonContainerSize(records->val.binary.data);
		if (page->records > 0)
			text = JsonbToCString(NULL, records->val.binary.data, records->val.binary.len);
	}
	else if (records && records->type != jbvNull)
	{
		/* one record (an object; anything else goes to the DLQ as ingest sends it) */
		Jsonb	   *one = JsonbValueToJsonb(records);

		page->records = 1;
		text = psprintf("[%s]", JsonbToCString(NULL, &one->root, VARSIZE(one)));
	}

	if (pull->spec.next == NEXT_BODY)
	{
		next = value_at(doc, pull->spec.next_path);
		if (next && next->type == jbvString && next->val.string.len > 0)
			page->next = medallion_http_resolve(url, pnstrdup(next->val.string.val, next->val.string.len));
	}

	if (page->records == 0)
		return;					/* nothing to land (an empty page ends paging) */
	if (page_landed(pull, batch_id, &known))
	{
		pull->counts->read += known;
		pull->counts->unchanged += known;
		pull->pages_unchanged++;
		return;
	}
	land_records(pull, text, strlen(text), "json", batch_id, url);
}

/*
 * One ndjson page: its lines landed (or counted unchanged).
 */
static void
ndjson_page(Pull *pull, const char *url, const HttpResponse *resp, SourcePage *page)
{
	char	   *batch_id = medallion_net_digest("http:", url, resp->body, resp->body_len);
	int64		known;
	int64		before = pull->counts->read;
	const char *c;

	page->next = NULL;
	page->records = 0;
	for (c = resp->body; c < resp->body + resp->body_len; c++)
		if (!isspace((unsigned char) *c))
			break;
	if (c == resp->body + resp->body_len)
		return;					/* only white space: no records */
	if (page_landed(pull, batch_id, &known))
	{
		pull->counts->read += known;
		pull->counts->unchanged += known;
		pull->pages_unchanged++;
		page->records = known;
		return;
	}
	land_records(pull, resp->body, resp->body_len, "ndjson", batch_id, url);
	page->records = pull->counts->read - before;
}

/*
 * Reads the source's secret headers and validators (medallion.http_sources).
 */
static void
load_secrets(Pull *pull)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	MedallionGateway gw;
	MemoryContext callercxt = CurrentMemoryContext;

	values[0] = CStringGetTextDatum(pull->p->name);
	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec("SELECT headers, etag, last_modified FROM medallion.http_sources "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, 1, SPI_OK_SELECT) == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		h = SPI_getbinval(tup, desc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(callercxt);

		if (!isnull)
			pull->header_lines = medallion_source_header_lines(DatumGetJsonbPCopy(h));
		pull->etag = SPI_getvalue(tup, desc, 2);
		pull->last_modified = SPI_getvalue(tup, desc, 3);
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
}

/*
 * Stores the validators of the last response, for the next conditional
 * request.
 */
static void
save_validators(Pull *pull, const HttpResponse *resp)
{
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";

	values[0] = CStringGetTextDatum(pull->p->name);
	if (resp->etag)
		values[1] = CStringGetTextDatum(resp->etag);
	else
		nulls[1] = 'n';
	if (resp->last_modified)
		values[2] = CStringGetTextDatum(resp->last_modified);
	else
		nulls[2] = 'n';
	(void) medallion_catalog_exec("UPDATE medallion.http_sources SET etag = $2, last_modified = $3 "
								  "WHERE pipeline OPERATOR(pg_catalog.=) $1",
								  3, types, values, nulls, SPI_OK_UPDATE);
}

/*
 * Records what the pull did in medallion.runs.detail.
 */
static void
save_detail(Pull *pull)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];

	if (pull->run_id <= 0)
		return;
	values[0] = Int64GetDatum(pull->run_id);
	values[1] = CStringGetTextDatum(psprintf("{\"pages\": %d, \"pages_landed\": %d, \"pages_unchanged\": %d, "
											 "\"not_modified\": %s, \"truncated\": %s}",
											 pull->pages, pull->pages_landed, pull->pages_unchanged,
											 pull->not_modified ? "true" : "false",
											 pull->truncated ? "true" : "false"));
	(void) medallion_catalog_exec("UPDATE medallion.runs SET detail = $2::pg_catalog.jsonb "
								  "WHERE run_id OPERATOR(pg_catalog.=) $1",
								  2, types, values, NULL, SPI_OK_UPDATE);
}

/*
 * Whether a URL was fetched already by this pull (a paging loop).
 */
static bool
seen_before(List *seen, const char *url)
{
	ListCell   *lc;

	foreach(lc, seen)
		if (strcmp(lfirst(lc), url) == 0)
			return true;
	return false;
}

/*
 * A run of an HTTP source: its pages pulled and landed, counts in *counts.
 * Runs in the run's (sub)transaction, holding the pipeline's run lock.
 */
void
medallion_source_run(Pipeline *p, int64 run_id, RunCounts *counts)
{
	Pull		pull = {0};
	List	   *seen = NIL;
	char	   *url;
	int64		param;
	Oid			nsp;
	MemoryContext page_cxt;

	medallion_net_note_retry_after(-1);
	pull.p = p;
	pull.run_id = run_id;
	pull.counts = counts;
	medallion_source_parse(p->definition, &pull.spec);
	nsp = get_namespace_oid("bronze", true);
	pull.relid = (OidIsValid(nsp) && pull.spec.target) ?
		get_relname_relid(pull.spec.target, nsp) : InvalidOid;
	if (!OidIsValid(pull.relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("bronze table of source \"%s\" does not exist", p->name),
				 errdetail("The source feeds \"bronze.%s\".", pull.spec.target ? pull.spec.target : "")));
	pull.relname = pull.spec.target;
	pull.bronze = medallion_pipeline_name("bronze", pull.relname);
	load_secrets(&pull);

	page_cxt = AllocSetContextCreate(CurrentMemoryContext, "medallion HTTP page",
									 ALLOCSET_DEFAULT_SIZES);
	param = pull.spec.next_start;
	url = pull.spec.next == NEXT_PAGE || pull.spec.next == NEXT_OFFSET ?
		medallion_http_add_query(pull.spec.url, pull.spec.next_param, param) : pull.spec.url;
	while (url != NULL)
	{
		HttpRequest req = {0};
		HttpResponse resp;
		SourcePage	page;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (pull.pages == pull.spec.max_pages)
		{
			pull.truncated = true;
			ereport(NOTICE,
					(errmsg("source \"%s\" stopped after max_pages (%d) pages", p->name, pull.spec.max_pages),
					 errdetail("The next page would have been \"%s\".", url)));
			break;
		}
		seen = lappend(seen, url);
		/* a page's body and what was made of it go when the next page comes */
		MemoryContextReset(page_cxt);
		old = MemoryContextSwitchTo(page_cxt);
		req.method = pull.spec.method;
		req.url = url;
		req.headers = list_copy(pull.header_lines);
		req.timeout_ms = pull.spec.timeout_ms;
		if (pull.spec.body)
		{
			req.body = pull.spec.body;
			req.body_len = strlen(pull.spec.body);
			req.headers = lappend(req.headers, "Content-Type: application/json");
		}
		/* conditional requests: a one-page source, when the server gave validators */
		if (pull.spec.next == NEXT_NONE && pull.etag)
			req.headers = lappend(req.headers, psprintf("If-None-Match: %s", pull.etag));
		if (pull.spec.next == NEXT_NONE && pull.last_modified)
			req.headers = lappend(req.headers, psprintf("If-Modified-Since: %s", pull.last_modified));

		medallion_http_request(&req, &resp);
		pull.pages++;
		if (resp.status == 304 && pull.spec.next == NEXT_NONE)
		{
			pull.not_modified = true;
			MemoryContextSwitchTo(old);
			break;
		}
		medallion_http_require_success(url, &resp);
		if (pull.spec.next == NEXT_NONE && (resp.etag || resp.last_modified || pull.etag || pull.last_modified))
			save_validators(&pull, &resp);

		if (pull.spec.ndjson)
			ndjson_page(&pull, resp.url, &resp, &page);
		else
			json_page(&pull, resp.url, &resp, &page);

		switch (pull.spec.next)
		{
			case NEXT_NONE:
				url = NULL;
				break;
			case NEXT_BODY:
				url = page.next;
				break;
			case NEXT_LINK:
				url = resp.link_next;
				break;
			case NEXT_PAGE:
			case NEXT_OFFSET:
				param += pull.spec.next == NEXT_PAGE ? 1 : page.records;
				url = page.records == 0 ? NULL :
					medallion_http_add_query(pull.spec.url, pull.spec.next_param, param);
				break;
		}
		MemoryContextSwitchTo(old);
		url = url ? pstrdup(url) : NULL;
		if (url && seen_before(seen, url))
		{
			ereport(NOTICE,
					(errmsg("source \"%s\" stopped paging: \"%s\" was fetched already", p->name, url)));
			url = NULL;
		}
	}
	save_detail(&pull);
}

/*
 * After a successful scheduled pull (or export) that moved nothing: no run is
 * recorded (as an empty scheduled check of a silver pipeline records none).
 */
void
medallion_net_forget_empty_run(int64 run_id, const RunCounts *counts)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];

	if (counts->inserted > 0 || counts->dlq > 0)
		return;
	values[0] = Int64GetDatum(run_id);
	(void) medallion_catalog_exec("DELETE FROM medallion.runs WHERE run_id OPERATOR(pg_catalog.=) $1",
								  1, types, values, NULL, SPI_OK_DELETE);
}
