/*-------------------------------------------------------------------------
 *
 * alter_contract.c
 *	  medallion.alter_contract(): a new version of a silver contract.
 *
 * The columns argument patches the contract: an object adds or replaces a
 * column's spec, null removes the column; options are patched the same way.
 * The result is validated as create_silver validates a contract (silver's
 * parser; expressions, conditions and expectations planned as the owner),
 * checked against the pipeline's compatibility mode (compatibility.c), and
 * applied in the caller's transaction: ALTER TABLE on silver.<name> (ADD
 * COLUMN, ALTER TYPE, DROP COLUMN, DROP NOT NULL, and COMMENT ON COLUMN
 * for the columns' descriptions), then the new version in
 * medallion.contract_versions and medallion.pipelines.definition.  Rows
 * already in silver are not rewritten.
 *
 * Lock order, the same as a run's: the pipeline's catalog row first (a run
 * holds it for its whole transaction), then the silver table.  So a run
 * and alter_contract never interleave: one waits for the other to commit,
 * and a run that waited reads the new definition (its locking lookup sees
 * the newest row version).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "medallion.h"
#include "schema/contract_versions.h"
#include "silver/silver.h"

PG_FUNCTION_INFO_V1(medallion_alter_contract);

/* ---------------------------------------------------------------------------
 * The patch
 * ---------------------------------------------------------------------------
 */

/* The value of a key of a JSON object, or NULL. */
static JsonbValue *
jb_get(JsonbContainer *obj, const char *key)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
}

static bool
jv_is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/* A value's JSON text. */
static char *
jv_text(JsonbValue *v)
{
	Jsonb	   *j;

	if (v->type == jbvBinary)
		return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
	j = JsonbValueToJsonb(v);
	return JsonbToCString(NULL, &j->root, VARSIZE(j));
}

static void
append_key(StringInfo buf, bool *first, const char *key)
{
	if (!*first)
		appendStringInfoString(buf, ", ");
	*first = false;
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
}

/* Refuses a patch value that is neither a column contract nor null. */
static void
check_column_patch(const char *name, JsonbValue *v)
{
	if (v->type != jbvNull && v->type != jbvString && !jv_is_object(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid patch for column \"%s\"", name),
				 errdetail("A column's patch is its new contract (a type name or an object), or null to remove it.")));
}

/*
 * An object patched: keys of patch replace or add, null values remove.
 * columns: patching a contract's columns (removing a missing one is an
 * error, patch values are checked).
 */
static void
patch_object(StringInfo buf, JsonbContainer *old, JsonbContainer *patch, bool columns)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	bool		first = true;

	appendStringInfoChar(buf, '{');
	it = JsonbIteratorInit(old);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue *p;

		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		if (tok != WJB_VALUE)
			continue;
		p = patch ? jb_get(patch, key) : NULL;
		if (p && p->type == jbvNull)
			continue;
		append_key(buf, &first, key);
		appendStringInfoString(buf, jv_text(p ? p : &v));
	}
	if (patch)
	{
		it = JsonbIteratorInit(patch);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
				key = pnstrdup(v.val.string.val, v.val.string.len);
			if (tok != WJB_VALUE)
				continue;
			if (columns)
				check_column_patch(key, &v);
			if (jb_get(old, key) != NULL)
				continue;
			if (v.type == jbvNull)
			{
				if (columns)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_COLUMN),
							 errmsg("column \"%s\" is not in the contract", key)));
				continue;
			}
			append_key(buf, &first, key);
			appendStringInfoString(buf, jv_text(&v));
		}
	}
	appendStringInfoChar(buf, '}');
}

