/*-------------------------------------------------------------------------
 *
 * source.c
 *	  HTTP sources: medallion.create_http_source(), and the definition of a
 *	  source (its options, checked and normalised).
 *
 * A source is a pipeline of layer 'source' named 'source.<name>' that
 * feeds a bronze table (a 'feed' edge in medallion.dependencies).  Its
 * definition (URL, method, where the records are, how to page, format,
 * timeout, max_pages) is in medallion.pipelines.definition, which anyone may
 * read; its request headers, which often carry credentials, only in
 * medallion.http_sources, which the pipeline's owner and the extension's
 * owner alone can read.
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
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "net/net.h"

PG_FUNCTION_INFO_V1(medallion_create_http_source);

#define DEFAULT_MAX_PAGES 100
#define MAX_MAX_PAGES 100000

/* The value of a key of a JSON object, or NULL. */
static JsonbValue *
object_get(Jsonb *j, const char *key)
{
	if (j == NULL || !JB_ROOT_IS_OBJECT(j))
		return NULL;
	return getKeyJsonValueFromContainer(&j->root, key, strlen(key), NULL);
}

static char *
value_text(JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * Raises the error of an invalid source option.
 */
static void
bad_option(const char *option, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for option \"%s\" of an HTTP source", option),
			 errdetail("%s", why)));
}

/*
 * A string option, or NULL when absent.
 */
static char *
string_option(Jsonb *o, const char *key)
{
	JsonbValue *v = object_get(o, key);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvString)
		bad_option(key, "It must be a string.");
	return value_text(v);
}

/*
 * Parses a JSON path of the form "$" or "$.key.key..." into its keys.
 */
List *
medallion_source_path(const char *path, const char *option)
{
	List	   *keys = NIL;
	const char *p = path;

	if (p[0] != '$')
		bad_option(option, "A path starts with \"$\", as in \"$.data\".");
	p++;
	while (*p)
	{
		const char *start;

		if (*p != '.')
			bad_option(option, "A path is \"$\" followed by \".key\" steps, as in \"$.data.items\".");
		start = ++p;
		while (*p && *p != '.')
		{
			if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-'))
				bad_option(option, "Path keys are made of letters, digits, \"_\" and \"-\".");
			p++;
		}
		if (p == start)
			bad_option(option, "A path key must not be empty.");
		keys = lappend(keys, pnstrdup(start, p - start));
	}
	return keys;
}

/*
 * Reads a source's definition (create_http_source's options plus its url
 * and target, as stored) into spec, checking every option.
 */
void
medallion_source_parse(Jsonb *def, SourceSpec *spec)
{
	JsonbValue *v;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;
	char	   *s;

	static const char *const known[] = {"url", "target", "method", "headers", "body", "records",
	"next", "format", "timeout", "max_pages", NULL};

	memset(spec, 0, sizeof(*spec));
	if (def == NULL || !JB_ROOT_IS_OBJECT(def))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options of an HTTP source must be a JSON object")));

	/* unknown keys are a typo, not something to ignore */
	it = JsonbIteratorInit(&def->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		const char *const *n;
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = value_text(&k);
		for (n = known; *n; n++)
			if (strcmp(*n, key) == 0)
				break;
		if (*n == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized option \"%s\" of an HTTP source", key),
					 errhint("Options are method, headers, body, records, next, format, timeout and max_pages.")));
	}

	spec->url = string_option(def, "url");
	spec->target = string_option(def, "target");
	if (spec->url == NULL || spec->target == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("definition of an HTTP source lacks its url or target")));

	s = string_option(def, "method");
	spec->method = s ? s : "GET";
	if (strcmp(spec->method, "GET") != 0 && strcmp(spec->method, "POST") != 0)
		bad_option("method", "It must be \"GET\" or \"POST\".");

	v = object_get(def, "body");
	if (v && v->type != jbvNull)
	{
		Jsonb	   *body = JsonbValueToJsonb(v);

		if (strcmp(spec->method, "POST") != 0)
			bad_option("body", "Only a POST request has a body.");
		spec->body = JsonbToCString(NULL, &body->root, VARSIZE(body));
	}

	s = string_option(def, "records");
	spec->records = s ? s : "$";
	spec->records_path = medallion_source_path(spec->records, "records");

	s = string_option(def, "format");
	if (s == NULL || strcmp(s, "json") == 0)
		spec->ndjson = false;
	else if (strcmp(s, "ndjson") == 0)
		spec->ndjson = true;
	else
		bad_option("format", "It must be \"json\" or \"ndjson\".");
	if (spec->ndjson && strcmp(spec->records, "$") != 0)
		bad_option("records", "An ndjson body's records are its lines: \"records\" applies to json only.");

	v = object_get(def, "next");
	spec->next = NEXT_NONE;
	if (v && v->type == jbvString)
	{
		s = value_text(v);
		if (strcmp(s, "link_header") == 0)
			spec->next = NEXT_LINK;
		else
		{
			if (spec->ndjson)
				bad_option("next", "An ndjson body has no link: use \"link_header\", or a page or offset parameter.");
			spec->next = NEXT_BODY;
			spec->next_path = medallion_source_path(s, "next");
		}
	}
	else if (v && v->type == jbvBinary)
	{
		Jsonb	   *n = JsonbValueToJsonb(v);
		char	   *page = string_option(n, "page");
		char	   *offset = string_option(n, "offset");
		JsonbValue *start = object_get(n, "start");

		if ((page == NULL) == (offset == NULL))
			bad_option("next", "A parameter is {\"page\": \"name\"} or {\"offset\": \"name\"}, with an optional \"start\".");
		spec->next = page ? NEXT_PAGE : NEXT_OFFSET;
		spec->next_param = page ? page : offset;
		spec->next_start = page ? 1 : 0;
		if (start && start->type == jbvNumeric)
			spec->next_start = DatumGetInt64(DirectFunctionCall1(numeric_int8,
																 NumericGetDatum(start->val.numeric)));
		else if (start && start->type != jbvNull)
			bad_option("next", "\"start\" must be a number.");
	}
	else if (v && v->type != jbvNull)
		bad_option("next", "It is a path (\"$.next\"), \"link_header\", or {\"page\": \"name\"} or {\"offset\": \"name\"}.");

	s = string_option(def, "timeout");
	spec->timeout_ms = 0;
	if (s)
	{
		Interval   *iv;
		float8		secs;

		iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(s),
												   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
		secs = DatumGetFloat8(DirectFunctionCall2(interval_part, CStringGetTextDatum("epoch"),
												  IntervalPGetDatum(iv)));
		if (secs < 0.1 || secs > 3600)
			bad_option("timeout", "It must be an interval between 100 milliseconds and 1 hour.");
		spec->timeout_ms = (int) (secs * 1000);
	}

	v = object_get(def, "max_pages");
	spec->max_pages = DEFAULT_MAX_PAGES;
	if (v && v->type == jbvNumeric)
	{
		int64		n = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));

		if (n < 1 || n > MAX_MAX_PAGES)
			bad_option("max_pages", "It must be between 1 and 100000.");
		spec->max_pages = (int) n;
	}
	else if (v && v->type != jbvNull)
		bad_option("max_pages", "It must be a number.");
}

