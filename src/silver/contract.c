/*-------------------------------------------------------------------------
 *
 * contract.c
 *	  The column contract of a silver pipeline, and typing a payload under it
 *	  without aborting.
 *
 * A definition is {"columns": {...}, "unique_key": [...], "order_by": ...,
 * "options": {...}} (DESIGN.md §5).  Parsing validates it: a contract that
 * cannot work is refused when the pipeline is created, not at its first run.
 *
 * medallion.silver_check() types one payload the way a run's SQL would,
 * inside a subtransaction that writes nothing, and returns the first error
 * instead of raising it: the slow path of a run uses it to find the bad rows
 * of a window in one set-based pass.
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

PG_FUNCTION_INFO_V1(medallion_silver_check);
PG_FUNCTION_INFO_V1(medallion_contract_violation);
PG_FUNCTION_INFO_V1(medallion_check_required);
PG_FUNCTION_INFO_V1(medallion_check_accepted);
PG_FUNCTION_INFO_V1(medallion_check_reference);

/* Lineage columns every silver table has; no contract column may take them. */
static const char *const reserved_columns[] = {
	"_source_seq", "_batch_id", "_loaded_at", "_run_id", "_created_run_id", NULL
};

static void
contract_error(const char *msg, const char *column)
{
	if (column)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid contract for column \"%s\": %s", column, msg)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid silver definition: %s", msg)));
}

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
			contract_error(psprintf("%s must be a string, number or boolean", what), column);
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
		contract_error(psprintf("%s must be an array", what), column);
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
static bool
is_datetime_type(Oid typid)
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
static void
reject_relative_datetime(const char *s, const char *column)
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
		reject_relative_datetime(text_to_cstring(value), text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_TEXT_P(value);
}

/*
 * Calls a type's input function: validates defaults and accepted values.
 */
