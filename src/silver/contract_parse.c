/*-------------------------------------------------------------------------
 *
 * contract_parse.c
 *	  The column contract of a silver pipeline: parsing and validating it.
 *
 * A definition is {"columns": {...}, "unique_key": [...], "order_by": ...,
 * "options": {...}}: each column names its type and where its value comes
 * from in the payload (see docs/architecture.md).  Parsing validates it: a
 * contract that cannot work is refused when the pipeline is created, not at
 * its first run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "parser/parse_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/typcache.h"

#include "medallion.h"
#include "silver/silver.h"


/* Lineage columns every silver table has; no contract column may take them. */
static const char *const reserved_columns[] = {
	"_source_seq", "_batch_id", "_loaded_at", "_run_id", "_created_run_id", NULL
};

/*
 * Refuses a definition: for a column (column not NULL) or as a whole.  The
 * detail is a translatable format and its arguments.
 */
#define contract_error(column, ...) \
	ereport(ERROR, \
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE), \
			 (column) ? errmsg("invalid contract for column \"%s\"", (const char *) (column)) \
			 : errmsg("invalid silver definition"), \
			 errdetail(__VA_ARGS__)))

/*
 * The value of a key of a JSON object, or NULL.
 */
static JsonbValue *
jb_get(JsonbContainer *obj, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(obj, JB_FOBJECT, &k);
}

static char *
jb_cstring(JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * A scalar's text form (strings unquoted), as a type's input function
 * expects it.
 */
static char *
jb_scalar_text(JsonbValue *v, const char *column, const char *what)
{
	switch (v->type)
	{
		case jbvString:
			return jb_cstring(v);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			contract_error(column, "\"%s\" must be a string, number or boolean.", what);
	}
	return NULL;				/* keep compiler quiet */
}

static bool
is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/*
 * The elements of a JSON array of strings.
 */
static List *
jb_string_list(JsonbValue *v, const char *column, const char *what)
{
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;
	List	   *out = NIL;

	if (!is_array(v))
		contract_error(column, "\"%s\" must be an array.", what);
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		out = lappend(out, jb_scalar_text(&e, column, what));
	}
	return out;
}

/*
 * Whether a column type reads date/time words: its input must not depend on
 * when the row is read.
 */
bool
silver_is_datetime_type(Oid typid)
{
	return typid == DATEOID || typid == TIMESTAMPOID || typid == TIMESTAMPTZOID ||
		typid == TIMEOID || typid == TIMETZOID;
}

/*
 * Whether a date/time input names the current time (now, today, tomorrow,
 * yesterday, in any case): a rerun or a replay would give another row.
 * 'epoch' and 'infinity' are deterministic and stay.
 */
static bool
relative_datetime(const char *s, int len)
{
	static const char *const words[] = {"now", "today", "tomorrow", "yesterday", NULL};
	const char *end = s + len;

#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
	while (s < end)
	{
		const char *start;
		int			i;

		while (s < end && !IS_ALPHA(*s))
			s++;
		start = s;
		while (s < end && IS_ALPHA(*s))
			s++;
		for (i = 0; s > start && words[i]; i++)
			if ((int) strlen(words[i]) == s - start && pg_strncasecmp(start, words[i], s - start) == 0)
				return true;
	}
#undef IS_ALPHA
	return false;
}

/* Raises the data error of a date/time input that names the current time. */
void
silver_reject_relative_datetime(const char *s, const char *column)
{
	if (relative_datetime(s, strlen(s)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
				 errmsg("date/time value \"%s\" of \"%s\" depends on the current time", s, column),
				 errdetail("Values such as now, today, tomorrow and yesterday would give another row at every run."),
				 err_generic_string(PG_DIAG_COLUMN_NAME, column)));
}

PG_FUNCTION_INFO_V1(medallion_check_datetime);

