-- The pipeline graph: create_silver records its edges in medallion.dependencies (the bronze
-- source; every pipeline whose table a contract column references); a loop is refused
-- (MD020). run_all() runs the caller's pipelines upstream first, whatever their names, and a
-- pipeline whose upstream failed in the round is recorded 'skipped', naming it. The lineage
-- view (one row per edge, readable by everyone, no messages) and lineage_graph() in Mermaid
-- and DOT, with names escaped for each format. See docs/architecture.md, "The pipeline graph".
BEGIN;
SELECT plan(33);

CREATE ROLE medallion_graph_owner NOLOGIN;
CREATE ROLE medallion_graph_other NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_graph_owner, medallion_graph_other;

-- the SQLSTATE and message of the error a statement raises
CREATE FUNCTION pg_temp.error_of(sql text, OUT state text, OUT message text) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.error_of(text) TO PUBLIC;

-- A plain table in schema silver, no pipeline's: a reference to it is no edge.
CREATE TABLE silver.g_plain (id bigint PRIMARY KEY);
GRANT SELECT ON silver.g_plain TO medallion_graph_owner;
CREATE TABLE public.g_accounts (id int PRIMARY KEY);
ALTER TABLE public.g_accounts OWNER TO medallion_graph_owner;

SET ROLE medallion_graph_owner;
SELECT FROM medallion.create_bronze('g_customers', 'crm');
SELECT FROM medallion.create_bronze('g_orders', 'shop');
-- Names chosen so that by name the downstream comes first: g_aorders reads g_zcustomers.
SELECT FROM medallion.create_silver('g_zcustomers', 'bronze.g_customers',
    '{"customer_id": "bigint", "name": "text"}', ARRAY['customer_id'],
    options => '{"description": "customers, one row each"}');
SELECT FROM medallion.create_silver('g_aorders', 'bronze.g_orders',
    '{"order_id": "bigint",
      "customer_id": {"type": "bigint", "references": "silver.g_zcustomers.customer_id"},
      "plain_id": {"type": "bigint", "references": "silver.g_plain.id"}}', ARRAY['order_id']);
-- A third level, in the array form of columns: it reads g_aorders.
SELECT FROM medallion.create_silver('g_lines', 'bronze.g_orders',
    '[{"name": "line_id", "path": "order_id", "type": "bigint"},
      {"name": "order_id", "type": "bigint", "references": "silver.g_aorders.order_id"}]', ARRAY['line_id']);
SELECT FROM medallion.capture('public.g_accounts', 'g_accounts');
RESET ROLE;

-- Edges ----------------------------------------------------------------------------------------

SELECT results_eq(
    $$SELECT pipeline, upstream, kind, partition_column FROM medallion.dependencies
      WHERE pipeline LIKE 'silver.g\_%' ORDER BY pipeline, upstream, kind$$,
    $$VALUES ('silver.g_aorders', 'bronze.g_orders', 'source', NULL::text),
             ('silver.g_aorders', 'silver.g_zcustomers', 'reference', NULL),
             ('silver.g_lines', 'bronze.g_orders', 'source', NULL),
             ('silver.g_lines', 'silver.g_aorders', 'reference', NULL),
             ('silver.g_zcustomers', 'bronze.g_customers', 'source', NULL)$$,
    'create_silver records its bronze source and the pipelines its contract references (a plain table is no edge)');

SELECT results_eq(
    $$SELECT * FROM pg_temp.error_of($q$INSERT INTO medallion.dependencies (pipeline, upstream, kind)
                                       VALUES ('silver.g_zcustomers', 'silver.g_lines', 'reference')$q$)$$,
    $$VALUES ('MD020', 'pipeline "silver.g_zcustomers" cannot depend on itself')$$,
    'an edge that closes a loop is refused with MD020, whoever writes it');
SELECT is(pg_temp.error_of($q$INSERT INTO medallion.dependencies (pipeline, upstream, kind)
                              VALUES ('silver.g_lines', 'silver.g_lines', 'reference')$q$)::text,
          '(MD020,"pipeline ""silver.g_lines"" cannot depend on itself")',
          'so is a pipeline as its own upstream');
SELECT is((SELECT count(*)::int FROM medallion.dependencies WHERE pipeline LIKE 'silver.g\_%'), 5,
          'and nothing of the refused edges stays');

-- run_all order ------------------------------------------------------------------------------

SELECT FROM medallion.ingest('bronze.g_customers', '[{"customer_id": 1, "name": "ann"}, {"customer_id": 2, "name": "bob"}]');
SELECT FROM medallion.ingest('bronze.g_orders', '[{"order_id": 10, "customer_id": 1}, {"order_id": 11, "customer_id": 2}]');

