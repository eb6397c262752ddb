/*-------------------------------------------------------------------------
 *
 * graph.c
 *	  medallion.run_all(): every runnable pipeline once, upstream first.
 *
 * The order comes from medallion.dependencies, whatever the layers: a
 * silver table that references another runs after it (by name it could run
 * first and send good rows to the DLQ), a gold model after the tables its
 * query reads.  Edges through pipelines that do not run in the round (the
 * caller's or not, paused, bronze) still order the ones that do.  A failed
 * upstream blocks its downstream for the round: the downstream is recorded
 * 'skipped', its error_message naming the upstream, and so is everything
 * downstream of it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "medallion.h"
#include "ops/ops.h"

PG_FUNCTION_INFO_V1(medallion_run_all);

/* What became of a pipeline in a round. */
typedef enum RoundOutcome
{
	ROUND_NOT_RUN,				/* not the caller's, not active, not runnable */
	ROUND_SUCCEEDED,			/* or skipped: a run of it in progress
								 * elsewhere commits on its own */
	ROUND_FAILED,
	ROUND_BLOCKED				/* recorded 'skipped': an upstream failed */
} RoundOutcome;

/* One pipeline of the graph. */
typedef struct GraphNode
{
	char	   *name;
	bool		runs;			/* the caller's, active, of a layer run() runs */
	int			nupstreams;
	int		   *upstreams;		/* indexes into the node array */
	int			waiting;		/* upstreams not ordered yet */
	bool		ordered;
	RoundOutcome outcome;
	int			failed;			/* blocked: the failed pipeline behind it */
	int64		run_id;
} GraphNode;

/*
 * Reads every pipeline, whether it runs in this round, and its direct
 * upstreams, as the caller (the catalog is readable by all; the path is
 * pinned all the same).  Nodes come in name order, which breaks ties.
 */
static GraphNode *
read_graph(int *count)
{
	MedallionGateway gw;
	GraphNode  *nodes;
	uint64		n;
	MemoryContext cxt = CurrentMemoryContext;

	medallion_gateway_enter(GetUserId(), &gw);
	/* a 0.1.0 catalog (until ALTER EXTENSION UPDATE) has no graph and no pause requests */
	n = medallion_gateway_exec(medallion_catalog_has_dependencies() ?
							   "WITH n AS ("
							   "  SELECT p.name, p.layer, "
							   "    p.state OPERATOR(pg_catalog.=) 'active' "
							   "    AND NOT EXISTS (SELECT FROM medallion.pause_requests q "
							   "                    WHERE q.pipeline OPERATOR(pg_catalog.=) p.name) "
							   "    AND r.oid IS NOT NULL "
							   "    AND (pg_catalog.pg_has_role(r.oid, 'USAGE') "
							   "         OR EXISTS (SELECT FROM medallion.operators o "
							   "                    JOIN pg_catalog.pg_roles orr ON orr.rolname OPERATOR(pg_catalog.=) o.role "
							   "                    WHERE o.pipeline OPERATOR(pg_catalog.=) p.name "
							   "                      AND pg_catalog.pg_has_role(orr.oid, 'USAGE'))) AS mine, "
							   "    (pg_catalog.row_number() OVER (ORDER BY p.name))::pg_catalog.int4 "
							   "      OPERATOR(pg_catalog.-) 1 AS i "
							   "  FROM medallion.pipelines p "
							   "  LEFT JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) p.owner) "
							   "SELECT n.name, n.layer, n.mine, "
							   "  ARRAY(SELECT DISTINCT u.i FROM medallion.dependencies d "
							   "        JOIN n u ON u.name OPERATOR(pg_catalog.=) d.upstream "
							   "        WHERE d.pipeline OPERATOR(pg_catalog.=) n.name) "
							   "FROM n ORDER BY n.i" :
							   "SELECT p.name, p.layer, "
							   "  p.state OPERATOR(pg_catalog.=) 'active' "
							   "  AND CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_roles r "
							   "                        WHERE r.oid OPERATOR(pg_catalog.=) p.owner::pg_catalog.oid) "
							   "      THEN pg_catalog.pg_has_role(p.owner::pg_catalog.oid, 'USAGE') ELSE false END, "
							   "  '{}'::pg_catalog.int4[] "
							   "FROM medallion.pipelines p ORDER BY p.name",
							   0, NULL, NULL, NULL, 0, SPI_OK_SELECT);
	/* out of SPI's memory, which medallion_gateway_leave frees */
	MemoryContextSwitchTo(cxt);
	nodes = palloc0(sizeof(GraphNode) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum	   *ups;
		int			nups;
		char	   *layer = SPI_getvalue(tuple, desc, 2);

		nodes[i].name = pstrdup(SPI_getvalue(tuple, desc, 1));
		nodes[i].runs = DatumGetBool(SPI_getbinval(tuple, desc, 3, &isnull)) &&
			medallion_run_accepts_layer(layer);
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tuple, desc, 4, &isnull)),
						  INT4OID, sizeof(int32), true, TYPALIGN_INT, &ups, NULL, &nups);
		nodes[i].nupstreams = nups;
		nodes[i].upstreams = palloc(sizeof(int) * Max(nups, 1));
		for (int j = 0; j < nups; j++)
			nodes[i].upstreams[j] = DatumGetInt32(ups[j]);
		nodes[i].waiting = nups;
		nodes[i].failed = -1;
	}
	medallion_gateway_leave(&gw);
	MemoryContextSwitchTo(cxt);
	*count = (int) n;
	return nodes;
}