/*
 * medallion.check_datetime(value, field) → value, or the data error of a
 * date/time input that names the current time.  A run's SQL reads date/time
 * columns through it, so the fast path refuses what silver_check refuses.
 */
Datum
medallion_check_datetime(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);

	/* the common case (digits) without a copy */
	if (relative_datetime(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value)))
		silver_reject_relative_datetime(text_to_cstring(value), text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_TEXT_P(value);
}

/*
 * Calls a type's input function: validates a default (is_default) or an
 * accepted value.
 */
static void
check_input(ColumnSpec *col, const char *value, bool is_default)
{
	Oid			typinput;
	Oid			typioparam;

	getTypeInputInfo(col->typid, &typinput, &typioparam);
	PG_TRY();
	{
		if (silver_is_datetime_type(col->typid))
			silver_reject_relative_datetime(value, col->name);
		(void) OidInputFunctionCall(typinput, (char *) value, typioparam, col->typmod);
	}
	PG_CATCH();
	{
		if (is_default)
			errcontext("default \"%s\" of column \"%s\"", value, col->name);
		else
			errcontext("accepted value \"%s\" of column \"%s\"", value, col->name);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Parses one column of the contract.
 */
static ColumnSpec *
parse_column(const char *name, JsonbValue *v, bool validate, bool in_array)
{
	ColumnSpec *col = palloc0(sizeof(ColumnSpec));
	JsonbValue *f;
	JsonbIterator *it;
	JsonbValue	kv;
	JsonbIteratorToken tok;
	char	   *p;
	char	   *seg;
	char	   *save;
	int			i;

	col->name = pstrdup(name);
	if (validate)
	{
		medallion_check_name(MEDALLION_NAME_COLUMN, name, NAMEDATALEN - 1);
		for (i = 0; reserved_columns[i]; i++)
			if (strcmp(name, reserved_columns[i]) == 0)
				contract_error(name, "The name is reserved for a lineage column.");
	}

	if (v->type == jbvString)
	{
		/* shorthand: "column": "type" */
		col->type_name = jb_cstring(v);
	}
	else if (is_object(v))
	{
		JsonbContainer *obj = v->val.binary.data;

		if (validate)
		{
			it = JsonbIteratorInit(obj);
			while ((tok = JsonbIteratorNext(&it, &kv, true)) != WJB_DONE)
			{
				char	   *key;

				if (tok != WJB_KEY)
					continue;
				key = jb_cstring(&kv);
				if (strcmp(key, "path") != 0 && strcmp(key, "type") != 0 && (strcmp(key, "name") != 0 || !in_array) &&
					strcmp(key, "required") != 0 && strcmp(key, "default") != 0 &&
					strcmp(key, "expr") != 0 && strcmp(key, "accepted") != 0 &&
					strcmp(key, "references") != 0 && strcmp(key, "pii") != 0 &&
					strcmp(key, "description") != 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid contract for column \"%s\": unrecognized key \"%s\"", name, key),
							 errhint("Valid keys are path, type, required, default, expr, accepted, references, pii and description (and name, in the array form of columns).")));
			}
		}
		if ((f = jb_get(obj, "type")) == NULL || f->type != jbvString)
			contract_error(name, "\"type\" is required and must be a string.");
		col->type_name = jb_cstring(f);
		if ((f = jb_get(obj, "path")) != NULL)
		{
			if (f->type != jbvString)
				contract_error(name, "\"path\" must be a string.");
			col->path = jb_cstring(f);
		}
		if ((f = jb_get(obj, "required")) != NULL)
		{
			if (f->type != jbvBool)
				contract_error(name, "\"required\" must be a boolean.");
			col->required = f->val.boolean;
		}
		if ((f = jb_get(obj, "default")) != NULL && f->type != jbvNull)
			col->default_value = jb_scalar_text(f, name, "default");
		if ((f = jb_get(obj, "expr")) != NULL)
		{
			if (f->type != jbvString || f->val.string.len == 0)
				contract_error(name, "\"expr\" must be a non-empty string.");
			col->expr = jb_cstring(f);
		}
		if ((f = jb_get(obj, "accepted")) != NULL)
		{
			col->accepted = jb_string_list(f, name, "accepted");
			if (col->accepted == NIL)
				contract_error(name, "\"accepted\" must not be empty.");
		}
		if ((f = jb_get(obj, "references")) != NULL)
		{
			char	   *ref;
			char	   *dot;

			if (f->type != jbvString)
				contract_error(name, "\"references\" must be a string.");
			ref = jb_cstring(f);
			dot = strrchr(ref, '.');
			if (dot == NULL || dot == ref || dot[1] == '\0' || memchr(ref, '.', dot - ref) == NULL)
				contract_error(name, "\"references\" must be \"layer.table.column\".");
			*dot = '\0';
			col->ref_table = ref;
			col->ref_column = dot + 1;
		}
		if ((f = jb_get(obj, "description")) != NULL && f->type != jbvNull)
		{
			if (f->type != jbvString)
				contract_error(name, "\"description\" must be a string.");
			col->description = jb_cstring(f);
		}
		if ((f = jb_get(obj, "pii")) != NULL)
		{
			if (f->type != jbvString)
				contract_error(name, "\"pii\" must be a string.");
			col->pii = jb_cstring(f);
			if (strcmp(col->pii, "hash") != 0 && strcmp(col->pii, "hash_v1") != 0 &&
				strcmp(col->pii, "mask") != 0 && strcmp(col->pii, "drop") != 0)
				contract_error(name, "\"pii\" must be \"hash\", \"hash_v1\", \"mask\" or \"drop\".");
		}
	}
	else
		contract_error(name, "A column is a type name or an object.");

	if (col->path == NULL)
		col->path = col->name;
	p = pstrdup(col->path);
	if (p[0] == '\0' || p[0] == '.' || p[strlen(p) - 1] == '.' || strstr(p, "..") != NULL)
		contract_error(name, "Path \"%s\" is not a dotted path of keys.", col->path);
	for (seg = strtok_r(p, ".", &save); seg; seg = strtok_r(NULL, ".", &save))
		col->segments = lappend(col->segments, seg);

	parseTypeString(col->type_name, &col->typid, &col->typmod, true);
	if (!OidIsValid(col->typid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("type \"%s\" of column \"%s\" does not exist", col->type_name, name),
				 errhint("Type names are resolved with a run's search_path (pg_catalog, public, pg_temp); qualify the name with its schema.")));
	col->is_json = (col->typid == JSONBOID || col->typid == JSONOID);
	if (col->pii && col->is_json && strcmp(col->pii, "drop") != 0)
		contract_error(name, "\"pii\" hash and mask apply to scalar columns.");

	if (validate)
	{
		ListCell   *lc;

		if (col->default_value)
			check_input(col, col->default_value, true);
		foreach(lc, col->accepted)
			check_input(col, lfirst(lc), false);
	}
	return col;
}