static void
check_input(ColumnSpec *col, const char *value, const char *what)
{
	Oid			typinput;
	Oid			typioparam;

	getTypeInputInfo(col->typid, &typinput, &typioparam);
	PG_TRY();
	{
		if (is_datetime_type(col->typid))
			reject_relative_datetime(value, col->name);
		(void) OidInputFunctionCall(typinput, (char *) value, typioparam, col->typmod);
	}
	PG_CATCH();
	{
		errcontext("%s \"%s\" of column \"%s\"", what, value, col->name);
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
		medallion_check_name("column", name, NAMEDATALEN - 1);
		for (i = 0; reserved_columns[i]; i++)
			if (strcmp(name, reserved_columns[i]) == 0)
				contract_error("the name is reserved for a lineage column", name);
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
					strcmp(key, "references") != 0 && strcmp(key, "pii") != 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid contract for column \"%s\": unrecognized key \"%s\"", name, key),
							 errhint("Valid keys are path, type, required, default, expr, accepted, references and pii (and name, in the array form of columns).")));
			}
		}
		if ((f = jb_get(obj, "type")) == NULL || f->type != jbvString)
			contract_error("\"type\" is required and must be a string", name);
		col->type_name = jb_cstring(f);
		if ((f = jb_get(obj, "path")) != NULL)
		{
			if (f->type != jbvString)
				contract_error("\"path\" must be a string", name);
			col->path = jb_cstring(f);
		}
		if ((f = jb_get(obj, "required")) != NULL)
		{
			if (f->type != jbvBool)
				contract_error("\"required\" must be a boolean", name);
			col->required = f->val.boolean;
		}
		if ((f = jb_get(obj, "default")) != NULL && f->type != jbvNull)
			col->default_value = jb_scalar_text(f, name, "\"default\"");
		if ((f = jb_get(obj, "expr")) != NULL)
		{
			if (f->type != jbvString || f->val.string.len == 0)
				contract_error("\"expr\" must be a non-empty string", name);
			col->expr = jb_cstring(f);
		}
		if ((f = jb_get(obj, "accepted")) != NULL)
		{
			col->accepted = jb_string_list(f, name, "\"accepted\"");
			if (col->accepted == NIL)
				contract_error("\"accepted\" must not be empty", name);
		}
		if ((f = jb_get(obj, "references")) != NULL)
		{
			char	   *ref;
			char	   *dot;

			if (f->type != jbvString)
				contract_error("\"references\" must be a string", name);
			ref = jb_cstring(f);
			dot = strrchr(ref, '.');
			if (dot == NULL || dot == ref || dot[1] == '\0' || memchr(ref, '.', dot - ref) == NULL)
				contract_error("\"references\" must be \"layer.table.column\"", name);
			*dot = '\0';
			col->ref_table = ref;
			col->ref_column = dot + 1;
		}
		if ((f = jb_get(obj, "pii")) != NULL)
		{
			if (f->type != jbvString)
				contract_error("\"pii\" must be a string", name);
			col->pii = jb_cstring(f);
			if (strcmp(col->pii, "hash") != 0 && strcmp(col->pii, "hash_v1") != 0 &&
				strcmp(col->pii, "mask") != 0 && strcmp(col->pii, "drop") != 0)
				contract_error("\"pii\" must be \"hash\", \"hash_v1\", \"mask\" or \"drop\"", name);
		}
	}
	else
		contract_error("a column is a type name or an object", name);

	if (col->path == NULL)
		col->path = col->name;
	p = pstrdup(col->path);
	if (p[0] == '\0' || p[0] == '.' || p[strlen(p) - 1] == '.' || strstr(p, "..") != NULL)
		contract_error(psprintf("path \"%s\" is not a dotted path of keys", col->path), name);
	for (seg = strtok_r(p, ".", &save); seg; seg = strtok_r(NULL, ".", &save))
		col->segments = lappend(col->segments, seg);

	parseTypeString(col->type_name, &col->typid, &col->typmod, true);
	if (!OidIsValid(col->typid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("type \"%s\" of column \"%s\" does not exist", col->type_name, name),
				 errhint("Type names are resolved with a run's search_path (pg_catalog, public); qualify the name with its schema.")));
	col->is_json = (col->typid == JSONBOID || col->typid == JSONOID);
	if (col->pii && col->is_json && strcmp(col->pii, "drop") != 0)
		contract_error("\"pii\" hash and mask apply to scalar columns", name);

	if (validate)
	{
		ListCell   *lc;

		if (col->default_value)
			check_input(col, col->default_value, "default");
		foreach(lc, col->accepted)
			check_input(col, lfirst(lc), "accepted value");
	}
	return col;
}

/*
 * Whether options.settings may set a setting: those that change how values
 * read and print, and costs.  Not search_path: a run's SQL names its own
 * objects qualified, and user snippets resolve on the pinned path.
 */
