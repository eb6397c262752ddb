/*-------------------------------------------------------------------------
 *
 * drift.c
 *	  Payload drift against a silver contract: keys the contract does not
 *	  read (schema_policy ignore, evolve, strict), and the halts drift
 *	  causes, manual runs included.
 *
 * A silver run asks, before it loads anything, which keys of its bronze
 * table's registry (payload_keys.c) its contract does not read and that it
 * has not dealt with yet.  Such a key is a safe change: `ignore` records it
 * in medallion.schema_changes, `evolve` adds a nullable column for it to
 * the silver table and to the contract (a new contract version), `strict`
 * halts the pipeline.  The halts (MD050-MD052) roll the run back; the
 * failure path then records them (medallion_drift_after_failure), outside
 * the rolled-back work.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "medallion.h"

/* drift_min_rows when the pipeline does not set it */
#define DRIFT_MIN_ROWS_DEFAULT 10

/* keys named in a halt's detail */
#define DRIFT_DETAIL_KEYS 10

/* A key of the registry that the contract does not read. */
typedef struct UnreadKey
{
	char	   *path;
	char	   *types;			/* the JSON types seen, as a JSON array */
	char		stype;			/* one silver type: t(ext) n(umeric) b(oolean) j(sonb); 0: only null */
} UnreadKey;

/*
 * Reads the drift options of a silver pipeline (drift_min_rows,
 * max_bad_ratio) from medallion.pipelines.options.
 */
void
medallion_drift_options(DriftWindow *w)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	MedallionGateway gw;

	w->min_rows = DRIFT_MIN_ROWS_DEFAULT;
	w->max_bad_ratio = -1;
	values[0] = CStringGetTextDatum(w->pipeline);
	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec("SELECT (options OPERATOR(pg_catalog.->>) 'drift_min_rows')::pg_catalog.int8, "
							   "(options OPERATOR(pg_catalog.->>) 'max_bad_ratio')::pg_catalog.float8 "
							   "FROM medallion.pipelines WHERE name OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, 1, SPI_OK_SELECT) == 1)
	{
		bool		isnull;
		Datum		d;

		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			w->min_rows = DatumGetInt64(d);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (!isnull)
			w->max_bad_ratio = DatumGetFloat8(d);
	}
	medallion_gateway_leave(&gw);
}

/*
 * Refuses out-of-range drift options given to alter_pipeline() (their
 * types are checked with the others').
 */
void
medallion_drift_check_option(const char *name, const char *value)
{
	char	   *end;
	double		v;

	if (value == NULL)
		return;
	v = strtod(value, &end);
	if (end == value)
		return;					/* not a number: the typed check says so */
	if (strcmp(name, "max_bad_ratio") == 0 && !(v >= 0 && v <= 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option max_bad_ratio must be between 0 and 1"),
				 errdetail("It is the share of a window's rows that may fail to type before the run halts; 1 never halts.")));
	if (strcmp(name, "drift_min_rows") == 0 && !(v >= 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option drift_min_rows must be a positive integer")));
}

/* Whether a contract path reads key (itself, inside it, or a key under it). */
static bool
path_reads(const char *path, const char *key)
{
	size_t		kl = strlen(key);
	size_t		pl = strlen(path);

	if (strcmp(path, key) == 0)
		return true;
	if (pl > kl && strncmp(path, key, kl) == 0 && path[kl] == '.')
		return true;			/* key is an object the path reads into */
	if (kl > pl && strncmp(key, path, pl) == 0 && key[pl] == '.')
		return true;			/* key is inside a column that takes the whole value */
	return false;
}

static bool
contract_reads(Contract *c, const char *key)
{
	ListCell   *lc;

	foreach(lc, c->columns)
		if (path_reads(((ColumnSpec *) lfirst(lc))->path, key))
			return true;
	return false;
}

/*
 * The envelope a contract reads inside, or NULL: when every column's path
 * goes into the same top-level object ("data." for captured rows), the
 * other top-level keys (op, table, old) are the envelope's, not drift.
 */
static char *
contract_envelope(Contract *c)
{
	char	   *envelope = NULL;
	ListCell   *lc;

	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);
		const char *dot = strchr(col->path, '.');

		if (dot == NULL)
			return NULL;
		if (envelope == NULL)
			envelope = pnstrdup(col->path, dot - col->path + 1);
		else if (strncmp(col->path, envelope, strlen(envelope)) != 0)
			return NULL;
	}
	return envelope;
}

