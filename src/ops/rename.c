/*-------------------------------------------------------------------------
 *
 * rename.c
 *	  medallion.rename_pipeline(pipeline, new_name).
 *
 * A pipeline's name is "<layer>.<relname>", and for bronze, silver and gold
 * relname is its table's name: the name follows the table, so renaming the
 * pipeline renames the table (and its day partitions "<relname>_pYYYYMMDD",
 * and a silver pipeline's tombstone table "_<relname>_deleted").  A source's
 * or an export's relname is just its name.  The layer stays.
 *
 * Everything that names the pipeline follows, in one transaction under the
 * pipeline's row lock (the run lock: a running run finishes first): the
 * catalog tables that store the name (those with a foreign key to
 * medallion.pipelines by cascade, the others here), the pipelines that read
 * it (a silver pipeline's source, a contract's "references", an export's
 * source, an HTTP source's target, a gold model's query) and the pg_cron
 * job (its name and command).  Run history and alerts follow too: they are
 * the pipeline's, under its new name.
 *
 * A gold model's query names its upstream tables in SQL text: it is
 * analysed before the rename (so its relations are bound by OID, as a
 * view's are) and deparsed after it, which gives the new names.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "parser/analyze.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"

#include "medallion.h"
#include "ops/ops.h"

PG_FUNCTION_INFO_V1(medallion_rename_pipeline);

/* "_pYYYYMMDD", the suffix of a bronze or gold day partition */
#define PARTITION_SUFFIX_LEN 10
/* "_" and "_deleted", around a silver tombstone table's name */
#define TOMBSTONE_EXTRA_LEN 9

/* A gold model that reads the pipeline, its query bound to OIDs. */
typedef struct ReadingModel
{
	Pipeline	p;
	Query	   *query;
} ReadingModel;

/*
 * The relname part of a new name: lower-case letters, digits and
 * underscores, not starting with a digit, short enough for the names
 * derived from it.
 */
static void
check_new_relname(const char *layer, const char *relname)
{
	int			max = NAMEDATALEN - 1;
	const char *c;
	bool		ok = relname[0] != '\0' && !(relname[0] >= '0' && relname[0] <= '9');

	if (strcmp(layer, "bronze") == 0 || strcmp(layer, "gold") == 0)
		max -= PARTITION_SUFFIX_LEN;
	else if (strcmp(layer, "silver") == 0)
		max -= TOMBSTONE_EXTRA_LEN;
	for (c = relname; *c; c++)
		ok &= (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_';
	if (!ok || (int) strlen(relname) > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid pipeline name \"%s.%s\"", layer, relname),
				 errdetail("After \"%s.\" comes 1 to %d lower-case letters, digits and underscores, not starting with a digit.",
						   layer, max)));
}

/* The OID of layer.relname, or InvalidOid. */
static Oid
layer_relid(const char *layer, const char *relname)
{
	Oid			nsp = get_namespace_oid(layer, true);

	return OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
}

/*
 * The gold models whose query reads the pipeline, locked (a run of one
 * finishes first) and analysed as their owner with a run's settings, so
 * that the query's relations are bound by OID before the rename.
 */
