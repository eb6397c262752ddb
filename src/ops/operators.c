/*-------------------------------------------------------------------------
 *
 * operators.c
 *	  Operators of a pipeline: roles that may run it, trigger it, pause and
 *	  resume it and replay its dead letters, but not redefine it.
 *
 * Owning a pipeline (or being a member of its owner) allows everything;
 * an on-call role needs less.  grant_operator() records a role in
 * medallion.operators; the run still executes as the pipeline's owner, so
 * an operator needs no privilege on the tables: the grant is the owner's
 * consent to have its pipeline run by that role.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "medallion.h"
#include "ops/ops.h"

PG_FUNCTION_INFO_V1(medallion_grant_operator);
PG_FUNCTION_INFO_V1(medallion_revoke_operator);

/*
 * Whether the current role may operate the pipeline: its owner (or a
 * member), or (a member of) a role granted operator on it.  The catalog is
 * read only when the caller is not the owner.
 */
bool
medallion_may_operate(const Pipeline *p)
{
	MedallionGateway gw;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	List	   *roles;
	ListCell   *lc;
	bool		allowed = false;
	MemoryContext cxt = CurrentMemoryContext;

	if (OidIsValid(p->owner) && has_privs_of_role(GetUserId(), p->owner))
		return true;
	values[0] = CStringGetTextDatum(p->name);
	medallion_catalog_enter(&gw);
	medallion_gateway_exec("SELECT r.oid::pg_catalog.text FROM medallion.operators o "
						   "JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) o.role "
						   "WHERE o.pipeline OPERATOR(pg_catalog.=) $1",
						   1, types, values, NULL, 0, SPI_OK_SELECT);
	roles = medallion_gateway_text_column(1, cxt);
	medallion_gateway_leave(&gw);
	foreach(lc, roles)
		allowed |= has_privs_of_role(GetUserId(), (Oid) strtoul(lfirst(lc), NULL, 10));
	return allowed;
}

/*
 * Fails unless the current role may operate the pipeline.
 */
void
medallion_require_operator(const Pipeline *p, const char *action)
{
	if (!medallion_may_operate(p))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s pipeline \"%s\"", action, p->name),
				 errdetail("Only the pipeline's owner (or a member of that role) and its operators may %s it.",
						   action),
				 errhint("The owner can grant it with medallion.grant_operator().")));
}

static void
change_operator(FunctionCallInfo fcinfo, bool grant)
{
	Pipeline	p = {0};
	char	   *name;
	Oid			role;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline and role must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	role = PG_GETARG_OID(1);
	medallion_require_owned(name, &p, false);

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(GetUserNameFromId(role, false));
	values[2] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	if (grant)
		medallion_catalog_exec("INSERT INTO medallion.operators (pipeline, role, granted_by) "
							   "VALUES ($1, $2, $3) ON CONFLICT (pipeline, role) DO NOTHING",
							   3, types, values, NULL, SPI_OK_INSERT);
	else
		medallion_catalog_exec("DELETE FROM medallion.operators "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1 AND role OPERATOR(pg_catalog.=) $2",
							   2, types, values, NULL, SPI_OK_DELETE);
}

/*
 * medallion.grant_operator(pipeline, role)
 */
Datum
medallion_grant_operator(PG_FUNCTION_ARGS)
{
	change_operator(fcinfo, true);
	PG_RETURN_VOID();
}

/*
 * medallion.revoke_operator(pipeline, role)
 */
Datum
medallion_revoke_operator(PG_FUNCTION_ARGS)
{
	change_operator(fcinfo, false);
	PG_RETURN_VOID();
}