/*
 * The silver type for the JSON types a key was seen with: one type maps
 * (string text, number numeric, boolean boolean, object and array jsonb),
 * mixed ones are jsonb; only null tells nothing yet.
 */
static char
silver_type_of(List *types)
{
	char		t = 0;
	ListCell   *lc;

	foreach(lc, types)
	{
		const char *jt = lfirst(lc);
		char		s;

		if (strcmp(jt, "null") == 0)
			continue;
		s = strcmp(jt, "string") == 0 ? 't' :
			strcmp(jt, "number") == 0 ? 'n' :
			strcmp(jt, "boolean") == 0 ? 'b' : 'j';
		t = (t == 0 || t == s) ? s : 'j';
	}
	return t;
}

static const char *
silver_type_name(char t)
{
	return t == 't' ? "text" : t == 'n' ? "numeric" : t == 'b' ? "boolean" : "jsonb";
}

/* The same type as pg_catalog names it, for DDL. */
static const char *
silver_catalog_type(char t)
{
	return t == 'b' ? "bool" : silver_type_name(t);
}

/*
 * The keys of the source's registry that the contract does not read and
 * that this pipeline has not dealt with (recorded as key_added or
 * column_added, outside a halt).  A key under an unread object is that
 * object's: only the object counts.
 */
static List *
unread_keys(DriftWindow *w)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	MedallionGateway gw;
	uint64		n;
	uint64		i;
	List	   *out = NIL;
	char	   *envelope = contract_envelope(w->contract);
	MemoryContext cxt = CurrentMemoryContext;

	values[0] = CStringGetTextDatum(w->source);
	values[1] = CStringGetTextDatum(w->pipeline);
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec(
		"SELECT k.path, pg_catalog.array_to_string(pg_catalog.array_agg(DISTINCT k.json_type ORDER BY k.json_type), ','), "
		"pg_catalog.to_jsonb(pg_catalog.array_agg(DISTINCT k.json_type ORDER BY k.json_type))::pg_catalog.text "
		"FROM medallion.payload_keys k "
		"WHERE k.pipeline OPERATOR(pg_catalog.=) $1 "
		"AND NOT EXISTS (SELECT FROM medallion.schema_changes c "
		"  WHERE c.pipeline OPERATOR(pg_catalog.=) $2 AND c.path OPERATOR(pg_catalog.=) k.path "
		"  AND c.change OPERATOR(pg_catalog.=) ANY (ARRAY['key_added', 'column_added']::pg_catalog.text[]) "
		"  AND (c.detail OPERATOR(pg_catalog.->>) 'halted') IS NULL) "
		"GROUP BY k.path ORDER BY k.path",
		2, types, values, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);
		char	   *path = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *typetext = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *typejson = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		char	   *dot = strchr(path, '.');
		UnreadKey  *k;
		List	   *typelist = NIL;
		char	   *t;
		char	   *save;
		char	   *copy = pstrdup(typetext);

		MemoryContextSwitchTo(old);
		if (envelope && strncmp(path, envelope, strlen(envelope)) != 0)
			continue;			/* the envelope's own keys */
		if (contract_reads(w->contract, path))
			continue;
		if (dot && !contract_reads(w->contract, pnstrdup(path, dot - path)))
			continue;			/* its object is unread: the object is the change */
		old = MemoryContextSwitchTo(cxt);
		for (t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
			typelist = lappend(typelist, t);
		k = palloc0(sizeof(UnreadKey));
		k->path = path;
		k->types = typejson;
		k->stype = silver_type_of(typelist);
		out = lappend(out, k);
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return out;
}

/*
 * Records a schema change of this pipeline (as the catalog owner).
 */