-- What the old by-name order did: g_aorders before the customers it references.
SAVEPOINT by_name;
SET ROLE medallion_graph_owner;
SELECT FROM medallion.run('silver.g_aorders');
SELECT FROM medallion.run('silver.g_zcustomers');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.g_aorders'), 2,
          'by name, the orders run before their customers and both good rows go to the DLQ');
ROLLBACK TO SAVEPOINT by_name;

SET ROLE medallion_graph_owner;
CREATE TEMP TABLE round1 AS SELECT r AS run_id FROM medallion.run_all() r;
RESET ROLE;
SELECT results_eq(
    $$SELECT r.pipeline, r.status FROM medallion.runs r JOIN round1 USING (run_id) ORDER BY r.run_id$$,
    $$VALUES ('silver.g_zcustomers', 'succeeded'), ('silver.g_aorders', 'succeeded'), ('silver.g_lines', 'succeeded')$$,
    'run_all runs upstream first: customers, then the orders that reference them, then the lines');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline LIKE 'silver.g\_%'), 0,
          'so no good row goes to the DLQ');
SELECT results_eq($$SELECT order_id, customer_id FROM silver.g_aorders ORDER BY order_id$$,
                  $$VALUES (10::bigint, 1::bigint), (11, 2)$$, 'and every order is loaded');
SELECT results_eq($$SELECT line_id FROM silver.g_lines ORDER BY line_id$$,
                  $$VALUES (10::bigint), (11)$$, 'and every line');

-- Skips --------------------------------------------------------------------------------------

-- A write error fails the customers' run (a CHECK the new row violates).
ALTER TABLE silver.g_zcustomers ADD CONSTRAINT g_no_boom CHECK (name <> 'boom');
SELECT FROM medallion.ingest('bronze.g_customers', '[{"customer_id": 3, "name": "boom"}]');
SELECT FROM medallion.ingest('bronze.g_orders', '[{"order_id": 12, "customer_id": 1}]');

SET ROLE medallion_graph_owner;
CREATE TEMP TABLE round2 AS SELECT r AS run_id FROM medallion.run_all() r;
RESET ROLE;
SELECT results_eq(
    $$SELECT r.pipeline, r.status FROM medallion.runs r JOIN round2 USING (run_id) ORDER BY r.run_id$$,
    $$VALUES ('silver.g_zcustomers', 'failed'), ('silver.g_aorders', 'skipped'), ('silver.g_lines', 'skipped')$$,
    'a failed upstream blocks its downstream, and what is downstream of that, for the round');
SELECT results_eq(
    $$SELECT r.pipeline, r.error_message, r.error_class, r.finished_at IS NOT NULL, r.rows_read
      FROM medallion.runs r JOIN round2 USING (run_id) WHERE r.status = 'skipped' ORDER BY r.run_id$$,
    $$SELECT 'silver.g_aorders', format('upstream pipeline "silver.g_zcustomers" failed in this run_all() round (run %s)', f.run_id),
             NULL::text, true, 0::bigint
      FROM medallion.runs f JOIN round2 USING (run_id) WHERE f.status = 'failed'
      UNION ALL
      SELECT 'silver.g_lines',
             format('upstream pipeline "silver.g_aorders" was skipped in this run_all() round: pipeline "silver.g_zcustomers" failed (run %s)', f.run_id),
             NULL, true, 0
      FROM medallion.runs f JOIN round2 USING (run_id) WHERE f.status = 'failed'$$,
    'the skipped runs are recorded, finished, their message naming the upstream (and the failed pipeline behind it)');
SELECT results_eq($$SELECT order_id FROM silver.g_aorders ORDER BY order_id$$,
                  $$VALUES (10::bigint), (11)$$, 'a skipped pipeline reads nothing');
SELECT is((SELECT consecutive_failures FROM medallion.pipelines WHERE name = 'silver.g_aorders'), 0,
          'a skip is no failure of the skipped pipeline');

ALTER TABLE silver.g_zcustomers DROP CONSTRAINT g_no_boom;
SET ROLE medallion_graph_owner;
CREATE TEMP TABLE round3 AS SELECT r AS run_id FROM medallion.run_all() r;
RESET ROLE;
SELECT results_eq(
    $$SELECT r.pipeline, r.status, r.rows_read FROM medallion.runs r JOIN round3 USING (run_id) ORDER BY r.run_id$$,
    $$VALUES ('silver.g_zcustomers', 'succeeded', 1::bigint), ('silver.g_aorders', 'succeeded', 1), ('silver.g_lines', 'succeeded', 1)$$,
    'the next round, the upstream fixed, the skipped pipelines read the rows they left');

-- Only the caller's pipelines ----------------------------------------------------------------