static List *
reading_models(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	MedallionGateway gw;
	MemoryContext cxt = CurrentMemoryContext;
	List	   *names;
	List	   *models = NIL;
	ListCell   *lc;

	medallion_catalog_enter(&gw);
	medallion_gateway_exec("SELECT d.pipeline FROM medallion.dependencies d "
						   "WHERE d.upstream OPERATOR(pg_catalog.=) $1 "
						   "  AND d.kind OPERATOR(pg_catalog.=) 'query'::pg_catalog.text "
						   "  AND d.pipeline OPERATOR(pg_catalog.<>) $1 ORDER BY 1",
						   1, types, values, NULL, 0, SPI_OK_SELECT);
	names = medallion_gateway_text_column(1, cxt);
	medallion_gateway_leave(&gw);

	foreach(lc, names)
	{
		ReadingModel *m = palloc0(sizeof(ReadingModel));
		JsonbValue *q;
		MedallionUserContext user;
		int			nestlevel;
		List	   *raw;

		if (!medallion_pipeline_lookup(lfirst(lc), &m->p, true, false, NULL) || m->p.definition == NULL)
			continue;
		q = getKeyJsonValueFromContainer(&m->p.definition->root, "query", strlen("query"), NULL);
		if (q == NULL || q->type != jbvString)
			continue;
		medallion_become_user(OidIsValid(m->p.owner) ? m->p.owner : GetUserId(), &user);
		medallion_run_settings_push(NULL, &nestlevel);
		raw = pg_parse_query(pnstrdup(q->val.string.val, q->val.string.len));
		m->query = parse_analyze_fixedparams(linitial_node(RawStmt, raw),
											 pnstrdup(q->val.string.val, q->val.string.len),
											 NULL, 0, NULL);
		AtEOXact_GUC(true, nestlevel);
		medallion_restore_user(&user);
		models = lappend(models, m);
	}
	return models;
}

/*
 * The queries of the models, deparsed now that their upstream has its new
 * name, become their definitions.
 */
static void
rewrite_model_queries(List *models)
{
	ListCell   *lc;

	foreach(lc, models)
	{
		ReadingModel *m = lfirst(lc);
		Oid			types[2] = {TEXTOID, TEXTOID};
		Datum		values[2];
		MedallionUserContext user;
		int			nestlevel;
		char	   *sql;

		medallion_become_user(OidIsValid(m->p.owner) ? m->p.owner : GetUserId(), &user);
		medallion_run_settings_push(NULL, &nestlevel);
		sql = pg_get_querydef(m->query, false);
		AtEOXact_GUC(true, nestlevel);
		medallion_restore_user(&user);

		values[0] = CStringGetTextDatum(m->p.name);
		values[1] = CStringGetTextDatum(sql);
		(void) medallion_catalog_exec("UPDATE medallion.pipelines SET definition = "
									  "pg_catalog.jsonb_set(definition, '{query}', pg_catalog.to_jsonb($2)) "
									  "WHERE name OPERATOR(pg_catalog.=) $1",
									  2, types, values, NULL, SPI_OK_UPDATE);
	}
}

/*
 * ALTER TABLE ... RENAME of the table, its day partitions and its
 * tombstone table, as the caller (who has the privileges of the owner).
 */
static void
rename_tables(const Pipeline *p, const char *new_relname)
{
	Oid			relid = layer_relid(p->layer, p->relname);
	StringInfoData sql;
	ListCell   *lc;
	char	   *prefix = psprintf("%s_p", p->relname);
	MedallionGateway gw;

	if (!OidIsValid(relid))
		return;
	initStringInfo(&sql);
	foreach(lc, find_inheritance_children(relid, NoLock))
	{
		char	   *child = get_rel_name(lfirst_oid(lc));

		if (child && strncmp(child, prefix, strlen(prefix)) == 0 &&
			strlen(child) == strlen(prefix) - 2 + PARTITION_SUFFIX_LEN)
			appendStringInfo(&sql, "ALTER TABLE %s RENAME TO %s;",
							 quote_qualified_identifier(p->layer, child),
							 quote_identifier(psprintf("%s%s", new_relname, child + strlen(p->relname))));
	}
	if (strcmp(p->layer, "silver") == 0 &&
		OidIsValid(layer_relid("silver", psprintf("_%s_deleted", p->relname))))
		appendStringInfo(&sql, "ALTER TABLE %s RENAME TO %s;",
						 quote_qualified_identifier("silver", psprintf("_%s_deleted", p->relname)),
						 quote_identifier(psprintf("_%s_deleted", new_relname)));
	appendStringInfo(&sql, "ALTER TABLE %s RENAME TO %s",
					 quote_qualified_identifier(p->layer, p->relname), quote_identifier(new_relname));

	medallion_own_ddl_begin();
	medallion_gateway_enter(GetUserId(), &gw);
	medallion_gateway_exec(sql.data, 0, NULL, NULL, NULL, 0, SPI_OK_UTILITY);
	medallion_gateway_leave(&gw);
	medallion_own_ddl_end();
	CommandCounterIncrement();
}