static bool
setting_allowed(const char *name)
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
		contract_error("the definition must be a JSON object", NULL);

	/* options first: their settings apply to resolving the columns' types */
	v = jb_get(&definition->root, "options");
	if (v != NULL && v->type != jbvNull)
	{
		if (!is_object(v))
			contract_error("options must be a JSON object", NULL);
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
					contract_error("option delete_when must be a non-empty SQL condition", NULL);
				c->delete_when = jb_cstring(&kv);
			}
			else if (strcmp(key, "max_rows_per_run") == 0)
			{
				if (kv.type != jbvNumeric)
					contract_error("option max_rows_per_run must be a positive integer", NULL);
				c->max_rows_per_run = DatumGetInt64(DirectFunctionCall1(numeric_int8,
																		NumericGetDatum(kv.val.numeric)));
				if (c->max_rows_per_run <= 0)
					contract_error("option max_rows_per_run must be a positive integer", NULL);
			}
			else if (strcmp(key, "settings") == 0)
			{
				JsonbIterator *sit;
				JsonbValue	sv;
				char	   *skey = NULL;

				if (!is_object(&kv))
					contract_error("option settings must be an object of setting names and values", NULL);
				sit = JsonbIteratorInit(kv.val.binary.data);
				while ((tok = JsonbIteratorNext(&sit, &sv, true)) != WJB_DONE)
				{
					if (tok == WJB_KEY)
					{
						skey = jb_cstring(&sv);
						if (!setting_allowed(skey))
							ereport(ERROR,
									(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
									 errmsg("setting \"%s\" cannot be set by option settings", skey),
									 errhint("Option settings may set TimeZone, DateStyle, IntervalStyle, extra_float_digits, lc_*, work_mem and jit.")));
					}
					else if (tok == WJB_VALUE)
					{
						c->setting_names = lappend(c->setting_names, skey);
						c->setting_values = lappend(c->setting_values,
													jb_scalar_text(&sv, NULL, "a setting's value"));
					}
				}
			}
			else if (strcmp(key, "description") == 0)
			{
				if (kv.type != jbvString)
					contract_error("option description must be a string", NULL);
			}
			else if (validate)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unrecognized option \"%s\"", key),
						 errhint("Valid options of create_silver are delete_when, max_rows_per_run, settings and description.")));
		}
	}

	/*
	 * Type names resolve as a run's SQL will: under the run's pinned
	 * settings (search_path), whoever parses the contract, and wherever.
	 */
	medallion_run_settings_push(c, &nestlevel);
	v = jb_get(&definition->root, "columns");
	if (v == NULL || !(is_object(v) || is_array(v)))
		contract_error("columns must be a JSON object of column contracts, or an array of them with \"name\"", NULL);
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
				contract_error("each element of a columns array must be an object with a string \"name\"", NULL);
			key = jb_cstring(name);
			if (validate && medallion_contract_column(c, key) != NULL)
				contract_error("the column is named twice", key);
			c->columns = lappend(c->columns, parse_column(key, &kv, validate, true));
		}
	}
	if (c->columns == NIL)
		contract_error("columns must not be empty", NULL);
	AtEOXact_GUC(true, nestlevel);

	v = jb_get(&definition->root, "unique_key");
	if (v == NULL)
		contract_error("unique_key is required", NULL);
	c->unique_key = jb_string_list(v, NULL, "unique_key");
	if (c->unique_key == NIL)
		contract_error("unique_key must name at least one column", NULL);
	foreach(lc, c->unique_key)
	{
		ColumnSpec *col = medallion_contract_column(c, lfirst(lc));

		if (col == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("unique_key column \"%s\" is not in the contract", (char *) lfirst(lc))));
		if (col->pii && strcmp(col->pii, "drop") == 0)
			contract_error("a unique_key column cannot be dropped", col->name);
		col->is_key = true;
		col->required = true;
	}

	v = jb_get(&definition->root, "order_by");
	if (v != NULL && v->type != jbvNull)
	{
		ColumnSpec *col;

		if (v->type != jbvString)
			contract_error("order_by must be a column name", NULL);
		c->order_by = jb_cstring(v);
		col = medallion_contract_column(c, c->order_by);
		if (col == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("order_by column \"%s\" is not in the contract", c->order_by)));
		if (col->pii)
			contract_error("the order_by column cannot be a pii column", col->name);
		col->required = true;	/* a version must be comparable */
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

/* ---------------------------------------------------------------------------
 * Typing one payload without aborting
 * ---------------------------------------------------------------------------
 */

/* What silver_check keeps between calls of one statement. */
typedef struct CheckCache
{
	Contract   *contract;
	int			ncols;
	FmgrInfo   *input;			/* per column */
	Oid		   *ioparam;
	Datum	   *path;			/* per column: text[] path elements */
	int		   *npath;
	Datum	  **path_elems;
	FmgrInfo   *eq;				/* per column with accepted and no expr */
	Datum	  **accepted;
	int		   *naccepted;
	Datum	   *got;			/* per column: its text, extracted for this row */
	bool	   *gotnull;
	bool	   *have;
} CheckCache;

