/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Reads and writes of the medallion.* catalog tables, and the switch to
 *	  the role that owns them.
 *
 * Catalog writes run as the extension's owner: a role allowed to ingest into
 * a bronze table must be able to record its batch and its dead letters
 * without being able to read or change other pipelines' rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "access/genam.h"
#include "access/table.h"

#include "medallion.h"

/*
 * The role that owns the extension, and so its catalog tables.
 */
Oid
medallion_catalog_owner(void)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("medallion"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"medallion\" is not installed in this database")));
	return owner;
}

/*
 * Switches the current user to "role" for the SQL that follows, in a
 * security-restricted context (as REFRESH MATERIALIZED VIEW does), so that
 * code run on another role's behalf cannot change session state.  An error
 * anywhere restores the previous user at (sub)transaction abort.
 */
void
medallion_become_user(Oid role, MedallionUserContext *save)
{
	GetUserIdAndSecContext(&save->saved_userid, &save->saved_sec_context);
	SetUserIdAndSecContext(role,
						   save->saved_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/*
 * Undoes medallion_become_user.
 */
void
medallion_restore_user(MedallionUserContext *save)
{
	SetUserIdAndSecContext(save->saved_userid, save->saved_sec_context);
}

/*
 * The gateway: every statement medallion sends through SPI as a role other
 * than the caller's goes between medallion_gateway_enter and _leave.  Inside,
 * the current user is "role" (security-restricted), search_path is pinned to
 * "pg_catalog, pg_temp" in a GUC nest level of its own (pg_temp last, or the
 * caller's temporary schema would be searched first), and SPI is connected.
 * The SQL itself must still qualify every type, operator and function.
 *
 * An error inside is recovered only by the (sub)transaction abort, which pops
 * the nest level and restores the user: never catch one and carry on.
 */
void
medallion_gateway_enter(Oid role, MedallionGateway *gw)
{
	medallion_become_user(role, &gw->user);
	gw->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * Leaves the gateway: SPI's memory is freed, so copy results out first.
 */
void
medallion_gateway_leave(MedallionGateway *gw)
{
	SPI_finish();
	AtEOXact_GUC(true, gw->nestlevel);
	medallion_restore_user(&gw->user);
}

/*
 * Enters the gateway as the catalog owner.
 */
void
medallion_catalog_enter(MedallionGateway *gw)
{
	medallion_gateway_enter(medallion_catalog_owner(), gw);
}

/*
 * Runs one statement inside the gateway; fails unless SPI returns "expect"
 * (any success when expect is 0).  Returns SPI_processed; the rows are in
 * SPI_tuptable until medallion_gateway_leave.
 */
uint64
medallion_gateway_exec(const char *sql, int nargs, Oid *types, Datum *values,
					   const char *nulls, long count, int expect)
{
	int			ret;

	ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, count);
	if (ret < 0 || (expect != 0 && ret != expect))
		elog(ERROR, "catalog statement failed: SPI error %d", ret);
	return SPI_processed;
}

/*
 * One statement as the catalog owner, through the gateway, with no rows
 * returned to the caller.  Returns the number of rows processed.
 */
uint64
medallion_catalog_exec(const char *sql, int nargs, Oid *types, Datum *values,
					   const char *nulls, int expect)
{
	MedallionGateway gw;
	uint64		n;

	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec(sql, nargs, types, values, nulls, 0, expect);
	medallion_gateway_leave(&gw);
	return n;
}

/*
 * The pipeline name of a layer table: 'layer.relname', exactly as given.
 */
char *
medallion_pipeline_name(const char *layer, const char *relname)
{
	return psprintf("%s.%s", layer, relname);
}

/*
 * Whether medallion.pipelines.owner is still 0.1.0's regrole.
 */
static bool
owner_is_regrole(void)
{
	Oid			nsp = get_namespace_oid("medallion", false);
	Oid			relid = get_relname_relid("pipelines", nsp);

	return OidIsValid(relid) && get_atttype(relid, get_attnum(relid, "owner")) == REGROLEOID;
}

/*
 * Records a new pipeline.  A name already taken is a duplicate_object error.
 */
void
medallion_catalog_add_pipeline(const char *name, const char *layer,
							   const char *relname, Oid owner,
							   const char *source_system,
							   Datum retention, bool retention_null,
							   Jsonb *options, const char *description)
{
	Oid			argtypes[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	INTERVALOID, JSONBOID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = "        ";

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(layer);
	values[2] = CStringGetTextDatum(relname);
	/* by name: a dump restores into a cluster whatever roles it has */
	values[3] = CStringGetTextDatum(GetUserNameFromId(owner, false));
	if (source_system)
		values[4] = CStringGetTextDatum(source_system);
	else
		nulls[4] = 'n';
	values[5] = retention;
	if (retention_null)
		nulls[5] = 'n';
	values[6] = JsonbPGetDatum(options);
	if (description)
		values[7] = CStringGetTextDatum(description);
	else
		nulls[7] = 'n';

	/* a 0.1.0 catalog (not updated yet) keeps the owner as regrole */
	if (medallion_catalog_exec(
		owner_is_regrole() ?
		"INSERT INTO medallion.pipelines "
		"(name, layer, relname, owner, source_system, retention, options, description) "
		"VALUES ($1, $2, $3, pg_catalog.quote_ident($4)::pg_catalog.regrole, $5, $6, $7, $8) "
		"ON CONFLICT DO NOTHING" :
		"INSERT INTO medallion.pipelines "
		"(name, layer, relname, owner, source_system, retention, options, description) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
		"ON CONFLICT DO NOTHING",
		8, argtypes, values, nulls, SPI_OK_INSERT) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("pipeline \"%s\" already exists", name)));
}

/*
 * Claims a batch id for a bronze pipeline.  Returns false when the batch has
 * already landed.  A concurrent claim of the same id waits for the first
 * claimer's transaction: if it commits, this one finds the batch landed; if
 * it aborts, this one lands it.  Exactly one lands.
 */
bool
medallion_catalog_claim_batch(const char *pipeline, const char *batch_id,
							  const char *file_name)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(batch_id);
	if (file_name)
		values[2] = CStringGetTextDatum(file_name);
	else
		nulls[2] = 'n';

	return medallion_catalog_exec(
		"INSERT INTO medallion.batches (pipeline, batch_id, file_name) "
		"VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
		3, argtypes, values, nulls, SPI_OK_INSERT) == 1;
}

/*
 * Stores the counts of a batch claimed by medallion_catalog_claim_batch.
 */
void
medallion_catalog_finish_batch(const char *pipeline, const char *batch_id,
							   int64 rows_landed, int64 rows_dlq)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT8OID, INT8OID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(batch_id);
	values[2] = Int64GetDatum(rows_landed);
	values[3] = Int64GetDatum(rows_dlq);

	(void) medallion_catalog_exec(
		"UPDATE medallion.batches SET rows_landed = $3, rows_dlq = $4 "
		"WHERE pipeline OPERATOR(pg_catalog.=) $1 "
		"AND batch_id OPERATOR(pg_catalog.=) $2",
		4, argtypes, values, NULL, SPI_OK_UPDATE);
}

/*
 * Stores a silver pipeline's source and definition.
 */
void
medallion_catalog_set_definition(const char *pipeline, const char *source, Jsonb *definition)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, JSONBOID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(source);
	values[2] = JsonbPGetDatum(definition);
	(void) medallion_catalog_exec("UPDATE medallion.pipelines SET source = $2, definition = $3 "
								  "WHERE name OPERATOR(pg_catalog.=) $1",
								  3, argtypes, values, NULL, SPI_OK_UPDATE);
}
