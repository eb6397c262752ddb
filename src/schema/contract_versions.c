/*-------------------------------------------------------------------------
 *
 * contract_versions.c
 *	  Every version of each silver contract (medallion.contract_versions),
 *	  and the schema_changes rows a contract change leaves.
 *
 * Version 1 is create_silver's contract; each alter_contract adds the next
 * one and makes it medallion.pipelines.definition, with its number in
 * definition_version (the key of the parsed-contract cache).  Callers hold
 * the pipeline's row lock, so "the highest version plus one" cannot be taken
 * twice.  Everything here is catalog SQL through the gateway, as the catalog
 * owner: this file calls nothing above the catalog room, so the silver room
 * may use it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "medallion.h"
#include "schema/contract_versions.h"

/*
 * Whether the catalog keeps contract versions (0.2.0 and later): a 0.1.0
 * catalog in use with this library, before ALTER EXTENSION UPDATE, does not.
 */
static bool
catalog_has_versions(void)
{
	Oid			nsp = get_namespace_oid("medallion", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("contract_versions", nsp));
}

/*
 * Stores definition as the next version of pipeline's contract and makes it
 * the pipeline's definition.  Returns the new version, or 0 on a catalog
 * without versions (its update makes the stored definition version 1).
 */
int32
medallion_contract_version_add(const char *pipeline, Jsonb *definition,
							   const char *compatibility, bool forced, Oid created_by)
{
	MedallionGateway gw;
	Oid			types[5] = {TEXTOID, JSONBOID, TEXTOID, BOOLOID, TEXTOID};
	Datum		values[5];
	bool		isnull;
	int32		version;

	if (!catalog_has_versions())
		return 0;
	values[0] = CStringGetTextDatum(pipeline);
	values[1] = JsonbPGetDatum(definition);
	values[2] = CStringGetTextDatum(compatibility);
	values[3] = BoolGetDatum(forced);
	/* who asked, not the catalog owner the statement runs as */
	values[4] = CStringGetTextDatum(GetUserNameFromId(created_by, false));

	medallion_catalog_enter(&gw);
	if (medallion_gateway_exec(
		"WITH v AS ("
		"  INSERT INTO medallion.contract_versions "
		"    (pipeline, version, definition, compatibility, forced, created_by) "
		"  SELECT $1, COALESCE(pg_catalog.max(cv.version), 0) OPERATOR(pg_catalog.+) 1, "
		"         $2, $3, $4, $5 "
		"  FROM medallion.contract_versions cv "
		"  WHERE cv.pipeline OPERATOR(pg_catalog.=) $1 "
		"  RETURNING version) "
		"UPDATE medallion.pipelines p SET definition = $2, definition_version = v.version "
		"FROM v WHERE p.name OPERATOR(pg_catalog.=) $1 RETURNING v.version",
		5, types, values, NULL, 0, SPI_OK_UPDATE_RETURNING) != 1)
		elog(ERROR, "could not record a version of the contract of pipeline \"%s\"", pipeline);
	version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	medallion_gateway_leave(&gw);
	return version;
}

/*
 * The stored versions of pipeline's contract, oldest first: a List of
 * ContractVersion, in the caller's memory context.
 */
List *
medallion_contract_versions_load(const char *pipeline)
{
	MedallionGateway gw;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	MemoryContext callercxt = CurrentMemoryContext;
	List	   *out = NIL;
	uint64		n;
	uint64		i;

	values[0] = CStringGetTextDatum(pipeline);
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec("SELECT version, definition FROM medallion.contract_versions "
							   "WHERE pipeline OPERATOR(pg_catalog.=) $1 ORDER BY version",
							   1, types, values, NULL, 0, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(callercxt);
		ContractVersion *v = palloc0(sizeof(ContractVersion));

		v->version = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		v->definition = DatumGetJsonbPCopy(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		out = lappend(out, v);
		MemoryContextSwitchTo(old);
	}
	medallion_gateway_leave(&gw);
	return out;
}

/*
 * Records a contract change of pipeline (its table relation) in
 * medallion.schema_changes: classification safe, warning or breaking, with
 * what changed in detail.
 */
void
medallion_contract_change_record(const char *pipeline, const char *relation,
								 const char *classification, Jsonb *detail)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(relation);
	values[2] = CStringGetTextDatum(classification);
	values[3] = JsonbPGetDatum(detail);
	(void) medallion_catalog_exec("INSERT INTO medallion.schema_changes "
								  "(pipeline, relation, change, classification, detail) "
								  "VALUES ($1, $2, 'contract_changed', $3, $4)",
								  4, types, values, NULL, SPI_OK_INSERT);
}

/*
 * The SQL of every expectation of pipeline, in the caller's memory context.
 */
List *
medallion_contract_expectations_load(const char *pipeline)
{
	MedallionGateway gw;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	MemoryContext callercxt = CurrentMemoryContext;
	List	   *out;

	values[0] = CStringGetTextDatum(pipeline);
	medallion_catalog_enter(&gw);
	(void) medallion_gateway_exec("SELECT check_sql FROM medallion.expectations "
								  "WHERE pipeline OPERATOR(pg_catalog.=) $1 ORDER BY name",
								  1, types, values, NULL, 0, SPI_OK_SELECT);
	out = medallion_gateway_text_column(1, callercxt);
	medallion_gateway_leave(&gw);
	return out;
}

/*
 * A silver pipeline other than pipeline whose contract references
 * 'layer.table.column' target, or NULL: dropping that column would break
 * its runs.
 */
char *
medallion_contract_referencing_pipeline(const char *pipeline, const char *target)
{
	MedallionGateway gw;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	MemoryContext callercxt = CurrentMemoryContext;
	List	   *names;

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(target);
	medallion_catalog_enter(&gw);
	(void) medallion_gateway_exec(
		"SELECT p.name FROM medallion.pipelines p "
		"CROSS JOIN LATERAL ("
		"  SELECT o.value FROM pg_catalog.jsonb_each(CASE WHEN pg_catalog.jsonb_typeof("
		"    p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text) "
		"    OPERATOR(pg_catalog.=) 'object'::pg_catalog.text "
		"    THEN p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text END) o "
		"  UNION ALL "
		"  SELECT a.value FROM pg_catalog.jsonb_array_elements(CASE WHEN pg_catalog.jsonb_typeof("
		"    p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text) "
		"    OPERATOR(pg_catalog.=) 'array'::pg_catalog.text "
		"    THEN p.definition OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text END) a) c "
		"WHERE p.layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text "
		"  AND p.name OPERATOR(pg_catalog.<>) $1 "
		"  AND pg_catalog.jsonb_typeof(c.value) OPERATOR(pg_catalog.=) 'object'::pg_catalog.text "
		"  AND c.value OPERATOR(pg_catalog.->>) 'references'::pg_catalog.text OPERATOR(pg_catalog.=) $2 "
		"ORDER BY p.name LIMIT 1",
		2, types, values, NULL, 0, SPI_OK_SELECT);
	names = medallion_gateway_text_column(1, callercxt);
	medallion_gateway_leave(&gw);
	return names ? linitial(names) : NULL;
}
