/*-------------------------------------------------------------------------
 *
 * compatibility.c
 *	  Whether a new version of a silver contract is compatible with an
 *	  earlier one, as a schema registry judges it.
 *
 * Two directions, after Avro and Protobuf registries:
 *   backward  payloads the earlier version accepted are still accepted: no
 *             column newly required without a default (new, or one that
 *             was optional or had a default, or a required one reading
 *             another path), no narrowed or changed type, no new accepted
 *             or references restriction;
 *   forward   readers of the earlier silver table still work: no column
 *             dropped or renamed, no narrowed or changed type.
 * Modes: backward, forward, full (both), each *_transitive (against every
 * earlier version, not only the last), and none.
 *
 * Only the contracts are compared here (pure functions, no catalog):
 * alter_contract decides what to refuse and what to record.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "medallion.h"
#include "schema/contract_versions.h"

static const char *const mode_names[] = {
	"backward", "backward_transitive", "forward", "forward_transitive",
	"full", "full_transitive", "none", NULL
};

/*
 * Whether mode names a compatibility mode.
 */
bool
medallion_compatibility_mode_valid(const char *mode)
{
	int			i;

	for (i = 0; mode_names[i]; i++)
		if (strcmp(mode, mode_names[i]) == 0)
			return true;
	return false;
}

/*
 * What a (valid) mode checks.
 */
CompatibilityMode
medallion_compatibility_mode(const char *mode)
{
	CompatibilityMode m = {false, false, false};

	m.backward = strncmp(mode, "backward", 8) == 0 || strncmp(mode, "full", 4) == 0;
	m.forward = strncmp(mode, "forward", 7) == 0 || strncmp(mode, "full", 4) == 0;
	m.transitive = strstr(mode, "_transitive") != NULL;
	return m;
}

/* numeric's typmod: precision and scale (-1: unconstrained) */
static void
numeric_typmod(int32 typmod, int *precision, int *scale)
{
	if (typmod < (int32) VARHDRSZ)
	{
		*precision = -1;
		*scale = 0;
		return;
	}
	*precision = ((typmod - VARHDRSZ) >> 16) & 0xffff;
	*scale = (((typmod - VARHDRSZ) & 0x7ff) ^ 1024) - 1024;
}

/* digits before the point an integer type needs in a numeric */
static int
integer_digits(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
			return 5;
		case INT4OID:
			return 10;
		case INT8OID:
			return 19;
		default:
			return 0;
	}
}

/*
 * Whether every value of the old type and modifier is a value of the new
 * one, unchanged (int → bigint, varchar(n) → varchar(m ≥ n) or text,
 * numeric precision up...).
 */
static bool
type_widens(Oid oldt, int32 oldmod, Oid newt, int32 newmod)
{
	int			op,
				os,
				np,
				ns;

	if (integer_digits(oldt) > 0)
	{
		if (newt == NUMERICOID)
		{
			numeric_typmod(newmod, &np, &ns);
			return np < 0 || np - ns >= integer_digits(oldt);
		}
		if (integer_digits(newt) > integer_digits(oldt))
			return true;
		/* float8 holds every int2 and int4 exactly, float4 every int2 */
		return (newt == FLOAT8OID && oldt != INT8OID) || (newt == FLOAT4OID && oldt == INT2OID);
	}
	if (oldt == FLOAT4OID)
		return newt == FLOAT8OID;
	if (oldt == VARCHAROID || oldt == TEXTOID)
	{
		if (newt == TEXTOID || (newt == VARCHAROID && newmod < 0))
			return true;
		return oldt == VARCHAROID && newt == VARCHAROID && oldmod >= 0 && newmod >= oldmod;
	}
	if (oldt != newt)
		return false;
	if (newmod < 0)
		return true;			/* the same type, unconstrained */
	if (oldmod < 0)
		return false;
	switch (oldt)
	{
		case NUMERICOID:
			numeric_typmod(oldmod, &op, &os);
			numeric_typmod(newmod, &np, &ns);
			return ns >= os && np - ns >= op - os;
		case BPCHAROID:
			return false;		/* blank-padded: a longer char(n) changes values */
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case TIMEOID:
		case TIMETZOID:
			return newmod >= oldmod;	/* fractional digits */
		default:
			return false;
	}
}

/*
 * How a column's contract type changes from old to new.
 */
TypeChange
medallion_type_change(const ColumnSpec *old, const ColumnSpec *new)
{
	if (old->typid == new->typid && old->typmod == new->typmod)
		return TYPE_SAME;
	return type_widens(old->typid, old->typmod, new->typid, new->typmod) ? TYPE_WIDENED : TYPE_CHANGED;
}