/* One element of an array of columns: the patch's contract under name. */
static void
append_named_column(StringInfo buf, const char *name, JsonbValue *spec)
{
	JsonbValue *n;

	if (spec->type == jbvString)
	{
		appendStringInfoString(buf, "{\"name\": ");
		escape_json(buf, name);
		appendStringInfoString(buf, ", \"type\": ");
		appendStringInfoString(buf, jv_text(spec));
		appendStringInfoChar(buf, '}');
		return;
	}
	n = jb_get(spec->val.binary.data, "name");
	if (n && (n->type != jbvString || (int) strlen(name) != n->val.string.len ||
			  strncmp(name, n->val.string.val, n->val.string.len) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid patch for column \"%s\"", name),
				 errdetail("A column is renamed by removing it and adding the new one; \"name\" must be the column's key.")));
	if (n)
		appendStringInfoString(buf, jv_text(spec));
	else
	{
		/* {"name": ..., the patch's keys} */
		char	   *inner = jv_text(spec);

		appendStringInfoString(buf, "{\"name\": ");
		escape_json(buf, name);
		if (strcmp(inner, "{}") != 0)
		{
			appendStringInfoString(buf, ", ");
			appendStringInfoString(buf, inner + 1);
		}
		else
			appendStringInfoChar(buf, '}');
	}
}

/*
 * The array form of columns (create_silver keeps its order) patched: a
 * replaced column keeps its place, new ones go last.
 */
static void
patch_column_array(StringInfo buf, JsonbContainer *old, JsonbContainer *patch)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	bool		first = true;
	List	   *names = NIL;

	appendStringInfoChar(buf, '[');
	it = JsonbIteratorInit(old);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue *n;
		JsonbValue *p;
		char	   *name;

		if (tok != WJB_ELEM)
			continue;
		n = jv_is_object(&v) ? jb_get(v.val.binary.data, "name") : NULL;
		if (n == NULL || n->type != jbvString)
			elog(ERROR, "stored contract has a column without a name");
		name = pnstrdup(n->val.string.val, n->val.string.len);
		names = lappend(names, name);
		p = jb_get(patch, name);
		if (p && p->type == jbvNull)
			continue;
		if (!first)
			appendStringInfoString(buf, ", ");
		first = false;
		if (p)
		{
			check_column_patch(name, p);
			append_named_column(buf, name, p);
		}
		else
			appendStringInfoString(buf, jv_text(&v));
	}
	it = JsonbIteratorInit(patch);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		ListCell   *lc;
		bool		known = false;

		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		if (tok != WJB_VALUE)
			continue;
		check_column_patch(key, &v);
		foreach(lc, names)
			known |= strcmp(lfirst(lc), key) == 0;
		if (known)
			continue;
		if (v.type == jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" is not in the contract", key)));
		if (!first)
			appendStringInfoString(buf, ", ");
		first = false;
		append_named_column(buf, key, &v);
	}
	appendStringInfoChar(buf, ']');
}

/*
 * The stored definition with columns and options patched.
 */
static Jsonb *
patch_definition(Jsonb *old, Jsonb *columns, Jsonb *options, const char *pipeline)
{
	StringInfoData buf;
	JsonbValue *v;
	JsonbValue	empty;

	if (options)
	{
		if (jb_get(&options->root, "unique_key") || jb_get(&options->root, "order_by"))
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_CONTRACT_NEEDS_REBUILD),
					 errmsg("cannot change the unique_key or order_by of pipeline \"%s\"", pipeline),
					 errdetail("The unique key and the version order decide which row each payload becomes: every stored row would have to be computed again."),
					 errhint("Create a new pipeline with the new key and backfill it from bronze.")));
	}

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"columns\": ");
	v = jb_get(&old->root, "columns");
	if (v == NULL || v->type != jbvBinary)
		elog(ERROR, "stored contract of pipeline \"%s\" has no columns", pipeline);
	if (columns == NULL)
		appendStringInfoString(&buf, jv_text(v));
	else if (JsonContainerIsArray(v->val.binary.data))
		patch_column_array(&buf, v->val.binary.data, &columns->root);
	else
		patch_object(&buf, v->val.binary.data, &columns->root, true);

	appendStringInfoString(&buf, ", \"unique_key\": ");
	v = jb_get(&old->root, "unique_key");
	appendStringInfoString(&buf, v ? jv_text(v) : "null");
	appendStringInfoString(&buf, ", \"order_by\": ");
	v = jb_get(&old->root, "order_by");
	appendStringInfoString(&buf, v ? jv_text(v) : "null");

	appendStringInfoString(&buf, ", \"options\": ");
	v = jb_get(&old->root, "options");
	if (v == NULL || !jv_is_object(v))
	{
		/* no options stored: patch an empty object */
		Jsonb	   *e = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));

		empty.type = jbvBinary;
		empty.val.binary.data = &e->root;
		empty.val.binary.len = VARSIZE(e);
		v = &empty;
	}
	patch_object(&buf, v->val.binary.data, options ? &options->root : NULL, false);
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* ---------------------------------------------------------------------------
 * What cannot change in place
 * ---------------------------------------------------------------------------
 */