/*
 * The next pipeline in dependency order: the first, by name, whose
 * upstreams are all ordered.  A loop (refused when edges are recorded, so
 * only a damaged catalog has one) is broken at its first name rather than
 * leaving pipelines out.
 */
static int
next_in_order(GraphNode *nodes, int n)
{
	int			first = -1;

	for (int i = 0; i < n; i++)
	{
		if (nodes[i].ordered)
			continue;
		if (nodes[i].waiting == 0)
			return i;
		if (first < 0)
			first = i;
	}
	return first;
}

/*
 * Marks a pipeline ordered: its downstreams wait for one upstream less.
 */
static void
mark_ordered(GraphNode *nodes, int n, int done)
{
	nodes[done].ordered = true;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < nodes[i].nupstreams; j++)
			if (nodes[i].upstreams[j] == done)
				nodes[i].waiting--;
}

/*
 * Whether an upstream of the pipeline failed or was blocked in this round;
 * if so records the pipeline 'skipped' with the reason, and returns true.
 */
static bool
skip_if_blocked(GraphNode *nodes, int i)
{
	GraphNode  *node = &nodes[i];

	for (int j = 0; j < node->nupstreams; j++)
	{
		GraphNode  *up = &nodes[node->upstreams[j]];
		GraphNode  *failed;
		char	   *reason;

		if (up->outcome != ROUND_FAILED && up->outcome != ROUND_BLOCKED)
			continue;
		node->failed = up->outcome == ROUND_FAILED ? node->upstreams[j] : up->failed;
		failed = &nodes[node->failed];
		if (up->outcome == ROUND_FAILED)
			reason = psprintf("upstream pipeline \"%s\" failed in this run_all() round (run %lld)",
							  up->name, (long long) up->run_id);
		else
			reason = psprintf("upstream pipeline \"%s\" was skipped in this run_all() round: pipeline \"%s\" failed (run %lld)",
							  up->name, failed->name, (long long) failed->run_id);

		node->outcome = ROUND_BLOCKED;
		node->run_id = medallion_run_record_skipped(node->name, "incremental", reason);
		medallion_run_trim_skipped(node->name);
		ereport(NOTICE,
				(errmsg("run of pipeline \"%s\" skipped: %s", node->name, reason),
				 errdetail("Pipeline \"%s\" failed in this round; the pipelines that read it wait for the next round.",
						   failed->name)));
		return true;
	}
	return false;
}

/*
 * medallion.run_all() → the run ids of the round, upstream first.
 */
Datum
medallion_run_all(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext oldcxt;
	GraphNode  *nodes;
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	/* the graph outlives the runs' subtransactions */
	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	nodes = read_graph(&n);
	MemoryContextSwitchTo(oldcxt);

	while ((i = next_in_order(nodes, n)) >= 0)
	{
		GraphNode  *node = &nodes[i];
		Datum		value;
		bool		isnull = false;

		CHECK_FOR_INTERRUPTS();
		mark_ordered(nodes, n, i);
		if (!node->runs)
			continue;
		if (!skip_if_blocked(nodes, i))
		{
			node->run_id = medallion_run_manual(node->name);
			node->outcome = strcmp(medallion_run_status(node->run_id), "failed") == 0 ?
				ROUND_FAILED : ROUND_SUCCEEDED;
		}
		value = Int64GetDatum(node->run_id);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}
