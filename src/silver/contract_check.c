/*-------------------------------------------------------------------------
 *
 * contract_check.c
 *	  Typing a payload under a contract without aborting, and the check_*
 *	  functions a run's SQL calls.
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
#include "silver/silver.h"

PG_FUNCTION_INFO_V1(medallion_silver_check);
PG_FUNCTION_INFO_V1(medallion_contract_violation);
PG_FUNCTION_INFO_V1(medallion_check_required);
PG_FUNCTION_INFO_V1(medallion_check_accepted);
PG_FUNCTION_INFO_V1(medallion_check_reference);

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
	/* the run's own contract, or (another definition) parsed for this statement */
	cc->contract = silver_active_run_contract(definition);
	if (cc->contract == NULL)
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
		if (silver_is_datetime_type(col->typid))
			silver_reject_relative_datetime(s, col->name);
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