static CheckCache *
check_cache(FunctionCallInfo fcinfo, Jsonb *definition)
{
	CheckCache *cc = fcinfo->flinfo->fn_extra;
	MemoryContext old;
	ListCell   *lc;
	int			i = 0;

	if (cc)
		return cc;

	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	cc = palloc0(sizeof(CheckCache));
	cc->contract = medallion_contract_parse(definition, false);
	cc->ncols = list_length(cc->contract->columns);
	cc->input = palloc0(sizeof(FmgrInfo) * cc->ncols);
	cc->ioparam = palloc0(sizeof(Oid) * cc->ncols);
	cc->npath = palloc0(sizeof(int) * cc->ncols);
	cc->path_elems = palloc0(sizeof(Datum *) * cc->ncols);
	cc->eq = palloc0(sizeof(FmgrInfo) * cc->ncols);
	cc->accepted = palloc0(sizeof(Datum *) * cc->ncols);
	cc->naccepted = palloc0(sizeof(int) * cc->ncols);
	cc->got = palloc0(sizeof(Datum) * cc->ncols);
	cc->gotnull = palloc0(sizeof(bool) * cc->ncols);
	cc->have = palloc0(sizeof(bool) * cc->ncols);
	foreach(lc, cc->contract->columns)
	{
		ColumnSpec *col = lfirst(lc);
		Oid			typinput;
		ListCell   *s;
		int			j = 0;

		getTypeInputInfo(col->typid, &typinput, &cc->ioparam[i]);
		fmgr_info(typinput, &cc->input[i]);
		cc->npath[i] = list_length(col->segments);
		cc->path_elems[i] = palloc(sizeof(Datum) * cc->npath[i]);
		foreach(s, col->segments)
			cc->path_elems[i][j++] = CStringGetTextDatum(lfirst(s));
		if (col->accepted && col->expr == NULL)
		{
			TypeCacheEntry *tc = lookup_type_cache(col->typid, TYPECACHE_EQ_OPR_FINFO);
			ListCell   *a;

			if (OidIsValid(tc->eq_opr_finfo.fn_oid))
			{
				fmgr_info_copy(&cc->eq[i], &tc->eq_opr_finfo, fcinfo->flinfo->fn_mcxt);
				cc->accepted[i] = palloc(sizeof(Datum) * list_length(col->accepted));
				foreach(a, col->accepted)
					cc->accepted[i][cc->naccepted[i]++] =
						InputFunctionCall(&cc->input[i], lfirst(a), cc->ioparam[i], col->typmod);
			}
		}
		i++;
	}
	MemoryContextSwitchTo(old);
	fcinfo->flinfo->fn_extra = cc;
	return cc;
}

static Datum
error_array(const char *type, const char *field, const char *sqlstate, const char *message)
{
	Datum		elems[4];

	elems[0] = CStringGetTextDatum(type);
	elems[1] = CStringGetTextDatum(field);
	elems[2] = CStringGetTextDatum(sqlstate);
	elems[3] = CStringGetTextDatum(message);
	return PointerGetDatum(construct_array(elems, 4, TEXTOID, -1, false, TYPALIGN_INT));
}

/* One payload being typed by medallion.silver_check. */
typedef struct TypingState
{
	CheckCache *cc;
	Jsonb	   *payload;
	bool		is_delete;
	const char *field;			/* the column being typed */
	Datum		result;			/* an error array, or 0 */
} TypingState;

/*
 * Whether a delete marker skips this column: it only carries its key and
 * version.
 */
static bool
skipped_by_delete(CheckCache *cc, ColumnSpec *col, bool is_delete)
{
	return is_delete && !col->is_key &&
		strcmp(col->name, cc->contract->order_by ? cc->contract->order_by : "") != 0;
}

/*
 * Types every column of a payload and checks accepted values; type input
 * may raise (the caller catches it in a subtransaction).
 */
