/*-------------------------------------------------------------------------
 *
 * wake.c
 *	  The statement trigger of bronze tables that wakes the scheduler.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "medallion.h"

PG_FUNCTION_INFO_V1(medallion_bronze_landed);

/* Triggers (by OID) found to sit on a registered bronze table. */
#define LANDED_CACHE_SIZE 64
static Oid	landed_ok[LANDED_CACHE_SIZE];
static int	landed_nok = 0;

/*
 * Whether a relation is a bronze table medallion registered: in schema
 * bronze, with a bronze pipeline of its name.
 */
static bool
is_registered_bronze(Relation rel)
{
	Oid			bronze = get_namespace_oid("bronze", true);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	MedallionGateway gw;
	uint64		n;

	if (!OidIsValid(bronze) || RelationGetNamespace(rel) != bronze ||
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		return false;
	values[0] = CStringGetTextDatum(RelationGetRelationName(rel));
	medallion_catalog_enter(&gw);
	n = medallion_gateway_exec("SELECT 1 FROM medallion.pipelines "
							   "WHERE layer OPERATOR(pg_catalog.=) 'bronze'::pg_catalog.text "
							   "AND relname OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, 1, SPI_OK_SELECT);
	medallion_gateway_leave(&gw);
	return n == 1;
}

/*
 * Statement trigger on bronze tables: wake the scheduler after commit, so
 * 'on_change' pipelines run once the new rows are visible (bursts of
 * statements coalesce into one wake-up per transaction, and the scheduler
 * makes its passes at a bounded rate).  Only on a registered bronze table:
 * anyone can attach a trigger function to a table of theirs.
 */
Datum
medallion_bronze_landed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			tgoid;
	int			i;
	bool		ok = false;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("medallion.bronze_landed() must be called as a trigger")));
	tgoid = trigdata->tg_trigger->tgoid;
	for (i = 0; i < landed_nok && !ok; i++)
		ok = (landed_ok[i] == tgoid);
	if (!ok)
	{
		if (!is_registered_bronze(trigdata->tg_relation))
			ereport(ERROR,
					(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
					 errmsg("medallion.bronze_landed() fires only on bronze tables"),
					 errdetail("Table \"%s\" is not a bronze table of medallion.",
							   RelationGetRelationName(trigdata->tg_relation))));
		if (landed_nok == LANDED_CACHE_SIZE)
			landed_nok = 0;
		landed_ok[landed_nok++] = tgoid;
	}
	medallion_wake_scheduler_at_commit();
	return PointerGetDatum(NULL);
}