/*
 * The catalog rows that name the pipeline ($1 → $2; $3, $4: its old and new
 * relname), in the tables without a foreign key to medallion.pipelines, and
 * in the definitions of the pipelines that read it.
 */
static void
rename_catalog_rows(const Pipeline *p, const char *new_name, const char *new_relname)
{
	static const char *const by_name[] = {
		"runs", "batches", "dlq", "quarantine", "watermarks", "expectations", "alerts",
		"alert_deliveries", "pause_requests", "schema_changes", NULL
	};
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	const char *const *t;

	values[0] = CStringGetTextDatum(p->name);
	values[1] = CStringGetTextDatum(new_name);
	values[2] = CStringGetTextDatum(p->relname);
	values[3] = CStringGetTextDatum(new_relname);

	/* the row itself: the tables with a foreign key follow by cascade */
	(void) medallion_catalog_exec("UPDATE medallion.pipelines SET name = $2, relname = $4 "
								  "WHERE name OPERATOR(pg_catalog.=) $1",
								  4, types, values, NULL, SPI_OK_UPDATE);
	for (t = by_name; *t; t++)
		(void) medallion_catalog_exec(psprintf("UPDATE medallion.%s SET pipeline = $2 "
											   "WHERE pipeline OPERATOR(pg_catalog.=) $1", *t),
									  2, types, values, NULL, SPI_OK_UPDATE);
	/* dead letters and quarantined rows name the table they came from */
	(void) medallion_catalog_exec("UPDATE medallion.dlq SET source_table = $2 "
								  "WHERE source_table OPERATOR(pg_catalog.=) $1",
								  2, types, values, NULL, SPI_OK_UPDATE);
	(void) medallion_catalog_exec("UPDATE medallion.quarantine SET source_table = $2 "
								  "WHERE source_table OPERATOR(pg_catalog.=) $1",
								  2, types, values, NULL, SPI_OK_UPDATE);
	(void) medallion_catalog_exec("UPDATE medallion.webhooks "
								  "SET pipelines = pg_catalog.array_replace(pipelines, $1, $2) "
								  "WHERE $1 OPERATOR(pg_catalog.=) ANY (pipelines)",
								  2, types, values, NULL, SPI_OK_UPDATE);

	/* the pipelines that read it */
	(void) medallion_catalog_exec("UPDATE medallion.pipelines SET source = $2 "
								  "WHERE source OPERATOR(pg_catalog.=) $1",
								  2, types, values, NULL, SPI_OK_UPDATE);
	(void) medallion_catalog_exec("UPDATE medallion.pipelines "
								  "SET definition = pg_catalog.jsonb_set(definition, '{source}', pg_catalog.to_jsonb($2)) "
								  "WHERE layer OPERATOR(pg_catalog.=) 'export'::pg_catalog.text "
								  "  AND definition OPERATOR(pg_catalog.->>) 'source'::pg_catalog.text OPERATOR(pg_catalog.=) $1",
								  2, types, values, NULL, SPI_OK_UPDATE);
	if (strcmp(p->layer, "bronze") == 0)
		(void) medallion_catalog_exec("UPDATE medallion.pipelines "
									  "SET definition = pg_catalog.jsonb_set(definition, '{target}', pg_catalog.to_jsonb($4)) "
									  "WHERE layer OPERATOR(pg_catalog.=) 'source'::pg_catalog.text "
									  "  AND definition OPERATOR(pg_catalog.->>) 'target'::pg_catalog.text OPERATOR(pg_catalog.=) $3",
									  4, types, values, NULL, SPI_OK_UPDATE);
	/* contracts' "references": the current one and every version (a rollback's) */
	(void) medallion_catalog_exec("UPDATE medallion.pipelines "
								  "SET definition = medallion.rename_references(definition, $1, $2) "
								  "WHERE layer OPERATOR(pg_catalog.=) 'silver'::pg_catalog.text "
								  "  AND definition OPERATOR(pg_catalog.<>) medallion.rename_references(definition, $1, $2)",
								  2, types, values, NULL, SPI_OK_UPDATE);
	(void) medallion_catalog_exec("UPDATE medallion.contract_versions "
								  "SET definition = medallion.rename_references(definition, $1, $2) "
								  "WHERE definition OPERATOR(pg_catalog.<>) medallion.rename_references(definition, $1, $2)",
								  2, types, values, NULL, SPI_OK_UPDATE);
}