static void
type_columns(void *arg)
{
	TypingState *ts = arg;
	CheckCache *cc = ts->cc;
	ListCell   *lc;

	foreach(lc, cc->contract->columns)
	{
		ColumnSpec *col = lfirst(lc);
		int			i = foreach_current_index(lc);
		bool		isnull;
		Datum		text_value;
		Datum		typed;
		char	   *s;
		int			a;
		bool		ok = false;

		if (skipped_by_delete(cc, col, ts->is_delete))
			continue;
		ts->field = col->name;
		text_value = jsonb_get_element(ts->payload, cc->path_elems[i], cc->npath[i], &isnull,
									   !col->is_json);
		if (isnull)
		{
			if (col->default_value == NULL)
				continue;
			s = col->default_value;
		}
		else if (col->is_json)
			s = JsonbToCString(NULL, &DatumGetJsonbP(text_value)->root, VARSIZE_ANY(DatumGetPointer(text_value)));
		else
			s = TextDatumGetCString(text_value);
		if (is_datetime_type(col->typid))
			reject_relative_datetime(s, col->name);
		typed = InputFunctionCall(&cc->input[i], s, cc->ioparam[i], col->typmod);
		if (cc->naccepted[i] == 0)
			continue;
		for (a = 0; a < cc->naccepted[i] && !ok; a++)
			ok = DatumGetBool(FunctionCall2Coll(&cc->eq[i], DEFAULT_COLLATION_OID,
												typed, cc->accepted[i][a]));
		if (!ok)
		{
			ts->result = error_array("accepted", col->name, "23514",
									 psprintf("value \"%s\" of \"%s\" is not an accepted value", s, col->name));
			return;
		}
	}
}

/*
 * Soft typing: whether a text surely passes a column type's input function,
 * decided without raising, so that the rows that type (nearly all) need no
 * subtransaction.  False means "not sure": the row is then typed for real in
 * a subtransaction, which gives the exact error.  Only what is surely
 * accepted is accepted: a subset of each type's input syntax.
 */
static bool
soft_integer(const char *s, int64 min, int64 max)
{
	int64		v = 0;
	int			digits = 0;
	bool		neg = false;

	while (*s == ' ')
		s++;
	if (*s == '-' || *s == '+')
		neg = (*s++ == '-');
	for (; *s >= '0' && *s <= '9'; s++)
	{
		if (++digits > 18)
			return false;
		v = v * 10 + (*s - '0');
	}
	while (*s == ' ')
		s++;
	if (digits == 0 || *s != '\0')
		return false;
	if (neg)
		v = -v;
	return v >= min && v <= max;
}

static bool
soft_numeric(const char *s, int32 typmod)
{
	int			intdigits = 0;
	int			fracdigits = 0;
	bool		leading = true;
	bool		digit_seen = false;

	while (*s == ' ')
		s++;
	if (*s == '-' || *s == '+')
		s++;
	for (; *s >= '0' && *s <= '9'; s++)
	{
		digit_seen = true;
		if (leading && *s == '0')
			continue;
		leading = false;
		intdigits++;
	}
	if (*s == '.')
		for (s++; *s >= '0' && *s <= '9'; s++)
		{
			digit_seen = true;
			fracdigits++;
		}
	while (*s == ' ')
		s++;
	if (*s != '\0' || !digit_seen || intdigits + fracdigits > 1000)
		return false;
	if (typmod >= (int32) VARHDRSZ)
	{
		int			precision = ((typmod - VARHDRSZ) >> 16) & 0xffff;
		int			scale = (typmod - VARHDRSZ) & 0xffff;

		/* rounding to the scale may add one integer digit */
		if (intdigits >= precision - scale)
			return false;
	}
	return true;
}

#define ISDIGIT(c) ((c) >= '0' && (c) <= '9')
#define D2(p) (((p)[0] - '0') * 10 + ((p)[1] - '0'))

/*
 * The common ISO 8601 forms, checked by hand (the general decoder costs
 * several times more): YYYY-MM-DD, and for timestamps also
 * YYYY-MM-DD[T ]HH:MM:SS[.ffffff][Z|+HH[[:]MM]|-HH[[:]MM]].
 */
