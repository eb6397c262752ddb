/*-------------------------------------------------------------------------
 *
 * ownership.c
 *	  Who owns a pipeline: alter_pipeline(p, '{"owner": role}'), and the
 *	  role commands that would otherwise leave a pipeline owned by no role.
 *
 * medallion.pipelines.owner is a role's name (a dump restores without the
 * role), so PostgreSQL records no dependency on it.  A pipeline with a table
 * is covered by the table (DROP ROLE refuses while the role owns it); a
 * source or an export has none.  So, from the ProcessUtility hook
 * (src/bgw/hooks.c, with medallion in shared_preload_libraries):
 *
 *	- DROP ROLE of a role that owns pipelines in this database is refused
 *	  with 2BP01, as PostgreSQL refuses it for a role owning objects;
 *	- REASSIGN OWNED BY old TO new gives old's pipelines to new, and their
 *	  pg_cron jobs (PostgreSQL has re-owned their tables: no event trigger
 *	  fires for REASSIGN OWNED);
 *	- DROP OWNED BY r drops r's pipelines (drop_pipeline without drop_table:
 *	  the command drops r's tables itself), refused with 2BP01 while another
 *	  role's pipeline reads one of them, unless CASCADE.
 *
 * Like PostgreSQL's own for objects of other databases, these see only the
 * database they run in: a role owning pipelines in another database is not
 * refused here (its pipelines there refuse to run, halted with a clear
 * error, until alter_pipeline gives them an owner).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "medallion.h"
#include "ops/ops.h"

/*
 * Whether this database's medallion catalog keeps owners by name (0.2.0):
 * the hook acts only then (a 0.1.0 catalog's regrole is an OID).
 */
static bool
catalog_keeps_owner_names(void)
{
	Oid			nsp;
	Oid			relid;

	if (!OidIsValid(get_extension_oid("medallion", true)))
		return false;
	nsp = get_namespace_oid("medallion", true);
	relid = OidIsValid(nsp) ? get_relname_relid("pipelines", nsp) : InvalidOid;
	return OidIsValid(relid) && get_atttype(relid, get_attnum(relid, "owner")) == NAMEOID;
}

