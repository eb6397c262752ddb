/*-------------------------------------------------------------------------
 *
 * lineage.c
 *	  medallion.lineage_graph(): the lineage view as a diagram, in Mermaid
 *	  or Graphviz DOT, to paste into documentation.
 *
 * Nodes are every pipeline plus every captured table; node identifiers are
 * generated (n1, n2...), and the names only ever appear as labels, escaped
 * for the format: a pipeline name may hold any character, and neither a
 * quote nor a format's own markup in it may change the diagram.  Edges
 * carry the counts of the downstream pipeline's last run; a pipeline's
 * description is a second line of its node's label (escaped as names are).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "medallion.h"

PG_FUNCTION_INFO_V1(medallion_lineage_graph);

typedef enum GraphFormat
{
	GRAPH_MERMAID,
	GRAPH_DOT
} GraphFormat;

/*
 * Appends a name as a label's text.  ASCII letters, digits, space, '_',
 * '.' and '-' stay as they are, and so do the bytes of non-ASCII characters
 * (letters of the database's encoding); every other character becomes a
 * numeric character reference: "#34;" for Mermaid, "&#34;" for DOT's
 * HTML-like labels.  That leaves no quote, bracket, backslash, newline or
 * markup of either format in the label.
 */
static void
append_label(StringInfo out, const char *name, GraphFormat format)
{
	for (const unsigned char *c = (const unsigned char *) name; *c; c++)
	{
		if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
			*c == ' ' || *c == '_' || *c == '.' || *c == '-' || *c >= 0x80)
			appendStringInfoChar(out, (char) *c);
		else
			appendStringInfo(out, format == GRAPH_DOT ? "&#%d;" : "#%d;", (int) *c);
	}
}

/*
 * The label of an edge: the downstream's last run and its counts, or what
 * kind of edge it is when that says more (a reference is read, not fed; a
 * capture feeds bronze, which has no runs); NULL for none.  A reference
 * always has one.  Digits and words only: nothing to escape.
 */
static char *
edge_label(HeapTuple tuple, TupleDesc desc)
{
	char	   *kind = SPI_getvalue(tuple, desc, 4);
	char	   *status = SPI_getvalue(tuple, desc, 5);
	StringInfoData s;

	if (strcmp(kind, "reference") == 0)
		return pstrdup("references");
	if (status == NULL)
		return strcmp(kind, "capture") == 0 ? pstrdup("capture") : NULL;
	initStringInfo(&s);
	appendStringInfo(&s, "%s: read %s, inserted %s, updated %s, dlq %s",
					 status, SPI_getvalue(tuple, desc, 6), SPI_getvalue(tuple, desc, 7),
					 SPI_getvalue(tuple, desc, 8), SPI_getvalue(tuple, desc, 9));
	if (strcmp(SPI_getvalue(tuple, desc, 10), "0") != 0)
		appendStringInfo(&s, ", quarantined %s", SPI_getvalue(tuple, desc, 10));
	return s.data;
}

/*
 * medallion.lineage_graph(format) → the diagram's text.
 */