/*
 * Whether options.settings may set a setting: those that change how values
 * read and print, and costs.  Not search_path: a run's SQL names its own
 * objects qualified, and user snippets resolve on the pinned path.
 */
bool
medallion_setting_allowed(const char *name)
{
	static const char *const allowed[] = {
		"TimeZone", "DateStyle", "IntervalStyle", "extra_float_digits", "work_mem", "jit", NULL
	};
	int			i;

	if (pg_strncasecmp(name, "lc_", 3) == 0)
		return true;
	for (i = 0; allowed[i]; i++)
		if (pg_strcasecmp(name, allowed[i]) == 0)
			return true;
	return false;
}

/*
 * Parses (and with validate, checks) a silver definition.
 */
Contract *
medallion_contract_parse(Jsonb *definition, bool validate)
{
	Contract   *c = palloc0(sizeof(Contract));
	JsonbValue *v;
	JsonbIterator *it;
	JsonbValue	kv;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	ListCell   *lc;
	int			nestlevel;

	if (!JB_ROOT_IS_OBJECT(definition))
		contract_error(NULL, "The definition must be a JSON object.");

	/* options first: their settings apply to resolving the columns' types */
	v = jb_get(&definition->root, "options");
	if (v != NULL && v->type != jbvNull)
	{
		if (!is_object(v))
			contract_error(NULL, "options must be a JSON object.");
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &kv, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				key = jb_cstring(&kv);
				continue;
			}
			if (tok != WJB_VALUE)
				continue;
			if (strcmp(key, "delete_when") == 0)
			{
				if (kv.type != jbvString || kv.val.string.len == 0)
					contract_error(NULL, "Option delete_when must be a non-empty SQL condition.");
				c->delete_when = jb_cstring(&kv);
			}
			else if (strcmp(key, "max_rows_per_run") == 0)
			{
				if (kv.type != jbvNumeric)
					contract_error(NULL, "Option max_rows_per_run must be a positive integer.");
				c->max_rows_per_run = DatumGetInt64(DirectFunctionCall1(numeric_int8,
																		NumericGetDatum(kv.val.numeric)));
				if (c->max_rows_per_run <= 0)
					contract_error(NULL, "Option max_rows_per_run must be a positive integer.");
			}
			else if (strcmp(key, "settings") == 0)
			{
				JsonbIterator *sit;
				JsonbValue	sv;
				char	   *skey = NULL;

				if (!is_object(&kv))
					contract_error(NULL, "Option settings must be an object of setting names and values.");
				sit = JsonbIteratorInit(kv.val.binary.data);
				while ((tok = JsonbIteratorNext(&sit, &sv, true)) != WJB_DONE)
				{
					if (tok == WJB_KEY)
					{
						skey = jb_cstring(&sv);
						if (!medallion_setting_allowed(skey))
							ereport(ERROR,
									(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
									 errmsg("setting \"%s\" cannot be set by option settings", skey),
									 errhint("Option settings may set TimeZone, DateStyle, IntervalStyle, extra_float_digits, lc_*, work_mem and jit.")));
					}
					else if (tok == WJB_VALUE)
					{
						c->setting_names = lappend(c->setting_names, skey);
						c->setting_values = lappend(c->setting_values,
													jb_scalar_text(&sv, NULL, skey));
					}
				}
			}
			else if (strcmp(key, "schema_policy") == 0)
			{
				/* what a run does with payload keys the contract does not read */
				if (kv.type != jbvString)
					contract_error(NULL, "Option schema_policy must be \"ignore\", \"evolve\" or \"strict\".");
				c->schema_policy = jb_cstring(&kv);
				if (strcmp(c->schema_policy, "ignore") != 0 && strcmp(c->schema_policy, "evolve") != 0 &&
					strcmp(c->schema_policy, "strict") != 0)
					contract_error(NULL, "Option schema_policy must be \"ignore\", \"evolve\" or \"strict\".");
			}
			else if (strcmp(key, "event_time") == 0)
			{
				/* the column silver backfill ranges select keys by (checked below) */
				if (kv.type != jbvString)
					contract_error(NULL, "Option event_time must be the name of a date, timestamp or timestamptz column.");
				c->event_time = jb_cstring(&kv);
			}
			else if (strcmp(key, "description") == 0)
			{
				if (kv.type != jbvString)
					contract_error(NULL, "Option description must be a string.");
			}
			else if (strcmp(key, "compatibility") == 0)
			{
				if (kv.type != jbvString ||
					!medallion_compatibility_mode_valid(c->compatibility = jb_cstring(&kv)))
					contract_error(NULL, "Option compatibility must be backward, backward_transitive, forward, forward_transitive, full, full_transitive or none.");
			}
			else if (validate)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unrecognized option \"%s\"", key),
						 errhint("Valid options of create_silver are delete_when, max_rows_per_run, settings, schema_policy, compatibility, event_time and description.")));
		}
	}
	if (c->compatibility == NULL)
		c->compatibility = "backward";

	/*
	 * Type names resolve as a run's SQL will: under the run's pinned
	 * settings (search_path), whoever parses the contract, and wherever.
	 */
	medallion_run_settings_push(c, &nestlevel);
	v = jb_get(&definition->root, "columns");
	if (v == NULL || !(is_object(v) || is_array(v)))
		contract_error(NULL, "columns must be a JSON object of column contracts, or an array of them with \"name\".");
	it = JsonbIteratorInit(v->val.binary.data);
	if (is_object(v))
	{
		/* jsonb's order of keys, not the written one */
		while ((tok = JsonbIteratorNext(&it, &kv, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
				key = jb_cstring(&kv);
			else if (tok == WJB_VALUE)
				c->columns = lappend(c->columns, parse_column(key, &kv, validate, false));
		}
	}
	else
	{
		/* an array keeps the written order */
		while ((tok = JsonbIteratorNext(&it, &kv, true)) != WJB_DONE)
		{
			JsonbValue *name;

			if (tok != WJB_ELEM)
				continue;
			if (!is_object(&kv) || (name = jb_get(kv.val.binary.data, "name")) == NULL ||
				name->type != jbvString)
				contract_error(NULL, "Each element of a columns array must be an object with a string \"name\".");
			key = jb_cstring(name);
			if (validate && medallion_contract_column(c, key) != NULL)
				contract_error(key, "The column is named twice.");
			c->columns = lappend(c->columns, parse_column(key, &kv, validate, true));
		}
	}
	if (c->columns == NIL)
		contract_error(NULL, "columns must not be empty.");
	AtEOXact_GUC(true, nestlevel);

	v = jb_get(&definition->root, "unique_key");
	if (v == NULL)
		contract_error(NULL, "unique_key is required.");
	c->unique_key = jb_string_list(v, NULL, "unique_key");
	if (c->unique_key == NIL)
		contract_error(NULL, "unique_key must name at least one column.");
	foreach(lc, c->unique_key)
	{
		ColumnSpec *col = medallion_contract_column(c, lfirst(lc));

		if (col == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("unique_key column \"%s\" is not in the contract", (char *) lfirst(lc))));
		if (col->pii && strcmp(col->pii, "drop") == 0)
			contract_error(col->name, "A unique_key column cannot be dropped.");
		col->is_key = true;
		col->required = true;
	}

	v = jb_get(&definition->root, "order_by");
	if (v != NULL && v->type != jbvNull)
	{
		ColumnSpec *col;

		if (v->type != jbvString)
			contract_error(NULL, "order_by must be a column name.");
		c->order_by = jb_cstring(v);
		col = medallion_contract_column(c, c->order_by);
		if (col == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("order_by column \"%s\" is not in the contract", c->order_by)));
		if (col->pii)
			contract_error(col->name, "The order_by column cannot be a pii column.");
		col->required = true;	/* a version must be comparable */
	}

	if (c->event_time)
	{
		ColumnSpec *col = medallion_contract_column(c, c->event_time);

		if (col == NULL)
			contract_error(NULL, "Option event_time names column \"%s\", which is not in the contract.", c->event_time);
		if ((col->typid != DATEOID && col->typid != TIMESTAMPOID && col->typid != TIMESTAMPTZOID) ||
			col->pii != NULL)
			contract_error(col->name, "The event_time column must be of type date, timestamp or timestamptz, and not a pii column.");
	}

	return c;
}

/*
 * The column of that name, or NULL.
 */
ColumnSpec *
medallion_contract_column(Contract *c, const char *name)
{
	ListCell   *lc;

	foreach(lc, c->columns)
	{
		ColumnSpec *col = lfirst(lc);

		if (strcmp(col->name, name) == 0)
			return col;
	}
	return NULL;
}