/* A text[] of C strings. */
static Datum
text_array(List *names)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(names), 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, names)
		elems[n++] = CStringGetTextDatum(lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Moves the pipelines of roles "from" (names) to role "to", with their
 * pg_cron jobs (by name, in this database) when pg_cron lives here.
 */
static void
catalog_reown(List *from, const char *to)
{
	Oid			types[2] = {TEXTARRAYOID, TEXTOID};
	Datum		values[2];

	values[0] = text_array(from);
	values[1] = CStringGetTextDatum(to);
	if (OidIsValid(get_extension_oid("pg_cron", true)))
		(void) medallion_catalog_exec("WITH p AS (UPDATE medallion.pipelines SET owner = $2 "
									  "  WHERE owner::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1) "
									  "  RETURNING name) "
									  "UPDATE cron.job j SET username = $2 FROM p "
									  "WHERE j.jobname OPERATOR(pg_catalog.=) ('medallion:'::pg_catalog.text OPERATOR(pg_catalog.||) p.name) "
									  "  AND j.database OPERATOR(pg_catalog.=) pg_catalog.current_database()::pg_catalog.text",
									  2, types, values, NULL, 0);
	else
		(void) medallion_catalog_exec("UPDATE medallion.pipelines SET owner = $2 "
									  "WHERE owner::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1)",
									  2, types, values, NULL, SPI_OK_UPDATE);
}

/*
 * ALTER TABLE ... OWNER TO for the pipeline's table, its partitions (which
 * ALTER TABLE does not recurse to) and a silver tombstone table, as the
 * caller: PostgreSQL makes its own checks (ownership, membership in the new
 * role, CREATE on the schema for the new owner).
 */
static void
reown_table(const Pipeline *p, const char *new_owner)
{
	Oid			nsp = get_namespace_oid(p->layer, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(p->relname, nsp) : InvalidOid;
	List	   *rels;
	ListCell   *lc;
	StringInfoData sql;
	MedallionGateway gw;

	if (!OidIsValid(relid))
		return;
	rels = find_all_inheritors(relid, NoLock, NULL);
	if (strcmp(p->layer, "silver") == 0)
	{
		Oid			tomb = get_relname_relid(psprintf("_%s_deleted", p->relname), nsp);

		if (OidIsValid(tomb))
			rels = lappend_oid(rels, tomb);
	}
	initStringInfo(&sql);
	foreach(lc, rels)
		appendStringInfo(&sql, "ALTER TABLE %s OWNER TO %s;",
						 quote_qualified_identifier(get_namespace_name(get_rel_namespace(lfirst_oid(lc))),
													get_rel_name(lfirst_oid(lc))),
						 quote_identifier(new_owner));
	medallion_own_ddl_begin();
	medallion_gateway_enter(GetUserId(), &gw);
	medallion_gateway_exec(sql.data, 0, NULL, NULL, NULL, 0, SPI_OK_UTILITY);
	medallion_gateway_leave(&gw);
	medallion_own_ddl_end();
}

/*
 * Gives a pipeline to another role, as ALTER TABLE ... OWNER TO would: the
 * caller owns it (checked by the caller, which holds the row lock) and is a
 * member of the new role, or is a superuser.  The table follows, and the
 * pg_cron job runs as the new owner.
 */
void
medallion_pipeline_set_owner(const Pipeline *p, const char *new_owner)
{
	Oid			role = get_role_oid(new_owner, true);
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		cron;

	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", new_owner)));
	if (!is_member_of_role(GetUserId(), role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be member of role \"%s\"", new_owner),
				 errdetail("Giving pipeline \"%s\" to a role takes membership in it, as ALTER TABLE ... OWNER TO does.",
						   p->name)));

	values[0] = CStringGetTextDatum(p->name);
	values[1] = CStringGetTextDatum(new_owner);
	cron = medallion_catalog_query("SELECT 1 FROM medallion.pipelines "
								   "WHERE name OPERATOR(pg_catalog.=) $1 "
								   "  AND schedule_kind OPERATOR(pg_catalog.=) 'cron'::pg_catalog.text",
								   1, types, values, NULL) != NIL;
	if (cron && !medallion_role_can_login(role))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("role \"%s\" cannot log in, so pg_cron cannot run the job of pipeline \"%s\"",
						new_owner, p->name),
				 errdetail("A pg_cron job runs as the pipeline's owner, who must have the LOGIN attribute."),
				 errhint("Grant LOGIN to role \"%s\", or use an interval schedule such as '5 minutes'.",
						 new_owner)));

	if (medallion_layer_has_table(p->layer))
		reown_table(p, new_owner);

	/* the one pipeline, by name (its owner's other pipelines stay) */
	(void) medallion_catalog_exec("UPDATE medallion.pipelines SET owner = $2 "
								  "WHERE name OPERATOR(pg_catalog.=) $1",
								  2, types, values, NULL, SPI_OK_UPDATE);
	if (cron && OidIsValid(get_extension_oid("pg_cron", true)))
		(void) medallion_catalog_exec("UPDATE cron.job SET username = $2 "
									  "WHERE jobname OPERATOR(pg_catalog.=) ('medallion:'::pg_catalog.text OPERATOR(pg_catalog.||) $1) "
									  "  AND database OPERATOR(pg_catalog.=) pg_catalog.current_database()::pg_catalog.text",
									  2, types, values, NULL, SPI_OK_UPDATE);
}

/* The names of the roles of a list of RoleSpecs that exist. */
static List *
existing_role_names(List *specs)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, specs)
	{
		RoleSpec   *spec = lfirst(lc);

		if (spec->roletype == ROLESPEC_CSTRING && !OidIsValid(get_role_oid(spec->rolename, true)))
			continue;
		if (spec->roletype == ROLESPEC_PUBLIC)
			continue;
		names = lappend(names, get_rolespec_name(spec));
	}
	return names;
}

/* The pipelines (names, ordered) that a role owns. */
static List *
pipelines_owned_by(const char *role)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(role)};
	MedallionGateway gw;
	MemoryContext cxt = CurrentMemoryContext;
	List	   *names;

	medallion_catalog_enter(&gw);
	medallion_gateway_exec("SELECT name FROM medallion.pipelines "
						   "WHERE owner::pg_catalog.text OPERATOR(pg_catalog.=) $1 ORDER BY name",
						   1, types, values, NULL, 0, SPI_OK_SELECT);
	names = medallion_gateway_text_column(1, cxt);
	medallion_gateway_leave(&gw);
	return names;
}