static void
record_change(const char *pipeline, const char *relation, const char *path,
			  const char *change, const char *classification, int64 run_id,
			  const char *detail_json)
{
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = "       ";

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(relation);
	if (path)
		values[2] = CStringGetTextDatum(path);
	else
		nulls[2] = 'n';
	values[3] = CStringGetTextDatum(change);
	values[4] = CStringGetTextDatum(classification);
	values[5] = Int64GetDatum(run_id);
	if (run_id == 0)
		nulls[5] = 'n';
	values[6] = CStringGetTextDatum(detail_json);
	(void) medallion_catalog_exec("INSERT INTO medallion.schema_changes "
								  "(pipeline, relation, path, change, classification, run_id, detail) "
								  "VALUES ($1, $2, $3, $4, $5, $6, $7::pg_catalog.jsonb)",
								  7, types, values, nulls, SPI_OK_INSERT);
}

static char *
json_string(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	escape_json(&buf, s);
	return buf.data;
}

static char *
source_relation(DriftWindow *w)
{
	const char *dot = strchr(w->source, '.');

	return quote_qualified_identifier(pnstrdup(w->source, dot - w->source), dot + 1);
}

/*
 * Raises a drift halt: the error names the source table and the key, which
 * the failure path records (medallion_drift_after_failure).
 */
void
medallion_drift_halt(DriftWindow *w, int sqlerrcode, const char *path, const char *message,
					 const char *detail)
{
	const char *dot = strchr(w->source, '.');
	const char *hint;

	if (sqlerrcode == MEDALLION_ERRCODE_DRIFT_UNREAD_KEY)
		hint = "Add the key to the contract with medallion.alter_contract(), or set the contract option schema_policy to ignore or evolve; then run medallion.resume().";
	else if (sqlerrcode == MEDALLION_ERRCODE_DRIFT_KEY_MISSING)
		hint = "Fix the contract with medallion.alter_contract(), or set max_bad_ratio to 1 with medallion.alter_pipeline() to load the window with its bad rows going to the DLQ; then run medallion.resume().";
	else
		hint = "Fix the contract with medallion.alter_contract(), or raise max_bad_ratio with medallion.alter_pipeline() (1 sends every bad row to the DLQ); then run medallion.resume().";
	ereport(ERROR,
			(errcode(sqlerrcode),
			 errmsg_internal("%s", message),
			 errdetail_internal("%s", detail),
			 errhint("%s", hint),
			 err_generic_string(PG_DIAG_SCHEMA_NAME, pnstrdup(w->source, dot - w->source)),
			 err_generic_string(PG_DIAG_TABLE_NAME, dot + 1),
			 path ? err_generic_string(PG_DIAG_COLUMN_NAME, path) : 0));
}

static bool
contract_has_column(Contract *c, const char *name)
{
	ListCell   *lc;

	foreach(lc, c->columns)
		if (strcmp(((ColumnSpec *) lfirst(lc))->name, name) == 0)
			return true;
	return false;
}

/*
 * A column name for a new key: its last segment, or the whole path with
 * underscores when that is taken; NULL when neither can be a new column.
 */
static char *
evolve_column_name(DriftWindow *w, Oid relid, const char *path)
{
	const char *last = strrchr(path, '.');
	char	   *candidates[2];
	int			i;

	candidates[0] = pstrdup(last ? last + 1 : path);
	candidates[1] = pstrdup(path);
	for (char *p = candidates[1]; *p; p++)
		if (*p == '.')
			*p = '_';
	for (i = 0; i < 2; i++)
	{
		char	   *name = candidates[i];

		/* lineage columns start with "_"; names must fit */
		if (name[0] == '\0' || name[0] == '_' || strlen(name) >= NAMEDATALEN)
			continue;
		if (contract_has_column(w->contract, name))
			continue;
		if (get_attnum(relid, name) != InvalidAttrNumber)
			continue;
		return name;
	}
	return NULL;
}

/*
 * evolve: adds a nullable column per new key to silver.<name> (as the
 * pipeline's owner, the current user) and to the contract, as a new
 * contract version.  Returns the new definition, or NULL when no column
 * was added.
 */