/*
 * The pg_cron job: its name and command name the pipeline.  Where pg_cron
 * lives in another database, medallion.schedule_job_state() reports it
 * missing with the call that re-creates it.
 */
static void
rename_cron_job(const char *name, const char *new_name)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	if (!OidIsValid(get_extension_oid("pg_cron", true)))
		return;
	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(new_name);
	(void) medallion_catalog_exec("UPDATE cron.job "
								  "SET jobname = 'medallion:'::pg_catalog.text OPERATOR(pg_catalog.||) $2, "
								  "    command = pg_catalog.format('SELECT medallion.trigger(%L)', $2) "
								  "WHERE jobname OPERATOR(pg_catalog.=) ('medallion:'::pg_catalog.text OPERATOR(pg_catalog.||) $1) "
								  "  AND database OPERATOR(pg_catalog.=) pg_catalog.current_database()::pg_catalog.text",
								  2, types, values, NULL, SPI_OK_UPDATE);
}

/*
 * medallion.rename_pipeline(pipeline, new_name)
 */
Datum
medallion_rename_pipeline(PG_FUNCTION_ARGS)
{
	Pipeline	p = {0};
	char	   *name;
	char	   *new_name;
	const char *dot;
	const char *new_relname;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	List	   *models;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the arguments of medallion.rename_pipeline() must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	new_name = text_to_cstring(PG_GETARG_TEXT_PP(1));

	/* the row lock is the run lock: a running run finishes first */
	medallion_require_owned(name, &p, true);

	dot = strchr(new_name, '.');
	if (dot == NULL || (size_t) (dot - new_name) != strlen(p.layer) ||
		strncmp(new_name, p.layer, dot - new_name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a pipeline keeps its layer: the new name of \"%s\" must start with \"%s.\"",
						name, p.layer),
				 errdetail("A pipeline's name is its layer, a dot and its own name.")));
	new_relname = dot + 1;
	check_new_relname(p.layer, new_relname);

	values[0] = CStringGetTextDatum(new_name);
	if (medallion_catalog_exec("SELECT 1 FROM medallion.pipelines WHERE name OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, SPI_OK_SELECT) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("pipeline \"%s\" already exists", new_name)));
	if (medallion_layer_has_table(p.layer) &&
		(OidIsValid(layer_relid(p.layer, new_relname)) ||
		 (strcmp(p.layer, "silver") == 0 &&
		  OidIsValid(layer_relid("silver", psprintf("_%s_deleted", new_relname))))))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"%s\" already exists", new_name),
				 errdetail("The table of pipeline \"%s\" would take that name.", new_name)));

	models = reading_models(name);
	if (medallion_layer_has_table(p.layer))
		rename_tables(&p, new_relname);
	rename_catalog_rows(&p, new_name, new_relname);
	rewrite_model_queries(models);
	rename_cron_job(name, new_name);
	medallion_wake_scheduler_at_commit();
	PG_RETURN_VOID();
}
