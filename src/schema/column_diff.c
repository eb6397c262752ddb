/*-------------------------------------------------------------------------
 *
 * column_diff.c
 *	  Classifying what a DDL statement did to a tracked relation's columns,
 *	  by comparing its stored snapshot with its columns now.
 *
 * PostgreSQL tells an event trigger which relation an ALTER TABLE touched,
 * not what it did to it (that needs the command's parse tree), so the
 * columns before and after are compared:
 *
 *   safe      a column added that is nullable or has a default;
 *   warning   a widening: int2 -> int4 -> int8 (-> numeric wide enough),
 *             float4 -> float8, varchar(n) -> varchar(m > n) / text, numeric
 *             precision up, a length or precision limit raised or removed,
 *             NOT NULL dropped;
 *   breaking  a column dropped, renamed, narrowed or retyped otherwise, SET
 *             NOT NULL, a NOT NULL column added without a default; (the
 *             table dropped or renamed is decided by the caller).
 *
 * Columns are matched by name first, then by attnum: a restore renumbers
 * the columns of a table that had dropped ones, and must not look like a
 * rename.  A name found at another attnum while its old attnum is now a
 * dropped column is a column dropped and added again (its data is gone).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "schema/schema.h"

static const char *const class_names[] = {
	[CHANGE_SAFE] = "safe",
	[CHANGE_WARNING] = "warning",
	[CHANGE_BREAKING] = "breaking",
};

const char *
medallion_change_class_name(ChangeClass class)
{
	return class_names[class];
}

/*
 * A change, with a detail object made of the given key/value pairs (values
 * are strings, or JSON when the key starts with '=').
 */
static SchemaChange *
make_change(const char *change, ChangeClass class, const char *path, char *describe,
			int npairs, const char *const *pairs)
{
	SchemaChange *c = palloc0(sizeof(SchemaChange));
	StringInfoData d;
	int			i;

	c->change = change;
	c->class = class;
	c->path = path ? pstrdup(path) : NULL;
	c->describe = describe;
	initStringInfo(&d);
	appendStringInfoChar(&d, '{');
	for (i = 0; i < npairs; i++)
	{
		const char *key = pairs[2 * i];
		const char *value = pairs[2 * i + 1];
		bool		raw = key[0] == '=';

		if (i > 0)
			appendStringInfoString(&d, ", ");
		escape_json(&d, raw ? key + 1 : key);
		appendStringInfoString(&d, ": ");
		if (value == NULL)
			appendStringInfoString(&d, "null");
		else if (raw)
			appendStringInfoString(&d, value);
		else
			escape_json(&d, value);
	}
	appendStringInfoChar(&d, '}');
	c->detail = d.data;
	return c;
}

/*
 * A change to the whole table: "table_dropped", or "table_renamed" to
 * new_name.
 */
SchemaChange *
medallion_table_change(const char *change, const char *relation, const char *new_name)
{
	if (strcmp(change, "table_renamed") == 0)
	{
		const char *pairs[] = {"from", relation, "to", new_name};

		return make_change(change, CHANGE_BREAKING, NULL,
						   psprintf(_("The table was renamed to %s."), new_name), 2, pairs);
	}
	return make_change(change, CHANGE_BREAKING, NULL, pstrdup(_("The table was dropped.")), 0, NULL);
}

/*
 * The digits before the decimal point that a numeric typmod allows (-1:
 * unlimited), and its scale.  PostgreSQL 15 packs (precision << 16) | scale,
 * the scale in 11 signed bits, plus VARHDRSZ.
 */
static void
numeric_typmod_parts(int32 typmod, int *integer_digits, int *scale)
{
	int32		t = typmod - VARHDRSZ;
	int			precision = (t >> 16) & 0xffff;

	*scale = ((t & 0x7ff) ^ 1024) - 1024;
	*integer_digits = precision - *scale;
}

/*
 * Whether values of a type under typmod "from" all fit under typmod "to".
 */
static bool
typmod_widens(Oid type, int32 from, int32 to)
{
	if (to == from || to == -1)
		return true;
	if (from == -1)
		return false;
	if (type == NUMERICOID)
	{
		int			fdig,
					fscale,
					tdig,
					tscale;

		numeric_typmod_parts(from, &fdig, &fscale);
		numeric_typmod_parts(to, &tdig, &tscale);
		return tscale >= fscale && tdig >= fdig;
	}
	/* lengths (varchar, bpchar, varbit) and precisions (time, timestamp...) */
	return to > from;
}

/*
 * Whether a numeric typmod holds every value of an integer type of that many
 * digits.
 */
static bool
numeric_holds_digits(int32 typmod, int digits)
{
	int			idig,
				scale;

	if (typmod == -1)
		return true;
	numeric_typmod_parts(typmod, &idig, &scale);
	return idig >= digits;
}

/*
 * Whether changing a column from "o" to "n" keeps every value it could hold
 * (a widening), the type itself or its typmod having changed.
 */