static bool
soft_iso_datetime(const char *p, Oid typid)
{
	int			y,
				m,
				d,
				n;

	if (!(ISDIGIT(p[0]) && ISDIGIT(p[1]) && ISDIGIT(p[2]) && ISDIGIT(p[3]) && p[4] == '-' &&
		  ISDIGIT(p[5]) && ISDIGIT(p[6]) && p[7] == '-' && ISDIGIT(p[8]) && ISDIGIT(p[9])))
		return false;
	y = D2(p) * 100 + D2(p + 2);
	m = D2(p + 5);
	d = D2(p + 8);
	if (y < 1 || m < 1 || m > 12 || d < 1 || d > day_tab[isleap(y)][m - 1])
		return false;
	p += 10;
	if (*p == '\0')
		return true;
	if (typid == DATEOID || (*p != 'T' && *p != ' '))
		return false;
	p++;
	if (!(ISDIGIT(p[0]) && ISDIGIT(p[1]) && p[2] == ':' && ISDIGIT(p[3]) && ISDIGIT(p[4]) &&
		  p[5] == ':' && ISDIGIT(p[6]) && ISDIGIT(p[7])) ||
		D2(p) > 23 || D2(p + 3) > 59 || D2(p + 6) > 59)
		return false;
	p += 8;
	if (*p == '.')
	{
		for (p++, n = 0; ISDIGIT(*p); p++)
			n++;
		if (n == 0 || n > 6)
			return false;
	}
	if (*p == '\0' || (p[0] == 'Z' && p[1] == '\0'))
		return true;
	if ((*p == '+' || *p == '-') && ISDIGIT(p[1]) && ISDIGIT(p[2]) && D2(p + 1) <= 14)
	{
		p += 3;
		if (*p == '\0')
			return true;
		if (*p == ':')
			p++;
		return ISDIGIT(p[0]) && ISDIGIT(p[1]) && D2(p) <= 59 && p[2] == '\0';
	}
	return false;
}

static bool
soft_datetime(const char *s, Oid typid)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_tm tt,
			   *tm = &tt;
	fsec_t		fsec;
	int			tz;
	Timestamp	ts;
	const char *p;

	if (soft_iso_datetime(s, typid))
		return true;
	/* no names, which the PG15 decoder may look up, and raise on */
	for (p = s; *p; p++)
		if (!(ISDIGIT(*p) || *p == '-' || *p == ':' || *p == '.' ||
			  *p == 'T' || *p == 'Z' || *p == ' ' || *p == '+'))
			return false;
	if (p - s >= MAXDATELEN)
		return false;
	if (ParseDateTime(s, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) != 0 ||
		DecodeDateTime(field, ftype, nf, &dtype, tm, &fsec, &tz) != 0 ||
		dtype != DTK_DATE)
		return false;
	if (typid == DATEOID)
		return IS_VALID_JULIAN(tm->tm_year, tm->tm_mon, tm->tm_mday) &&
			IS_VALID_DATE(date2j(tm->tm_year, tm->tm_mon, tm->tm_mday) - POSTGRES_EPOCH_JDATE);
	return tm2timestamp(tm, fsec, typid == TIMESTAMPTZOID ? &tz : NULL, &ts) == 0;
}

static bool
soft_typed(ColumnSpec *col, const char *s)
{
	bool		b;

	if (col->is_json)
		return true;
	switch (col->typid)
	{
		case TEXTOID:
			return true;
		case VARCHAROID:
			return col->typmod < 0;
		case INT2OID:
			return soft_integer(s, PG_INT16_MIN, PG_INT16_MAX);
		case INT4OID:
			return soft_integer(s, PG_INT32_MIN, PG_INT32_MAX);
		case INT8OID:
			return soft_integer(s, -PG_INT64_MAX, PG_INT64_MAX);
		case NUMERICOID:
			return soft_numeric(s, col->typmod);
		case BOOLOID:
			return parse_bool(s, &b);
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return soft_datetime(s, col->typid);
		default:
			return false;
	}
}

/*
 * Whether every value of a payload surely types (and, for the columns with
 * accepted values, is accepted: *result is then set), without a
 * subtransaction.
 */