/*
 * An options' "headers" object, checked (names are tokens, values strings
 * without line breaks), or NULL when there is none.
 */
Jsonb *
medallion_net_check_headers(Jsonb *options)
{
	JsonbValue *v = object_get(options, "headers");
	Jsonb	   *h;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	x;

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvBinary)
		bad_option("headers", "It must be an object of header names and string values.");
	h = JsonbValueToJsonb(v);
	if (!JB_ROOT_IS_OBJECT(h))
		bad_option("headers", "It must be an object of header names and string values.");
	it = JsonbIteratorInit(&h->root);
	while ((tok = JsonbIteratorNext(&it, &x, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			int			i;

			if (x.val.string.len == 0)
				bad_option("headers", "A header name must not be empty.");
			for (i = 0; i < x.val.string.len; i++)
			{
				char		c = x.val.string.val[i];

				if (!(isalnum((unsigned char) c) || strchr("!#$%&'*+-.^_`|~", c)))
					bad_option("headers", "A header name is a token: letters, digits and the punctuation that HTTP allows in names.");
			}
		}
		else if (tok == WJB_VALUE)
		{
			if (x.type != jbvString)
				bad_option("headers", "Header values must be strings.");
			if (memchr(x.val.string.val, '\r', x.val.string.len) ||
				memchr(x.val.string.val, '\n', x.val.string.len))
				bad_option("headers", "A header value must not hold a line break.");
		}
	}
	return h;
}

/*
 * The header lines of a headers object (from medallion.http_sources or a
 * webhook), as "Name: value" strings.
 */
List *
medallion_source_header_lines(Jsonb *headers)
{
	List	   *lines = NIL;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	x;
	char	   *key = NULL;

	if (headers == NULL || !JB_ROOT_IS_OBJECT(headers))
		return NIL;
	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &x, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = value_text(&x);
		else if (tok == WJB_VALUE && x.type == jbvString && key)
			lines = lappend(lines, psprintf("%s: %.*s", key, x.val.string.len, x.val.string.val));
	}
	return lines;
}

/*
 * Checks a source or pipeline name part: lower-case letters, digits, "_".
 */
static void
check_name(const char *name)
{
	const char *c;

	if (name[0] == '\0' || strlen(name) > NAMEDATALEN - 1 || isdigit((unsigned char) name[0]))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid source name \"%s\"", name),
				 errdetail("A source name is 1 to %d lower-case letters, digits and underscores, not starting with a digit.",
						   NAMEDATALEN - 1)));
	for (c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || isdigit((unsigned char) *c) || *c == '_'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("invalid source name \"%s\"", name),
					 errdetail("A source name is 1 to %d lower-case letters, digits and underscores, not starting with a digit.",
							   NAMEDATALEN - 1)));
}

