/*-------------------------------------------------------------------------
 *
 * alter.c
 *	  alter_pipeline() of HTTP sources and exports: their own options change
 *	  their definition, and their secret headers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "net/net.h"

/* A definition's url, or NULL. */
static char *
url_of(Jsonb *def)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&def->root, "url", 3, NULL);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Whether a key (not NUL-terminated) is one of a NULL-terminated list. */
static bool
is_own_option(const char *const *names, const char *key, int len)
{
	for (; *names; names++)
		if ((int) strlen(*names) == len && strncmp(*names, key, len) == 0)
			return true;
	return false;
}

/*
 * alter_pipeline() of a pipeline of the network room: the options named in own_options
 * names change its definition (null removes one; "headers" replace its
 * secret headers in medallion.http_sources), checked by check() and, for
 * a new url, against the allow-list; returns the other options, for the
 * options every pipeline has.
 */
Jsonb *
medallion_net_alter(const char *pipeline, Jsonb *definition, Jsonb *options,
					const char *const *own_options, NetCheckDefinitionFn check)
{
	JsonbParseState *rest = NULL;
	JsonbParseState *def = NULL;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k,
				v;
	bool		changed = false;
	Jsonb	   *headers = NULL;
	bool		headers_given = false;
	Jsonb	   *result;
	Jsonb	   *newdef;
	char	   *url_before;
	char	   *url_after;

	(void) pushJsonbValue(&rest, WJB_BEGIN_OBJECT, NULL);
	(void) pushJsonbValue(&def, WJB_BEGIN_OBJECT, NULL);
	/* the options given, sorted out */
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		if (!is_own_option(own_options, k.val.string.val, k.val.string.len))
		{
			(void) pushJsonbValue(&rest, WJB_KEY, &k);
			(void) pushJsonbValue(&rest, WJB_VALUE, &v);
			continue;
		}
		changed = true;
		if (k.val.string.len == 7 && strncmp(k.val.string.val, "headers", 7) == 0)
		{
			headers_given = true;
			headers = medallion_net_check_headers(options);
			continue;
		}
		if (v.type == jbvNull)
			continue;
		(void) pushJsonbValue(&def, WJB_KEY, &k);
		(void) pushJsonbValue(&def, WJB_VALUE, &v);
	}
	result = JsonbValueToJsonb(pushJsonbValue(&rest, WJB_END_OBJECT, NULL));
	if (!changed)
		return result;

	/* the definition's keys that were not given (or given as null: dropped) */
	it = JsonbIteratorInit(&definition->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		if (getKeyJsonValueFromContainer(&options->root, k.val.string.val, k.val.string.len, NULL))
			continue;
		(void) pushJsonbValue(&def, WJB_KEY, &k);
		(void) pushJsonbValue(&def, WJB_VALUE, &v);
	}
	newdef = JsonbValueToJsonb(pushJsonbValue(&def, WJB_END_OBJECT, NULL));
	check(newdef);
	url_before = url_of(definition);
	url_after = url_of(newdef);
	if (url_after == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the url of pipeline \"%s\" cannot be removed", pipeline)));
	if (url_before == NULL || strcmp(url_before, url_after) != 0)
		medallion_http_check_url(url_after, "URL");

	{
		Oid			types[2] = {TEXTOID, JSONBOID};
		Datum		values[2];
		char		nulls[2] = "  ";

		values[0] = CStringGetTextDatum(pipeline);
		values[1] = JsonbPGetDatum(newdef);
		(void) medallion_catalog_exec("UPDATE medallion.pipelines SET definition = $2 "
									  "WHERE name OPERATOR(pg_catalog.=) $1",
									  2, types, values, NULL, SPI_OK_UPDATE);
		if (headers_given)
		{
			if (headers)
				values[1] = JsonbPGetDatum(headers);
			else
				nulls[1] = 'n';
			/* new headers: the validators were the old request's */
			(void) medallion_catalog_exec("UPDATE medallion.http_sources "
										  "SET headers = COALESCE($2, '{}'::pg_catalog.jsonb), "
										  "etag = NULL, last_modified = NULL "
										  "WHERE pipeline OPERATOR(pg_catalog.=) $1",
										  2, types, values, nulls, SPI_OK_UPDATE);
		}
	}
	return result;
}