static bool
soft_type_columns(CheckCache *cc, Jsonb *payload, bool is_delete, Datum *result)
{
	ListCell   *lc;

	foreach(lc, cc->contract->columns)
	{
		ColumnSpec *col = lfirst(lc);
		int			i = foreach_current_index(lc);
		bool		isnull;
		Datum		text_value;
		char	   *s;

		if (skipped_by_delete(cc, col, is_delete))
			continue;
		/* a value any text or JSON types as: nothing to look at */
		if ((col->is_json || col->typid == TEXTOID) && cc->naccepted[i] == 0)
			continue;
		if (cc->have[i])
		{
			text_value = cc->got[i];
			isnull = cc->gotnull[i];
		}
		else
			text_value = jsonb_get_element(payload, cc->path_elems[i], cc->npath[i], &isnull,
										   !col->is_json);
		if (isnull)
		{
			if (col->default_value == NULL)
				continue;
			s = col->default_value;
		}
		else if (col->is_json)
			return false;
		else
			s = TextDatumGetCString(text_value);
		if (!soft_typed(col, s))
			return false;
		if (cc->naccepted[i] > 0)
		{
			/* cannot fail: soft typing accepted it */
			Datum		typed = InputFunctionCall(&cc->input[i], s, cc->ioparam[i], col->typmod);
			int			a;
			bool		ok = false;

			for (a = 0; a < cc->naccepted[i] && !ok; a++)
				ok = DatumGetBool(FunctionCall2Coll(&cc->eq[i], DEFAULT_COLLATION_OID,
													typed, cc->accepted[i][a]));
			if (!ok)
			{
				*result = error_array("accepted", col->name, "23514",
									  psprintf("value \"%s\" of \"%s\" is not an accepted value", s, col->name));
				return true;
			}
		}
	}
	return true;
}

/*
 * medallion.silver_check(payload, definition, is_delete) → text[] or NULL.
 *
 * Extracts and types every column (only the key and version of a delete),
 * checks required and accepted (for columns without expr: the others are
 * checked on their final value by the run's SQL).  Type input runs in a
 * subtransaction per row that writes nothing (no xid); only data errors are
 * caught.
 */
Datum
medallion_silver_check(PG_FUNCTION_ARGS)
{
	TypingState ts = {0};
	ErrorData  *edata;
	ListCell   *lc;

	medallion_active_run_check("medallion.silver_check()");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	ts.payload = PG_GETARG_JSONB_P(0);
	ts.cc = check_cache(fcinfo, PG_GETARG_JSONB_P(1));
	ts.is_delete = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);

	/* First what needs no catching: presence of required values. */
	memset(ts.cc->have, 0, sizeof(bool) * ts.cc->ncols);
	foreach(lc, ts.cc->contract->columns)
	{
		ColumnSpec *col = lfirst(lc);
		int			i = foreach_current_index(lc);
		bool		isnull;

		if (skipped_by_delete(ts.cc, col, ts.is_delete))
			continue;
		if (col->required && col->expr == NULL && col->default_value == NULL)
		{
			ts.cc->got[i] = jsonb_get_element(ts.payload, ts.cc->path_elems[i], ts.cc->npath[i], &isnull, true);
			ts.cc->gotnull[i] = isnull;
			ts.cc->have[i] = !col->is_json;	/* soft typing reuses it */
			if (isnull)
				PG_RETURN_DATUM(error_array("required", col->name, "23502",
											psprintf("required field \"%s\" is missing or null", col->path)));
		}
	}

	/* Then the common case, without a subtransaction: every value surely types. */
	if (soft_type_columns(ts.cc, ts.payload, ts.is_delete, &ts.result))
	{
		if (ts.result == (Datum) 0)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(ts.result);
	}

	edata = medallion_try(type_columns, &ts, false);
	if (edata)
		ts.result = error_array("cast", ts.field, unpack_sql_state(edata->sqlerrcode), edata->message);
	if (ts.result == (Datum) 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(ts.result);
}

/*
 * medallion.contract_violation(error_type, field, message): raises the data
 * error of a row that breaks the contract.  Never returns.
 */
Datum
medallion_contract_violation(PG_FUNCTION_ARGS)
{
	char	   *type;
	char	   *field;

	medallion_active_run_check("medallion.contract_violation()");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("error_type, field and message must not be NULL")));
	type = text_to_cstring(PG_GETARG_TEXT_PP(0));
	field = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ereport(ERROR,
			(errcode(strcmp(type, "required") == 0 ? ERRCODE_NOT_NULL_VIOLATION :
					 strcmp(type, "references") == 0 ? ERRCODE_FOREIGN_KEY_VIOLATION :
					 ERRCODE_CHECK_VIOLATION),
			 errmsg("contract check \"%s\" of column \"%s\" failed", type, field),
			 errdetail_internal("%s", text_to_cstring(PG_GETARG_TEXT_PP(2))),
			 err_generic_string(PG_DIAG_COLUMN_NAME, field),
			 err_generic_string(PG_DIAG_CONSTRAINT_NAME, type)));
	PG_RETURN_BOOL(false);
}