SET ROLE medallion_graph_other;
SELECT FROM medallion.create_bronze('g_other', 'x');
SELECT FROM medallion.create_silver('g_other', 'bronze.g_other', '{"id": "bigint"}', ARRAY['id']);
CREATE TEMP TABLE round_other AS SELECT r AS run_id FROM medallion.run_all() r;
RESET ROLE;
SELECT is((SELECT array_agg(r.pipeline ORDER BY r.run_id) FROM medallion.runs r JOIN round_other USING (run_id)),
          ARRAY['silver.g_other'], 'run_all runs only the pipelines the caller may run');
SET ROLE medallion_graph_owner;
CREATE TEMP TABLE round4 AS SELECT r AS run_id FROM medallion.run_all() r;
SELECT medallion.pause('silver.g_zcustomers');
CREATE TEMP TABLE round5 AS SELECT r AS run_id FROM medallion.run_all() r;
SELECT medallion.resume('silver.g_zcustomers');
RESET ROLE;
SELECT is((SELECT array_agg(r.pipeline ORDER BY r.run_id) FROM medallion.runs r JOIN round4 USING (run_id)),
          ARRAY['silver.g_zcustomers', 'silver.g_aorders', 'silver.g_lines'], 'and not another role''s');
SELECT is((SELECT array_agg(r.pipeline ORDER BY r.run_id) FROM medallion.runs r JOIN round5 USING (run_id)),
          ARRAY['silver.g_aorders', 'silver.g_lines'], 'a paused upstream is left out and blocks nothing');

-- The lineage view ---------------------------------------------------------------------------

-- A DLQ row for g_aorders: a customer that does not exist.
SELECT FROM medallion.ingest('bronze.g_orders', '[{"order_id": 13, "customer_id": 99}]');
SET ROLE medallion_graph_owner;
SELECT FROM medallion.run('silver.g_aorders');
SELECT medallion.alter_pipeline('silver.g_aorders', '{"steward": "ops team"}');
RESET ROLE;

SELECT results_eq(
    $$SELECT upstream, upstream_layer, pipeline, pipeline_layer, kind, last_run_status, rows_read, rows_inserted,
             rows_dlq, dlq_backlog, quarantine_backlog, owner::text, steward, description
      FROM medallion.lineage WHERE pipeline LIKE '%g\_%' ORDER BY pipeline, upstream, kind$$,
    $$VALUES ('public.g_accounts', NULL, 'bronze.g_accounts', 'bronze', 'capture', NULL, NULL::bigint, NULL::bigint, NULL::bigint,
              0::bigint, 0::bigint, 'medallion_graph_owner', NULL, 'changes of public.g_accounts'),
             ('bronze.g_orders', 'bronze', 'silver.g_aorders', 'silver', 'source', 'succeeded', 1, 0, 1,
              1, 0, 'medallion_graph_owner', 'ops team', NULL),
             ('silver.g_zcustomers', 'silver', 'silver.g_aorders', 'silver', 'reference', 'succeeded', 1, 0, 1,
              1, 0, 'medallion_graph_owner', 'ops team', NULL),
             ('bronze.g_orders', 'bronze', 'silver.g_lines', 'silver', 'source', 'succeeded', 0, 0, 0,
              0, 0, 'medallion_graph_owner', NULL, NULL),
             ('silver.g_aorders', 'silver', 'silver.g_lines', 'silver', 'reference', 'succeeded', 0, 0, 0,
              0, 0, 'medallion_graph_owner', NULL, NULL),
             ('bronze.g_other', 'bronze', 'silver.g_other', 'silver', 'source', 'succeeded', 0, 0, 0,
              0, 0, 'medallion_graph_other', NULL, NULL),
             ('bronze.g_customers', 'bronze', 'silver.g_zcustomers', 'silver', 'source', 'succeeded', 0, 0, 0,
              0, 0, 'medallion_graph_owner', NULL, 'customers, one row each')$$,
    'one row per edge: capture, sources and references, with the last run, the backlogs, owner, steward and description');
SELECT is((SELECT last_run_id FROM medallion.lineage WHERE pipeline = 'silver.g_aorders' AND kind = 'source'),
          (SELECT max(run_id) FROM medallion.runs WHERE pipeline = 'silver.g_aorders'), 'last_run_id is the newest run');

SET ROLE medallion_graph_other;
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.g_aorders'), 0,
          'another role sees none of the DLQ rows themselves');
SELECT is((SELECT dlq_backlog FROM medallion.lineage WHERE pipeline = 'silver.g_aorders' AND kind = 'source'), 1::bigint,
          'but everyone reads the lineage, and its DLQ backlog is counted for all');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM information_schema.columns
           WHERE table_schema = 'medallion' AND table_name = 'lineage'
             AND (column_name LIKE '%message%' OR column_name LIKE '%payload%')), 0,
          'the lineage shows no message and no payload');