static bool
str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

/*
 * Refuses a patch that removes a key or order_by column (before the new
 * contract is parsed, which would only say that the key names no column).
 */
static void
refuse_key_removal(Contract *old, Jsonb *columns, const char *pipeline)
{
	ListCell   *lc;

	if (columns == NULL)
		return;
	foreach(lc, old->columns)
	{
		ColumnSpec *o = lfirst(lc);
		JsonbValue *v = jb_get(&columns->root, o->name);

		if (v && v->type == jbvNull &&
			(o->is_key || (old->order_by && strcmp(old->order_by, o->name) == 0)))
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_CONTRACT_NEEDS_REBUILD),
					 errmsg("cannot remove column \"%s\" of pipeline \"%s\"", o->name, pipeline),
					 o->is_key ? errdetail("The column is part of the unique key.")
					 : errdetail("The column is the order_by column."),
					 errhint("Create a new pipeline with the new key and backfill it from bronze.")));
	}
}

/*
 * Refuses what alter_contract cannot do to a table in place: the key, the
 * version order, delete_when (its tombstone table), a column's pii.
 */
static void
refuse_rebuilds(Contract *old, Contract *new, const char *pipeline)
{
	ListCell   *lc;

	if (str_differs(old->delete_when, new->delete_when))
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_CONTRACT_NEEDS_REBUILD),
				 errmsg("cannot change option delete_when of pipeline \"%s\"", pipeline),
				 errdetail("Which keys are deleted decides the silver table's rows and its table of deleted keys."),
				 errhint("Create a new pipeline with the new option and backfill it from bronze.")));
	foreach(lc, old->columns)
	{
		ColumnSpec *o = lfirst(lc);
		ColumnSpec *n = medallion_contract_column(new, o->name);
		bool		keyed = o->is_key || (old->order_by && strcmp(old->order_by, o->name) == 0);

		if (keyed && (n == NULL || medallion_type_change(o, n) != TYPE_SAME))
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_CONTRACT_NEEDS_REBUILD),
					 n == NULL ? errmsg("cannot remove column \"%s\" of pipeline \"%s\"", o->name, pipeline)
					 : errmsg("cannot change the type of column \"%s\" of pipeline \"%s\"", o->name, pipeline),
					 o->is_key ? errdetail("The column is part of the unique key.")
					 : errdetail("The column is the order_by column."),
					 errhint("Create a new pipeline with the new key and backfill it from bronze.")));
		if (n && str_differs(o->pii, n->pii))
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_CONTRACT_NEEDS_REBUILD),
					 errmsg("cannot change the pii treatment of column \"%s\" of pipeline \"%s\"", o->name, pipeline),
					 errdetail("Rows already in silver keep the values stored under the previous treatment."),
					 errhint("Remove the column in one alter_contract and add it back in another (its stored values are lost), or backfill a new pipeline.")));
	}
}

/* ---------------------------------------------------------------------------
 * The table
 * ---------------------------------------------------------------------------
 */

/* What the new version changes in the table, for the record. */
typedef struct TableChanges
{
	List	   *added;			/* of char *: column names */
	List	   *dropped;
	List	   *retyped;
	List	   *relaxed;		/* NOT NULL dropped */
} TableChanges;

/*
 * Refuses to drop a column another pipeline's contract references: that
 * pipeline's runs would fail.
 */
static void
refuse_referenced_drop(const char *pipeline, const char *relation, const char *column)
{
	char	   *by = medallion_contract_referencing_pipeline(pipeline, psprintf("%s.%s", relation, column));

	if (by)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot remove column \"%s\" of pipeline \"%s\"", column, pipeline),
				 errdetail("The contract of pipeline \"%s\" references %s.%s.", by, relation, column),
				 errhint("Remove that reference first (alter_contract of \"%s\").", by)));
}

/*
 * The ALTER TABLE statements that bring the table of old to new (NIL when
 * none): one for the columns, one to drop the defaults that filled new
 * required columns of existing rows.
 */