/*
 * The first free default name "<bronze name>_<n>".
 */
static char *
default_name(const char *relname)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int			n;

	for (n = 1;; n++)
	{
		char	   *name = psprintf("%.*s_%d", NAMEDATALEN - 12, relname, n);

		values[0] = CStringGetTextDatum(psprintf("source.%s", name));
		if (medallion_catalog_exec("SELECT 1 FROM medallion.pipelines WHERE name OPERATOR(pg_catalog.=) $1",
								   1, types, values, NULL, SPI_OK_SELECT) == 0)
			return name;
	}
}

/*
 * medallion.create_http_source(target, url, options, name) → pipeline name
 */
Datum
medallion_create_http_source(PG_FUNCTION_ARGS)
{
	BronzeTarget target;
	char	   *url;
	Jsonb	   *options;
	Jsonb	   *headers;
	Jsonb	   *definition;
	char	   *name;
	char	   *pipeline;
	SourceSpec	spec;
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k,
				v;
	Oid			types[4] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = "    ";

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("target and url must not be NULL")));
	medallion_bronze_open(PG_GETARG_OID(0), &target);
	if (pg_class_aclcheck(target.relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", quote_qualified_identifier("bronze", target.relname)),
				 errhint("A source lands its pages as its owner: the INSERT privilege on the bronze table is needed.")));
	url = text_to_cstring(PG_GETARG_TEXT_PP(1));
	options = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	if (options && !JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options of an HTTP source must be a JSON object")));
	if (object_get(options, "url") || object_get(options, "target"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url and target are arguments, not options")));
	headers = options ? medallion_net_check_headers(options) : NULL;
	medallion_http_check_url(url, "URL");

	name = PG_ARGISNULL(3) ? default_name(target.relname) : text_to_cstring(PG_GETARG_TEXT_PP(3));
	check_name(name);
	pipeline = psprintf("source.%s", name);

	/* the definition: the options without their headers, plus url and target */
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	if (options)
	{
		it = JsonbIteratorInit(&options->root);
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			if (tok != WJB_KEY)
				continue;
			tok = JsonbIteratorNext(&it, &v, true);
			if (k.val.string.len == 7 && strncmp(k.val.string.val, "headers", 7) == 0)
				continue;
			(void) pushJsonbValue(&state, WJB_KEY, &k);
			(void) pushJsonbValue(&state, WJB_VALUE, &v);
		}
	}
	k.type = jbvString;
	k.val.string.val = "target";
	k.val.string.len = 6;
	v.type = jbvString;
	v.val.string.val = target.relname;
	v.val.string.len = strlen(target.relname);
	(void) pushJsonbValue(&state, WJB_KEY, &k);
	(void) pushJsonbValue(&state, WJB_VALUE, &v);
	k.val.string.val = "url";
	k.val.string.len = 3;
	v.val.string.val = url;
	v.val.string.len = strlen(url);
	(void) pushJsonbValue(&state, WJB_KEY, &k);
	(void) pushJsonbValue(&state, WJB_VALUE, &v);
	definition = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
	medallion_source_parse(definition, &spec);

	medallion_catalog_add_pipeline(pipeline, "source", name, GetUserId(), NULL,
								   (Datum) 0, true,
								   DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))),
								   NULL);
	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(target.pipeline);
	values[2] = JsonbPGetDatum(definition);
	(void) medallion_catalog_exec("UPDATE medallion.pipelines SET definition = $3 "
								  "WHERE name OPERATOR(pg_catalog.=) $1",
								  3, types, values, NULL, SPI_OK_UPDATE);
	(void) medallion_catalog_exec("INSERT INTO medallion.dependencies (pipeline, upstream, kind) "
								  "VALUES ($2, $1, 'feed')",
								  2, types, values, NULL, SPI_OK_INSERT);
	if (headers)
		values[2] = JsonbPGetDatum(headers);
	else
		nulls[2] = 'n';
	(void) medallion_catalog_exec("INSERT INTO medallion.http_sources (pipeline, headers) "
								  "VALUES ($1, COALESCE($3, '{}'::pg_catalog.jsonb))",
								  3, types, values, nulls, SPI_OK_INSERT);
	PG_RETURN_TEXT_P(cstring_to_text(pipeline));
}

/* The options of an HTTP source that alter_pipeline() takes. */
static const char *const source_options[] = {"url", "method", "headers", "body", "records", "next",
	"format", "timeout", "max_pages", NULL};

static void
check_source_definition(Jsonb *def)
{
	SourceSpec	spec;

	medallion_source_parse(def, &spec);
}

/*
 * alter_pipeline() of an HTTP source: url, method, headers, body, records,
 * next, format, timeout, max_pages (null removes one), checked as at
 * creation; returns the other options.
 */
Jsonb *
medallion_source_alter(const char *pipeline, Jsonb *definition, Jsonb *options)
{
	return medallion_net_alter(pipeline, definition, options, source_options,
							   check_source_definition);
}
