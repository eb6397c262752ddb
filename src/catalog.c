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
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
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
 * The pipeline name of a layer table: 'layer.relname', exactly as given.
 */
char *
medallion_pipeline_name(const char *layer, const char *relname)
{
	return psprintf("%s.%s", layer, relname);
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
	MedallionUserContext save;
	Oid			argtypes[8] = {TEXTOID, TEXTOID, TEXTOID, OIDOID, TEXTOID,
	INTERVALOID, JSONBOID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = "        ";
	int			ret;

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(layer);
	values[2] = CStringGetTextDatum(relname);
	values[3] = ObjectIdGetDatum(owner);
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

	medallion_become_user(medallion_catalog_owner(), &save);
	SPI_connect();
	ret = SPI_execute_with_args(
		"INSERT INTO medallion.pipelines "
		"(name, layer, relname, owner, source_system, retention, options, description) "
		"VALUES ($1, $2, $3, $4::pg_catalog.regrole, $5, $6, $7, $8) "
		"ON CONFLICT DO NOTHING",
		8, argtypes, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not record pipeline \"%s\": SPI error %d", name, ret);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("pipeline \"%s\" already exists", name)));
	SPI_finish();
	medallion_restore_user(&save);
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
	MedallionUserContext save;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";
	int			ret;
	bool		claimed;

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(batch_id);
	if (file_name)
		values[2] = CStringGetTextDatum(file_name);
	else
		nulls[2] = 'n';

	medallion_become_user(medallion_catalog_owner(), &save);
	SPI_connect();
	ret = SPI_execute_with_args(
		"INSERT INTO medallion.batches (pipeline, batch_id, file_name) "
		"VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
		3, argtypes, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not claim batch \"%s\": SPI error %d", batch_id, ret);
	claimed = (SPI_processed == 1);
	SPI_finish();
	medallion_restore_user(&save);
	return claimed;
}

/*
 * Stores the counts of a batch claimed by medallion_catalog_claim_batch.
 */
void
medallion_catalog_finish_batch(const char *pipeline, const char *batch_id,
							   int64 rows_landed, int64 rows_dlq)
{
	MedallionUserContext save;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT8OID, INT8OID};
	Datum		values[4];
	int			ret;

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(batch_id);
	values[2] = Int64GetDatum(rows_landed);
	values[3] = Int64GetDatum(rows_dlq);

	medallion_become_user(medallion_catalog_owner(), &save);
	SPI_connect();
	ret = SPI_execute_with_args(
		"UPDATE medallion.batches SET rows_landed = $3, rows_dlq = $4 "
		"WHERE pipeline OPERATOR(pg_catalog.=) $1 "
		"AND batch_id OPERATOR(pg_catalog.=) $2",
		4, argtypes, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not record batch \"%s\": SPI error %d", batch_id, ret);
	SPI_finish();
	medallion_restore_user(&save);
}

/*
 * Stores a silver pipeline's source and definition.
 */
void
medallion_catalog_set_definition(const char *pipeline, const char *source, Jsonb *definition)
{
	MedallionUserContext save;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, JSONBOID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(source);
	values[2] = JsonbPGetDatum(definition);
	medallion_become_user(medallion_catalog_owner(), &save);
	SPI_connect();
	if (SPI_execute_with_args("UPDATE medallion.pipelines SET source = $2, definition = $3 "
							  "WHERE name OPERATOR(pg_catalog.=) $1",
							  3, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the definition of pipeline \"%s\"", pipeline);
	SPI_finish();
	medallion_restore_user(&save);
}