static List *
table_ddl(Contract *old, Contract *new, const char *pipeline, const char *relation,
		  const char *qtable, TableChanges *tc)
{
	StringInfoData alter;
	StringInfoData defaults;
	ListCell   *lc;
	List	   *out = NIL;

	initStringInfo(&alter);
	initStringInfo(&defaults);
	foreach(lc, old->columns)
	{
		ColumnSpec *o = lfirst(lc);
		ColumnSpec *n = medallion_contract_column(new, o->name);

		if (!silver_is_stored(o) || (n && silver_is_stored(n)))
			continue;
		refuse_referenced_drop(pipeline, relation, o->name);
		appendStringInfo(&alter, "%sDROP COLUMN %s", alter.len ? ", " : "", silver_qcol(o->name));
		tc->dropped = lappend(tc->dropped, o->name);
	}
	foreach(lc, new->columns)
	{
		ColumnSpec *n = lfirst(lc);
		ColumnSpec *o = medallion_contract_column(old, n->name);
		const char *q = silver_qcol(n->name);

		if (!silver_is_stored(n))
			continue;
		if (o == NULL || !silver_is_stored(o))
		{
			/*
			 * Existing rows get NULL, unless a required column has a plain
			 * default: then they get it (NOT NULL holds, as a payload
			 * without the key would have got it).
			 */
			appendStringInfo(&alter, "%sADD COLUMN %s %s", alter.len ? ", " : "", q, silver_stored_type(n));
			if (n->required && n->default_value && n->expr == NULL && n->pii == NULL)
			{
				appendStringInfo(&alter, " NOT NULL DEFAULT %s",
								 silver_typed_sql(n, quote_literal_cstr(n->default_value)));
				appendStringInfo(&defaults, "%sALTER COLUMN %s DROP DEFAULT", defaults.len ? ", " : "", q);
			}
			tc->added = lappend(tc->added, n->name);
			continue;
		}
		if (strcmp(silver_stored_type(o), silver_stored_type(n)) != 0)
		{
			/* a widening converts implicitly; anything else through text, lengths checked */
			appendStringInfo(&alter, "%sALTER COLUMN %s TYPE %s", alter.len ? ", " : "", q, silver_stored_type(n));
			if (medallion_type_change(o, n) != TYPE_WIDENED)
				appendStringInfo(&alter, " USING %s",
								 silver_typed_sql(n, psprintf("CAST(%s AS pg_catalog.text)", q)));
			tc->retyped = lappend(tc->retyped, n->name);
		}
		if (o->required && !n->required)
		{
			appendStringInfo(&alter, "%sALTER COLUMN %s DROP NOT NULL", alter.len ? ", " : "", q);
			tc->relaxed = lappend(tc->relaxed, n->name);
		}
	}
	if (alter.len)
		out = lappend(out, psprintf("ALTER TABLE %s %s", qtable, alter.data));
	if (defaults.len)
		out = lappend(out, psprintf("ALTER TABLE %s %s", qtable, defaults.data));
	return out;
}

/*
 * The COMMENT ON COLUMN statements that bring the column comments of old's
 * table to new's descriptions: a column added or whose description was
 * added, changed or removed (NULL removes the comment).  A dropped column
 * takes its comment with it.
 */
static List *
comment_ddl(Contract *old, Contract *new, const char *qtable)
{
	ListCell   *lc;
	List	   *out = NIL;

	foreach(lc, new->columns)
	{
		ColumnSpec *n = lfirst(lc);
		ColumnSpec *o = medallion_contract_column(old, n->name);
		const char *before = (o && silver_is_stored(o)) ? o->description : NULL;

		if (!silver_is_stored(n) || !str_differs(before, n->description))
			continue;
		out = lappend(out, psprintf("COMMENT ON COLUMN %s.%s IS %s", qtable, silver_qcol(n->name),
									n->description ? quote_literal_cstr(n->description) : "NULL"));
	}
	return out;
}

/*
 * Runs the statements as the table's owner (the pipeline's), with
 * search_path pinned, marked as medallion's own DDL.
 */