/* ---------------------------------------------------------------------------
 * The checks of a run's SQL (not volatile: they return their value)
 *
 * Each raises a data error whose column and constraint fields (never its
 * text) say which check of which column failed: the run reads them back,
 * keeping them only for a contract column and a known check.
 * ---------------------------------------------------------------------------
 */

static char *
value_text(FunctionCallInfo fcinfo, Datum value)
{
	Oid			out;
	bool		varlena;

	getTypeOutputInfo(get_fn_expr_argtype(fcinfo->flinfo, 0), &out, &varlena);
	return OidOutputFunctionCall(out, value);
}

/*
 * medallion.check_required(value, is_delete, field, message) → value, or
 * the error when it is NULL (and the row is not a delete).
 */
Datum
medallion_check_required(PG_FUNCTION_ARGS)
{
	char	   *field;

	medallion_active_run_check("medallion.check_required()");
	if (!PG_ARGISNULL(0))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	if (!PG_ARGISNULL(1) && PG_GETARG_BOOL(1))
		PG_RETURN_NULL();
	field = text_to_cstring(PG_GETARG_TEXT_PP(2));
	/* the fourth argument is the column's path */
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("required field \"%s\" is missing or null", text_to_cstring(PG_GETARG_TEXT_PP(3))),
			 err_generic_string(PG_DIAG_COLUMN_NAME, field),
			 err_generic_string(PG_DIAG_CONSTRAINT_NAME, "required")));
	PG_RETURN_NULL();
}

/*
 * medallion.check_accepted(value, accepted[], field) → value, or the error
 * when it is neither NULL nor one of accepted.
 */
Datum
medallion_check_accepted(PG_FUNCTION_ARGS)
{
	Datum		value;
	ArrayType  *arr;
	TypeCacheEntry *tc;
	Datum	   *elems;
	bool	   *enulls;
	int			n,
				i;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	char	   *field;

	medallion_active_run_check("medallion.check_accepted()");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	value = PG_GETARG_DATUM(0);
	arr = PG_GETARG_ARRAYTYPE_P(1);
	tc = lookup_type_cache(ARR_ELEMTYPE(arr), TYPECACHE_EQ_OPR_FINFO);
	get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
	deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign, &elems, &enulls, &n);
	for (i = 0; i < n; i++)
		if (!enulls[i] && DatumGetBool(FunctionCall2Coll(&tc->eq_opr_finfo, PG_GET_COLLATION(), value, elems[i])))
			PG_RETURN_DATUM(value);
	field = text_to_cstring(PG_GETARG_TEXT_PP(2));
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("value \"%s\" of \"%s\" is not an accepted value", value_text(fcinfo, value), field),
			 err_generic_string(PG_DIAG_COLUMN_NAME, field),
			 err_generic_string(PG_DIAG_CONSTRAINT_NAME, "accepted")));
	PG_RETURN_NULL();
}

/*
 * medallion.check_reference(value, found, field, reference) → value, or the
 * error when it is not NULL and was not found.
 */
Datum
medallion_check_reference(PG_FUNCTION_ARGS)
{
	char	   *field;

	medallion_active_run_check("medallion.check_reference()");
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (!PG_ARGISNULL(1) && PG_GETARG_BOOL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	field = text_to_cstring(PG_GETARG_TEXT_PP(2));
	ereport(ERROR,
			(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
			 errmsg("value \"%s\" of \"%s\" has no match in %s", value_text(fcinfo, PG_GETARG_DATUM(0)),
					field, text_to_cstring(PG_GETARG_TEXT_PP(3))),
			 err_generic_string(PG_DIAG_COLUMN_NAME, field),
			 err_generic_string(PG_DIAG_CONSTRAINT_NAME, "references")));
	PG_RETURN_NULL();
}