static bool
type_widens(const ColumnState *o, const ColumnState *n)
{
	if (o->type == n->type || strcmp(o->typname, n->typname) == 0)
		return typmod_widens(n->type, o->typmod, n->typmod);

	switch (o->type)
	{
		case INT2OID:
			return n->type == INT4OID || n->type == INT8OID || n->type == FLOAT4OID ||
				n->type == FLOAT8OID ||
				(n->type == NUMERICOID && numeric_holds_digits(n->typmod, 5));
		case INT4OID:
			return n->type == INT8OID || n->type == FLOAT8OID ||
				(n->type == NUMERICOID && numeric_holds_digits(n->typmod, 10));
		case INT8OID:
			return n->type == NUMERICOID && numeric_holds_digits(n->typmod, 19);
		case FLOAT4OID:
			return n->type == FLOAT8OID;
		case VARCHAROID:
			return n->type == TEXTOID;
		case TEXTOID:
			return n->type == VARCHAROID && n->typmod == -1;
		default:
			return false;
	}
}

static const ColumnState *
live_by_name(const ColumnState *cols, int n, const char *name)
{
	int			i;

	for (i = 0; i < n; i++)
		if (!cols[i].dropped && strcmp(cols[i].name, name) == 0)
			return &cols[i];
	return NULL;
}

static const ColumnState *
by_attnum(const ColumnState *cols, int n, int attnum)
{
	int			i;

	for (i = 0; i < n; i++)
		if (cols[i].attnum == attnum)
			return &cols[i];
	return NULL;
}

/*
 * The changes to one column kept under its name: its type, its typmod, its
 * NOT NULL.
 */
static List *
compare_column(List *changes, const ColumnState *o, const ColumnState *n)
{
	bool		same_type = (o->type == n->type || strcmp(o->typname, n->typname) == 0);

	if (!same_type || o->typmod != n->typmod)
	{
		const char *pairs[] = {"from", o->format, "to", n->format};
		bool		widens = type_widens(o, n);

		changes = lappend(changes,
						  make_change("column_retyped", widens ? CHANGE_WARNING : CHANGE_BREAKING,
									  n->name,
									  psprintf(widens ?
											   _("Column \"%s\" was widened from %s to %s.") :
											   _("Column \"%s\" changed type from %s to %s."),
											   n->name, o->format, n->format),
									  2, pairs));
	}
	if (o->notnull != n->notnull)
	{
		const char *pairs[] = {"=not_null_from", o->notnull ? "true" : "false",
		"=not_null_to", n->notnull ? "true" : "false"};

		changes = lappend(changes,
						  make_change("column_retyped", n->notnull ? CHANGE_BREAKING : CHANGE_WARNING,
									  n->name,
									  psprintf(n->notnull ?
											   _("Column \"%s\" became NOT NULL.") :
											   _("Column \"%s\" no longer is NOT NULL."),
											   n->name),
									  2, pairs));
	}
	return changes;
}

/*
 * The changes from the columns "old" (the snapshot) to "new" (now), in the
 * old columns' order, then the added ones; a List of SchemaChange.
 */
List *
medallion_column_diff(ColumnState *old, int nold, ColumnState *new, int nnew)
{
	List	   *changes = NIL;
	bool	   *matched = palloc0(sizeof(bool) * Max(nnew, 1));
	int			i;

	for (i = 0; i < nold; i++)
	{
		const ColumnState *o = &old[i];
		const ColumnState *n;
		const ColumnState *same_place;

		if (o->dropped)
			continue;
		n = live_by_name(new, nnew, o->name);
		same_place = by_attnum(new, nnew, o->attnum);
		if (n && n->attnum != o->attnum && same_place && same_place->dropped)
			n = NULL;			/* dropped, and a column of that name added */
		else if (n)
		{
			matched[n - new] = true;
			changes = compare_column(changes, o, n);
			continue;
		}

		if (n == NULL && same_place && !same_place->dropped && !matched[same_place - new] &&
			live_by_name(old, nold, same_place->name) == NULL)
		{
			const char *pairs[] = {"from", o->name, "to", same_place->name};

			matched[same_place - new] = true;
			changes = lappend(changes,
							  make_change("column_renamed", CHANGE_BREAKING, o->name,
										  psprintf(_("Column \"%s\" was renamed to \"%s\"."),
												   o->name, same_place->name),
										  2, pairs));
			continue;
		}
		{
			const char *pairs[] = {"type", o->format};

			changes = lappend(changes,
							  make_change("column_dropped", CHANGE_BREAKING, o->name,
										  psprintf(_("Column \"%s\" was dropped."), o->name),
										  1, pairs));
		}
	}

	for (i = 0; i < nnew; i++)
	{
		const ColumnState *n = &new[i];
		bool		safe;

		if (n->dropped || matched[i])
			continue;
		safe = !n->notnull || n->hasdef;
		{
			const char *pairs[] = {"type", n->format, "=not_null", n->notnull ? "true" : "false",
			"=has_default", n->hasdef ? "true" : "false"};

			changes = lappend(changes,
							  make_change("column_added", safe ? CHANGE_SAFE : CHANGE_BREAKING, n->name,
										  psprintf(safe ?
												   _("Column \"%s\" was added.") :
												   _("Column \"%s\" was added as NOT NULL without a default."),
												   n->name),
										  3, pairs));
		}
	}
	return changes;
}