/* A payload must carry a value for the column: nothing else gives one. */
static bool
needs_value(const ColumnSpec *col)
{
	return col->required && col->default_value == NULL && col->expr == NULL;
}

static bool
string_in(List *list, const char *s)
{
	ListCell   *lc;

	foreach(lc, list)
		if (strcmp(lfirst(lc), s) == 0)
			return true;
	return false;
}

/* The new column of the same path and type as a dropped one, if any. */
static ColumnSpec *
renamed_to(Contract *old, Contract *new, const ColumnSpec *dropped)
{
	ListCell   *lc;

	foreach(lc, new->columns)
	{
		ColumnSpec *col = lfirst(lc);

		if (medallion_contract_column(old, col->name) == NULL && strcmp(col->path, dropped->path) == 0 &&
			col->typid == dropped->typid && col->typmod == dropped->typmod)
			return col;
	}
	return NULL;
}

/*
 * The rules new breaks against the earlier version old (old_version),
 * appended to report: backward and forward, whatever the mode.
 */
void
medallion_compatibility_compare(Contract *old, int32 old_version, Contract *new,
								CompatibilityReport *report)
{
	ListCell   *lc;

	foreach(lc, new->columns)
	{
		ColumnSpec *n = lfirst(lc);
		ColumnSpec *o = medallion_contract_column(old, n->name);

		if (o == NULL)
		{
			if (needs_value(n))
				report->backward = lappend(report->backward,
										   psprintf(_("column \"%s\" is new and required without a default, and version %d accepted payloads without it"),
													n->name, old_version));
			continue;
		}
		if (needs_value(n) && !needs_value(o) && !o->required)
			report->backward = lappend(report->backward,
									   psprintf(_("column \"%s\" is now required without a default, and version %d accepted payloads without it"),
												n->name, old_version));
		else if (needs_value(n) && !needs_value(o))
			report->backward = lappend(report->backward,
									   psprintf(_("required column \"%s\" loses the default or expression that filled it, and version %d accepted payloads without it"),
												n->name, old_version));
		else if (needs_value(n) && strcmp(n->path, o->path) != 0)
			report->backward = lappend(report->backward,
									   psprintf(_("required column \"%s\" reads path \"%s\", and version %d accepted payloads with only \"%s\""),
												n->name, n->path, old_version, o->path));
		switch (medallion_type_change(o, n))
		{
			case TYPE_SAME:
				break;
			case TYPE_WIDENED:
				report->widened = true;
				break;
			case TYPE_CHANGED:
				{
					char	   *msg = psprintf(_("the type of column \"%s\" changes from %s in version %d to %s, which is not a widening"),
											   n->name, o->type_name,
											   old_version, n->type_name);

					report->backward = lappend(report->backward, msg);
					report->forward = lappend(report->forward, msg);
				}
				break;
		}
		if (n->accepted != NIL)
		{
			ListCell   *a;

			if (o->accepted == NIL)
				report->backward = lappend(report->backward,
										   psprintf(_("column \"%s\" gets a list of accepted values, and version %d accepted any value"),
													n->name, old_version));
			else
				foreach(a, o->accepted)
				{
					if (!string_in(n->accepted, lfirst(a)))
					{
						report->backward = lappend(report->backward,
												   psprintf(_("column \"%s\" no longer accepts \"%s\", which version %d accepted"),
															n->name, (char *) lfirst(a), old_version));
						break;
					}
				}
		}
		if (n->ref_table && (o->ref_table == NULL || strcmp(n->ref_table, o->ref_table) != 0 ||
							 strcmp(n->ref_column, o->ref_column) != 0))
			report->backward = lappend(report->backward,
									   psprintf(_("column \"%s\" gets a reference to %s.%s that version %d did not check"),
												n->name, n->ref_table, n->ref_column, old_version));
	}

	foreach(lc, old->columns)
	{
		ColumnSpec *o = lfirst(lc);
		ColumnSpec *r;

		if (medallion_contract_column(new, o->name) != NULL || (o->pii && strcmp(o->pii, "drop") == 0))
			continue;			/* kept, or never stored: no reader saw it */
		r = renamed_to(old, new, o);
		if (r)
			report->forward = lappend(report->forward,
									  psprintf(_("column \"%s\" of version %d is renamed to \"%s\", and readers of the silver table read \"%s\""),
											   o->name, old_version, r->name, o->name));
		else
			report->forward = lappend(report->forward,
									  psprintf(_("column \"%s\" of version %d is dropped, and readers of the silver table read it"),
											   o->name, old_version));
	}
}