SELECT ok(has_table_privilege('public', 'medallion.lineage', 'SELECT'), 'PUBLIC may read medallion.lineage');
SELECT ok(NOT has_function_privilege('public', 'medallion.dependencies_acyclic()', 'EXECUTE'),
          'the loop check is internal');

-- lineage_graph ------------------------------------------------------------------------------

-- Only this file's pipelines exist in this transaction: the whole diagram is known.
SELECT is(medallion.lineage_graph(),
$$flowchart LR
    n1["bronze.g_accounts<br/>changes of public.g_accounts"]
    n2["bronze.g_customers"]
    n3["bronze.g_orders"]
    n4["bronze.g_other"]
    n5["public.g_accounts"]
    n6["silver.g_aorders"]
    n7["silver.g_lines"]
    n8["silver.g_other"]
    n9["silver.g_zcustomers<br/>customers#44; one row each"]
    n5 -->|"capture"| n1
    n3 -->|"succeeded: read 1, inserted 0, updated 0, dlq 1"| n6
    n9 -.->|"references"| n6
    n3 -->|"succeeded: read 0, inserted 0, updated 0, dlq 0"| n7
    n6 -.->|"references"| n7
    n4 -->|"succeeded: read 0, inserted 0, updated 0, dlq 0"| n8
    n2 -->|"succeeded: read 0, inserted 0, updated 0, dlq 0"| n9
$$, 'lineage_graph() is a Mermaid flowchart: a node per pipeline and captured table (its description under its name), last-run counts on edges');

SELECT is(medallion.lineage_graph('dot'),
$$digraph medallion {
    rankdir=LR;
    node [shape=box];
    n1 [label=<bronze.g_accounts<BR/>changes of public.g_accounts>];
    n2 [label=<bronze.g_customers>];
    n3 [label=<bronze.g_orders>];
    n4 [label=<bronze.g_other>];
    n5 [label=<public.g_accounts>];
    n6 [label=<silver.g_aorders>];
    n7 [label=<silver.g_lines>];
    n8 [label=<silver.g_other>];
    n9 [label=<silver.g_zcustomers<BR/>customers&#44; one row each>];
    n5 -> n1 [label="capture"];
    n3 -> n6 [label="succeeded: read 1, inserted 0, updated 0, dlq 1"];
    n9 -> n6 [label="references", style=dashed];
    n3 -> n7 [label="succeeded: read 0, inserted 0, updated 0, dlq 0"];
    n6 -> n7 [label="references", style=dashed];
    n4 -> n8 [label="succeeded: read 0, inserted 0, updated 0, dlq 0"];
    n2 -> n9 [label="succeeded: read 0, inserted 0, updated 0, dlq 0"];
}
$$, 'lineage_graph(''dot'') is a Graphviz digraph of the same graph');

-- A name holding each format's markup: quotes, brackets, a pipe, a newline, an entity.
SET ROLE medallion_graph_owner;
SELECT FROM medallion.create_silver(E'g_"x"]|<b>\n#35;&amp;\\N', 'bronze.g_orders', '{"order_id": "bigint"}', ARRAY['order_id']);
RESET ROLE;
SELECT ok(position(E'    n6["silver.g_#34;x#34;#93;#124;#60;b#62;#10;#35;35#59;#38;amp#59;#92;N"]\n' IN medallion.lineage_graph()) > 0,
          'Mermaid: every character outside letters, digits, space, _ . - is a #code; entity, the node id is generated');
SELECT ok(position(E'    n6 [label=<silver.g_&#34;x&#34;&#93;&#124;&#60;b&#62;&#10;&#35;35&#59;&#38;amp&#59;&#92;N>];\n' IN medallion.lineage_graph('dot')) > 0,
          'DOT: every such character is a &#code; entity in an HTML-like label');
SELECT ok(position(E'\n    n3 --> n6\n' IN medallion.lineage_graph()) > 0,
          'its edge uses the generated id (no label: it has not run yet)');
SELECT is((SELECT count(*)::int FROM regexp_split_to_table(medallion.lineage_graph(), E'\n') l WHERE l <> ''), 19,
          'and its newline starts no line of its own');

SELECT throws_ok($$SELECT medallion.lineage_graph('svg')$$, '22023',
                 'unrecognized lineage graph format "svg"', 'an unknown format is refused (22023)');
SELECT throws_ok($$SELECT medallion.lineage_graph(NULL)$$, '22023', 'format must not be NULL', 'and NULL');
SET ROLE medallion_graph_other;
SELECT ok(medallion.lineage_graph() LIKE 'flowchart LR%', 'anyone may draw the graph');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