static Jsonb *
evolve(DriftWindow *w, List *keys)
{
	Oid			relid = get_relname_relid(w->relname, get_namespace_oid("silver", false));
	StringInfoData cols_obj;
	StringInfoData cols_arr;
	List	   *added = NIL;	/* of char *[3]: path, column, type */
	ListCell   *lc;
	char	   *qtarget = quote_qualified_identifier("silver", w->relname);
	const char *relation = qtarget;
	Jsonb	   *newdef = NULL;
	int			version = 0;

	if (!OidIsValid(relid))
		return NULL;			/* the run meets the missing table itself */
	initStringInfo(&cols_obj);
	initStringInfo(&cols_arr);
	appendStringInfoChar(&cols_obj, '{');
	appendStringInfoChar(&cols_arr, '[');
	foreach(lc, keys)
	{
		UnreadKey  *k = lfirst(lc);
		char	  **a;
		char	   *name;

		if (k->stype == 0)
			continue;			/* only nulls so far: its type is not known yet */
		name = evolve_column_name(w, relid, k->path);
		if (name == NULL)
		{
			record_change(w->pipeline, source_relation(w), k->path, "key_added", "safe", w->run_id,
						  psprintf("{\"json_types\": %s, \"policy\": \"evolve\", \"evolved\": false, "
								   "\"reason\": \"no free column name\"}",
								   k->types));
			continue;
		}
		medallion_own_ddl_begin();
		if (SPI_execute(psprintf("ALTER TABLE %s ADD COLUMN %s pg_catalog.%s", qtarget,
								 quote_identifier(name), silver_catalog_type(k->stype)),
						false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not add column \"%s\" to %s", name, qtarget);
		medallion_own_ddl_end();
		if (list_length(added) > 0)
		{
			appendStringInfoString(&cols_obj, ", ");
			appendStringInfoString(&cols_arr, ", ");
		}
		appendStringInfo(&cols_obj, "%s: {\"path\": %s, \"type\": \"%s\"}", json_string(name),
						 json_string(k->path), silver_type_name(k->stype));
		appendStringInfo(&cols_arr, "{\"name\": %s, \"path\": %s, \"type\": \"%s\"}", json_string(name),
						 json_string(k->path), silver_type_name(k->stype));
		a = palloc(sizeof(char *) * 3);
		a[0] = k->path;
		a[1] = name;
		a[2] = (char *) silver_type_name(k->stype);
		added = lappend(added, a);
	}
	appendStringInfoChar(&cols_obj, '}');
	appendStringInfoChar(&cols_arr, ']');
	if (added == NIL)
		return NULL;

	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		values[3];
		MedallionGateway gw;
		MemoryContext cxt = CurrentMemoryContext;
		bool		isnull;

		values[0] = CStringGetTextDatum(w->pipeline);
		values[1] = CStringGetTextDatum(cols_obj.data);
		values[2] = CStringGetTextDatum(cols_arr.data);
		medallion_catalog_enter(&gw);
		/* the contract as it was is version 1 when none is stored yet */
		(void) medallion_gateway_exec(
			"INSERT INTO medallion.contract_versions (pipeline, version, definition, created_at, created_by) "
			"SELECT p.name, 1, p.definition, p.created_at, p.owner::pg_catalog.text "
			"FROM medallion.pipelines p WHERE p.name OPERATOR(pg_catalog.=) $1 "
			"AND NOT EXISTS (SELECT FROM medallion.contract_versions v "
			"  WHERE v.pipeline OPERATOR(pg_catalog.=) $1)",
			1, types, values, NULL, 0, SPI_OK_INSERT);
		(void) medallion_gateway_exec(
			"UPDATE medallion.pipelines p SET definition = pg_catalog.jsonb_set(p.definition, "
			"  '{columns}'::pg_catalog.text[], "
			"  (p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text) OPERATOR(pg_catalog.||) "
			"  CASE WHEN pg_catalog.jsonb_typeof(p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text) "
			"            OPERATOR(pg_catalog.=) 'array'::pg_catalog.text "
			"       THEN $3::pg_catalog.jsonb ELSE $2::pg_catalog.jsonb END) "
			"WHERE p.name OPERATOR(pg_catalog.=) $1",
			3, types, values, NULL, 0, SPI_OK_UPDATE);
		/* the new version, and the pipeline's definition_version with it (contract caches key on it) */
		(void) medallion_gateway_exec(
			"WITH v AS ("
			"  INSERT INTO medallion.contract_versions (pipeline, version, definition, compatibility, created_by) "
			"  SELECT p.name, (SELECT pg_catalog.max(v.version) FROM medallion.contract_versions v "
			"                  WHERE v.pipeline OPERATOR(pg_catalog.=) $1) OPERATOR(pg_catalog.+) 1, "
			"    p.definition, COALESCE(p.definition OPERATOR(pg_catalog.#>>) "
			"      '{options,compatibility}'::pg_catalog.text[], 'backward'), p.owner::pg_catalog.text "
			"  FROM medallion.pipelines p WHERE p.name OPERATOR(pg_catalog.=) $1 "
			"  RETURNING version, definition) "
			"UPDATE medallion.pipelines p SET definition_version = v.version "
			"FROM v WHERE p.name OPERATOR(pg_catalog.=) $1 "
			"RETURNING v.version, v.definition",
			1, types, values, NULL, 0, SPI_OK_UPDATE_RETURNING);
		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			newdef = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
			MemoryContextSwitchTo(old);
		}
		medallion_gateway_leave(&gw);
	}
	foreach(lc, added)
	{
		char	  **a = lfirst(lc);

		record_change(w->pipeline, relation, a[0], "column_added", "safe", w->run_id,
					  psprintf("{\"column\": %s, \"type\": \"%s\", \"contract_version\": %d, "
							   "\"policy\": \"evolve\"}",
							   json_string(a[1]), a[2], version));
	}
	return newdef;
}