/*
 * DROP ROLE: refused while a role owns pipelines here, as PostgreSQL
 * refuses it while the role owns objects.
 */
static void
refuse_drop_of_owners(DropRoleStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, existing_role_names(stmt->roles))
	{
		const char *role = lfirst(lc);
		List	   *owned = pipelines_owned_by(role);
		StringInfoData detail;
		ListCell   *p;

		if (owned == NIL)
			continue;
		initStringInfo(&detail);
		foreach(p, owned)
			appendStringInfo(&detail, "%sowner of pipeline %s", detail.len ? "\n" : "",
							 (char *) lfirst(p));
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("role \"%s\" cannot be dropped because some objects depend on it", role),
				 errdetail("%s", detail.data),
				 errhint("Give its pipelines to another role (REASSIGN OWNED, or medallion.alter_pipeline(p, '{\"owner\": \"role\"}')), or drop them (DROP OWNED, or medallion.drop_pipeline(p)).")));
	}
}

/* Whether a list of names has one. */
static bool
has_name(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
}

/*
 * Whether every pipeline that reads "name", directly or not, is one of
 * "owned": dropping it with cascade then drops no other role's pipeline.
 */
static bool
read_only_by(const char *name, List *owned)
{
	List	   *pending = list_make1(pstrdup(name));
	List	   *seen = NIL;

	while (pending != NIL)
	{
		char	   *n = linitial(pending);
		ListCell   *lc;

		pending = list_delete_first(pending);
		if (has_name(seen, n))
			continue;
		seen = lappend(seen, n);
		foreach(lc, medallion_pipeline_downstream(n))
		{
			if (!has_name(owned, lfirst(lc)))
				return false;
			pending = lappend(pending, lfirst(lc));
		}
	}
	return true;
}

/*
 * DROP OWNED BY: the roles' pipelines are dropped, before PostgreSQL drops
 * their tables.  A pipeline read only by pipelines of the same roles takes
 * them along; one another role's pipeline reads needs CASCADE (and the
 * caller must own that one too).  A role the caller may not act for is
 * left to PostgreSQL's own error.
 */
static void
drop_owned_pipelines(DropOwnedStmt *stmt)
{
	List	   *owned = NIL;
	List	   *dropped = NIL;
	ListCell   *lc;

	foreach(lc, stmt->roles)
	{
		Oid			role = get_rolespec_oid(lfirst(lc), true);

		if (!OidIsValid(role) || !has_privs_of_role(GetUserId(), role))
			return;
		owned = list_concat(owned, pipelines_owned_by(GetUserNameFromId(role, false)));
	}
	foreach(lc, owned)
	{
		const char *name = lfirst(lc);

		if (has_name(dropped, name))
			continue;
		medallion_pipeline_drop(name, false,
								stmt->behavior == DROP_CASCADE || read_only_by(name, owned),
								&dropped);
	}
}

/*
 * Before a utility command runs (src/bgw/hooks.c): DROP ROLE and DROP OWNED.
 */
void
medallion_ownership_before_utility(Node *stmt)
{
	if (!IsA(stmt, DropRoleStmt) && !IsA(stmt, DropOwnedStmt))
		return;
	if (!catalog_keeps_owner_names())
		return;
	if (IsA(stmt, DropRoleStmt))
		refuse_drop_of_owners((DropRoleStmt *) stmt);
	else
		drop_owned_pipelines((DropOwnedStmt *) stmt);
}

/*
 * After a utility command succeeded (src/bgw/hooks.c): REASSIGN OWNED,
 * whose checks PostgreSQL made (the caller acts for every role named).
 */
void
medallion_ownership_after_utility(Node *stmt)
{
	ReassignOwnedStmt *r;

	if (!IsA(stmt, ReassignOwnedStmt) || !catalog_keeps_owner_names())
		return;
	r = (ReassignOwnedStmt *) stmt;
	catalog_reown(existing_role_names(r->roles),
				  GetUserNameFromId(get_rolespec_oid(r->newrole, false), false));
}