static void
table_apply(List *statements, Oid owner)
{
	MedallionGateway gw;
	ListCell   *lc;

	if (statements == NIL)
		return;
	medallion_gateway_enter(owner, &gw);
	medallion_own_ddl_begin();
	foreach(lc, statements)
		(void) medallion_gateway_exec(lfirst(lc), 0, NULL, NULL, NULL, 0, SPI_OK_UTILITY);
	medallion_own_ddl_end();
	medallion_gateway_leave(&gw);
	CommandCounterIncrement();
}

/* ---------------------------------------------------------------------------
 * Compatibility and the record
 * ---------------------------------------------------------------------------
 */

static void
append_json_list(StringInfo buf, const char *key, List *items)
{
	ListCell   *lc;

	appendStringInfo(buf, ", \"%s\": [", key);
	foreach(lc, items)
	{
		if (lc != list_head(items))
			appendStringInfoString(buf, ", ");
		escape_json(buf, lfirst(lc));
	}
	appendStringInfoChar(buf, ']');
}

static char *
join_rules(List *rules)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, rules)
		appendStringInfo(&buf, "%s%s", lc == list_head(rules) ? "" : "; ", (char *) lfirst(lc));
	return buf.data;
}

/*
 * The rules the new contract breaks under the mode in force before the
 * change (mode), against the last version or, transitive, every one.
 * last gets the report against the last version, whatever the mode.
 */
static List *
broken_rules(const Pipeline *p, Contract *oldc, Contract *newc, CompatibilityReport *last)
{
	CompatibilityMode mode = medallion_compatibility_mode(oldc->compatibility);
	List	   *broken = NIL;
	ListCell   *lc;

	medallion_compatibility_compare(oldc, p->definition_version, newc, last);
	if (mode.backward)
		broken = list_concat(broken, last->backward);
	if (mode.forward)
		broken = list_concat(broken, last->forward);
	if (mode.transitive)
	{
		foreach(lc, medallion_contract_versions_load(p->name))
		{
			ContractVersion *v = lfirst(lc);
			CompatibilityReport r = {0};

			if (v->version >= p->definition_version)
				continue;		/* the last one is done */
			medallion_compatibility_compare(medallion_contract_parse(v->definition, false),
											v->version, newc, &r);
			if (mode.backward)
				broken = list_concat(broken, r.backward);
			if (mode.forward)
				broken = list_concat(broken, r.forward);
		}
	}
	/* a changed type breaks both ways: say it once */
	return list_concat_unique_ptr(NIL, broken);
}

/*
 * Records the change in medallion.schema_changes: breaking if it was forced
 * or breaks either direction against the last version, whatever the mode (so
 * that a reader of the record sees it), a warning for a widening, else safe.
 */
static void
record_change(const Pipeline *p, const char *relation, int32 version, bool forced,
			  const char *mode, CompatibilityReport *last, TableChanges *tc)
{
	StringInfoData detail;
	const char *classification;

	classification = (forced || last->backward != NIL || last->forward != NIL) ? "breaking"
		: last->widened ? "warning" : "safe";
	initStringInfo(&detail);
	appendStringInfo(&detail, "{\"from_version\": %d, \"to_version\": %d, \"forced\": %s, \"compatibility\": ",
					 p->definition_version, version, forced ? "true" : "false");
	escape_json(&detail, mode);
	append_json_list(&detail, "broken", list_concat_unique_ptr(list_copy(last->backward), last->forward));
	append_json_list(&detail, "added", tc->added);
	append_json_list(&detail, "dropped", tc->dropped);
	append_json_list(&detail, "retyped", tc->retyped);
	append_json_list(&detail, "nullable", tc->relaxed);
	appendStringInfoChar(&detail, '}');
	medallion_contract_change_record(p->name, relation, classification,
									 DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(detail.data))));
}

/*
 * Makes the next version of a silver pipeline's contract: columns and
 * options patch the current one (either may be NULL).  The caller has
 * checked who may, and holds the pipeline's row lock (p as the locking
 * lookup read it).  Returns the new version, or the current one when the
 * patch changes nothing.
 */