/*
 * Judges the keys the contract does not read, at the start of a run: with
 * schema_policy ignore they are recorded, with evolve they become columns
 * (returns the new definition), with strict the run halts (MD051).
 */
Jsonb *
medallion_drift_unread_keys(DriftWindow *w)
{
	List	   *keys = unread_keys(w);
	const char *policy = w->contract->schema_policy ? w->contract->schema_policy : "ignore";
	ListCell   *lc;

	if (keys == NIL)
		return NULL;
	if (strcmp(policy, "strict") == 0)
	{
		StringInfoData detail;
		int			i = 0;

		initStringInfo(&detail);
		foreach(lc, keys)
		{
			if (i++ == DRIFT_DETAIL_KEYS)
			{
				appendStringInfoString(&detail, ", ...");
				break;
			}
			appendStringInfo(&detail, "%s\"%s\"", i > 1 ? ", " : "", ((UnreadKey *) lfirst(lc))->path);
		}
		medallion_drift_halt(w, MEDALLION_ERRCODE_DRIFT_UNREAD_KEY, ((UnreadKey *) linitial(keys))->path,
							 psprintf("payload key \"%s\" of \"%s\" is not read by the contract of pipeline \"%s\"",
									  ((UnreadKey *) linitial(keys))->path, w->source, w->pipeline),
							 psprintf("The pipeline's schema_policy is strict; keys not in the contract: %s.",
									  detail.data));
	}
	if (strcmp(policy, "evolve") == 0)
		return evolve(w, keys);
	foreach(lc, keys)
	{
		UnreadKey  *k = lfirst(lc);

		record_change(w->pipeline, source_relation(w), k->path, "key_added", "safe", w->run_id,
					  psprintf("{\"json_types\": %s, \"policy\": \"ignore\"}", k->types));
	}
	return NULL;
}

/*
 * After a failed run: a drift halt is recorded in medallion.schema_changes
 * (the run's own work, where it was found, was rolled back).  The policy
 * halts the pipeline and alerts (policy.c).
 */
void
medallion_drift_after_failure(const char *pipeline, int64 run_id, ErrorData *edata)
{
	const char *change;
	const char *classification = "breaking";
	char	   *relation;

	if (!medallion_error_is_drift(edata->sqlerrcode))
		return;
	if (edata->sqlerrcode == MEDALLION_ERRCODE_DRIFT_KEY_MISSING)
		change = "key_missing";
	else if (edata->sqlerrcode == MEDALLION_ERRCODE_DRIFT_UNREAD_KEY)
	{
		change = "key_added";
		classification = "safe";	/* halted by schema_policy strict */
	}
	else
		change = "type_changed";
	relation = (edata->schema_name && edata->table_name) ?
		quote_qualified_identifier(edata->schema_name, edata->table_name) : NULL;
	record_change(pipeline, relation ? relation : pipeline, edata->column_name, change,
				  classification, run_id,
				  psprintf("{\"halted\": true, \"sqlstate\": \"%s\", \"message\": %s, \"detail\": %s}",
						   unpack_sql_state(edata->sqlerrcode),
						   json_string(edata->message ? edata->message : ""),
						   json_string(edata->detail ? edata->detail : "")));
}