Datum
medallion_lineage_graph(PG_FUNCTION_ARGS)
{
	GraphFormat format;
	char	   *fmt;
	MedallionGateway gw;
	StringInfoData out;
	MemoryContext cxt = CurrentMemoryContext;
	uint64		n;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("format must not be NULL"),
				 errhint("The format is \"mermaid\" or \"dot\".")));
	fmt = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (pg_strcasecmp(fmt, "mermaid") == 0)
		format = GRAPH_MERMAID;
	else if (pg_strcasecmp(fmt, "dot") == 0)
		format = GRAPH_DOT;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized lineage graph format \"%s\"", fmt),
				 errhint("The format is \"mermaid\" or \"dot\".")));

	/*
	 * One statement, so nodes and edges come from one snapshot: nodes
	 * (kind NULL) numbered in name order, then edges between their numbers.
	 * As the caller, who may read the lineage view; the path pinned.
	 */
	medallion_gateway_enter(GetUserId(), &gw);
	n = medallion_gateway_exec("WITH e AS MATERIALIZED (SELECT l.* FROM medallion.lineage l), "
							   "v AS (SELECT p.name FROM medallion.pipelines p "
							   "      UNION SELECT e.upstream FROM e), "
							   "n AS (SELECT v.name, pg_catalog.row_number() OVER (ORDER BY v.name) AS i FROM v) "
							   "SELECT * FROM ("
							   "  SELECT 0 AS part, n.i AS a, NULL::pg_catalog.int8 AS b, NULL::pg_catalog.text AS kind, "
							   "    pd.description, NULL::pg_catalog.int8, NULL::pg_catalog.int8, "
							   "    NULL::pg_catalog.int8, NULL::pg_catalog.int8, NULL::pg_catalog.int8, n.name "
							   "  FROM n LEFT JOIN medallion.pipelines pd ON pd.name OPERATOR(pg_catalog.=) n.name "
							   "  UNION ALL "
							   "  SELECT 1, u.i, d.i, e.kind, e.last_run_status, e.rows_read, e.rows_inserted, "
							   "    e.rows_updated, e.rows_dlq, e.rows_quarantined, NULL "
							   "  FROM e JOIN n u ON u.name OPERATOR(pg_catalog.=) e.upstream "
							   "  JOIN n d ON d.name OPERATOR(pg_catalog.=) e.pipeline"
							   ") g ORDER BY g.part, g.b, g.a, g.kind",
							   0, NULL, NULL, NULL, 0, SPI_OK_SELECT);

	MemoryContextSwitchTo(cxt);
	initStringInfo(&out);
	appendStringInfoString(&out, format == GRAPH_DOT ?
						   "digraph medallion {\n    rankdir=LR;\n    node [shape=box];\n" :
						   "flowchart LR\n");
	for (uint64 r = 0; r < n; r++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *a = SPI_getvalue(tuple, desc, 2);

		CHECK_FOR_INTERRUPTS();
		if (strcmp(SPI_getvalue(tuple, desc, 1), "0") == 0)
		{
			char	   *description = SPI_getvalue(tuple, desc, 5);

			/* a node: n<i> and its label, the pipeline's description under its name */
			appendStringInfo(&out, format == GRAPH_DOT ? "    n%s [label=<" : "    n%s[\"", a);
			append_label(&out, SPI_getvalue(tuple, desc, 11), format);
			if (description && description[0])
			{
				appendStringInfoString(&out, format == GRAPH_DOT ? "<BR/>" : "<br/>");
				append_label(&out, description, format);
			}
			appendStringInfoString(&out, format == GRAPH_DOT ? ">];\n" : "\"]\n");
		}
		else
		{
			char	   *b = SPI_getvalue(tuple, desc, 3);
			char	   *label = edge_label(tuple, desc);
			bool		dashed = strcmp(SPI_getvalue(tuple, desc, 4), "reference") == 0;

			/* diagram arrows, not SQL: the two lines below are marked for the lint */
			if (format == GRAPH_DOT)
			{
				appendStringInfo(&out, "    n%s -> n%s", a, b); /* qualified-ok */
				if (label)
					appendStringInfo(&out, " [label=\"%s\"%s]", label, dashed ? ", style=dashed" : "");
				appendStringInfoString(&out, ";\n");
			}
			else
			{
				appendStringInfo(&out, "    n%s %s", a, dashed ? "-.->" : "-->");	/* qualified-ok */
				if (label)
					appendStringInfo(&out, "|\"%s\"|", label);
				appendStringInfo(&out, " n%s\n", b);
			}
		}
	}
	if (format == GRAPH_DOT)
		appendStringInfoString(&out, "}\n");
	medallion_gateway_leave(&gw);
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}