int32
medallion_contract_alter(const Pipeline *p, Jsonb *columns, Jsonb *options, bool force)
{
	Jsonb	   *newdef;
	Contract   *oldc;
	Contract   *newc;
	CompatibilityReport last = {0};
	List	   *broken;
	TableChanges tc = {0};
	Oid			relid;
	char	   *qtable;
	char	   *relation;
	ListCell   *lc;
	int32		version;
	char	   *dot;
	List	   *referenced;

	if (p->definition == NULL || p->definition_version <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pipeline \"%s\" has no contract version", p->name),
				 errhint("Update the extension: ALTER EXTENSION medallion UPDATE.")));
	relid = get_relname_relid(p->relname, get_namespace_oid("silver", false));
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("silver table of pipeline \"%s\" does not exist", p->name)));
	qtable = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));
	relation = psprintf("%s.%s", get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));

	newdef = patch_definition(p->definition, columns, options, p->name);
	if (DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(newdef), JsonbPGetDatum(p->definition))))
	{
		ereport(NOTICE,
				(errmsg("contract of pipeline \"%s\" is unchanged: it stays version %d",
						p->name, p->definition_version)));
		return p->definition_version;
	}

	oldc = medallion_contract_parse(p->definition, false);
	refuse_key_removal(oldc, columns, p->name);
	newc = medallion_contract_parse(newdef, true);
	refuse_rebuilds(oldc, newc, p->name);
	referenced = silver_check_references(newc);

	broken = broken_rules(p, oldc, newc, &last);
	if (broken != NIL && !force)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_CONTRACT_INCOMPATIBLE),
				 errmsg("new contract of pipeline \"%s\" breaks its compatibility mode \"%s\"",
						p->name, oldc->compatibility),
				 errdetail("%s.", join_rules(broken)),
				 errhint("Pass force => true to make the change anyway (it is recorded as breaking), or set option compatibility first.")));

	/* the table, then everything that must plan over it */
	table_apply(list_concat(table_ddl(oldc, newc, p->name, relation, qtable, &tc),
							comment_ddl(oldc, newc, qtable)), p->owner);
	dot = strchr(p->source, '.');
	silver_plan_contract(newc, quote_qualified_identifier(pnstrdup(p->source, dot - p->source), dot + 1),
						 qtable, newc->delete_when ? silver_tombstone_table(p->relname) : NULL,
						 p->owner, p->name);
	foreach(lc, medallion_contract_expectations_load(p->name))
		silver_plan_expectation(newc, p->source, p->owner, p->name, lfirst(lc));

	version = medallion_contract_version_add(p->name, newdef, newc->compatibility, broken != NIL,
											 GetUserId());
	/* the graph follows the contract's references */
	medallion_dependencies_set(p->name, "reference", referenced, NIL);
	record_change(p, relation, version, broken != NIL, oldc->compatibility, &last, &tc);
	ereport(NOTICE,
			(errmsg("contract of pipeline \"%s\" is now version %d", p->name, version),
			 errhint("Rows already in %s are not rewritten: a backfill brings them to the new contract.",
					 relation)));
	return version;
}

/* Refuses unless the current user has the privileges of the pipeline's owner. */
static void
check_owner(const Pipeline *p)
{
	if (!OidIsValid(p->owner) || !has_privs_of_role(GetUserId(), p->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of pipeline \"%s\"", p->name)));
}

/*
 * medallion.alter_contract(pipeline, columns, options, force) → the new
 * version.
 */
Datum
medallion_alter_contract(PG_FUNCTION_ARGS)
{
	char	   *name;
	Jsonb	   *columns = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	Jsonb	   *options = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	bool		force = !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);
	Pipeline	p = {0};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (columns && !JB_ROOT_IS_OBJECT(columns))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("columns must be a JSON object"),
				 errdetail("Its keys are column names; each value is the column's new contract, or null to remove it.")));
	if (options && !JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object"),
				 errdetail("Each key is an option; its value replaces the option's, null removes it.")));

	/* who may, before taking the row lock a run would wait behind ... */
	if (!medallion_pipeline_lookup(name, &p, false, false, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", name)));
	if (strcmp(p.layer, "silver") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("pipeline \"%s\" is not a silver pipeline", name),
				 errdetail("Only silver pipelines have a column contract.")));
	check_owner(&p);

	/* ... then the row lock, as a run takes it: a run in progress finishes first */
	if (!medallion_pipeline_lookup(name, &p, true, false, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", name)));
	check_owner(&p);
	PG_RETURN_INT32(medallion_contract_alter(&p, columns, options, force));
}
