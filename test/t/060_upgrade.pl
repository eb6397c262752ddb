# Versions: 0.1.0 is released and frozen; 0.2.0 is reached by ALTER EXTENSION UPDATE.
# A database that installed 0.1.0 and built pipelines with data (bronze with redaction,
# capture of a local table, silver with a DLQ row, a schedule) is updated, and must end up
# with exactly the objects of a fresh 0.2.0 install (functions with their definitions,
# settings and grants, tables with columns, defaults, constraints, indexes, policies, views,
# triggers, config-dump registrations) — and its pipelines must keep working: ingest, capture,
# manual and scheduled runs, hashes unchanged for data redacted under 0.1.0.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode qw(medallion_node);

my $node = medallion_node('upgrade', workers => 32);

$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('postgres', 'CREATE ROLE alice LOGIN');

# ---- 0.1.0 with pipelines and data ------------------------------------------------------
$node->safe_psql('old', q{
	CREATE EXTENSION medallion VERSION '0.1.0';
	GRANT CREATE ON SCHEMA bronze, silver TO alice;
	CREATE TABLE public.accounts (id int PRIMARY KEY, name text);
	ALTER TABLE public.accounts OWNER TO alice;
});
is($node->safe_psql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'medallion'}),
	'0.1.0', '0.1.0 installs with the 0.2.0 library');

$node->safe_psql('old', q{
	SET ROLE alice;
	SELECT medallion.create_bronze('orders', 'shop', redact_keys => '{card}',
		options => '{"redact_mode": "hash"}');
	SELECT medallion.create_silver('orders', 'bronze.orders',
		'{"order_id": {"path": "id", "type": "int", "required": true},
		  "amount": {"type": "numeric", "required": true}}',
		'{order_id}');
	SELECT medallion.ingest('bronze.orders',
		'[{"id": 1, "amount": 10, "card": "4111"}, {"id": 2, "amount": "oops", "card": "4222"}]', 'b1');
	SELECT medallion.run('silver.orders');
	SELECT medallion.capture('public.accounts');
	INSERT INTO public.accounts VALUES (1, 'one');
	-- the graph: a silver table referencing another, whose name sorts first
	SELECT medallion.create_bronze('customers', 'crm');
	SELECT medallion.create_silver('customers', 'bronze.customers',
		'{"customer_id": {"path": "id", "type": "int", "required": true}}', '{customer_id}');
	-- a record ingestion cannot parse: a bronze dead letter, replayed after the update
	SELECT medallion.ingest_text('bronze.customers', '{"id": 8,}', 'ndjson', 'c0');
	SELECT medallion.create_silver('a_checked', 'bronze.orders',
		'[{"name": "order_id", "path": "id", "type": "int", "required": true},
		  {"name": "customer_id", "path": "customer", "type": "int", "references": "silver.customers.customer_id"}]',
		'{order_id}');
});
my $hash_before = $node->safe_psql('old',
	q{SELECT _raw->>'card' FROM bronze.orders WHERE _raw->>'id' = '1'});
isnt($hash_before, '4111', 'redaction hashed the card under 0.1.0');

is($node->safe_psql('old', q{SET ROLE alice; SELECT count(*) FROM medallion.run_all()}),
	'3', 'run_all works on a 0.1.0 catalog with the new library (by name: no graph yet)');

# ---- the update ---------------------------------------------------------------------------
$node->safe_psql('old', q{ALTER EXTENSION medallion UPDATE});
is($node->safe_psql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'medallion'}),
	'0.2.0', 'ALTER EXTENSION UPDATE reaches 0.2.0');
$node->safe_psql('fresh', q{CREATE EXTENSION medallion; GRANT CREATE ON SCHEMA bronze, silver TO alice;});
is($node->safe_psql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'medallion'}),
	'0.2.0', 'a fresh install is 0.2.0');

# ---- same objects -------------------------------------------------------------------------
# Every member of the extension, described by name, with what defines its behaviour.
my $describe = q{
WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_catalog.pg_extension
             WHERE extname = 'medallion'),
members AS (
  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, ext
  WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
    AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (
  SELECT c.oid FROM members m JOIN pg_catalog.pg_class c ON c.oid = m.objid
  WHERE m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass)
SELECT line FROM (
  SELECT 'member ' || pg_catalog.pg_describe_object(classid, objid, 0) AS line FROM members
  UNION ALL
  SELECT 'function ' || p.oid::pg_catalog.regprocedure::text || ' acl=' ||
         coalesce(p.proacl::text, '') || E'\n' || pg_catalog.pg_get_functiondef(p.oid)
  FROM members m JOIN pg_catalog.pg_proc p ON p.oid = m.objid
  WHERE m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.prokind <> 'a'
  UNION ALL
  SELECT 'relation ' || c.oid::pg_catalog.regclass::text || ' kind=' || c.relkind::text ||
         ' acl=' || coalesce(c.relacl::text, '') || ' rls=' || c.relrowsecurity ||
         ' owner_is_ext_owner=' || (c.relowner = (SELECT extowner FROM pg_catalog.pg_extension
                                               WHERE extname = 'medallion'))
  FROM rels r JOIN pg_catalog.pg_class c ON c.oid = r.oid
  UNION ALL
  SELECT 'column ' || a.attrelid::pg_catalog.regclass::text || '.' || a.attname || ' ' ||
         pg_catalog.format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull ||
         ' default=' || coalesce(pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '') ||
         ' identity=' || a.attidentity::text || ' acl=' || coalesce(a.attacl::text, '')
  FROM rels r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid
  LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
  WHERE a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
  FROM rels r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
  UNION ALL
  SELECT 'constraint ' || co.conrelid::pg_catalog.regclass::text || ' ' ||
         pg_catalog.pg_get_constraintdef(co.oid)
  FROM rels r JOIN pg_catalog.pg_constraint co ON co.conrelid = r.oid
  UNION ALL
  SELECT 'policy ' || pol.polrelid::pg_catalog.regclass::text || ' ' || pol.polname || ' ' ||
         pol.polcmd::text || ' ' || coalesce(pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), '') ||
         ' check ' || coalesce(pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid), '')
  FROM rels r JOIN pg_catalog.pg_policy pol ON pol.polrelid = r.oid
  UNION ALL
  SELECT 'view ' || c.oid::pg_catalog.regclass::text || E'\n' || pg_catalog.pg_get_viewdef(c.oid)
  FROM rels r JOIN pg_catalog.pg_class c ON c.oid = r.oid WHERE c.relkind IN ('v', 'm')
  UNION ALL
  SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid)
  FROM rels r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid WHERE NOT t.tgisinternal
  UNION ALL
  SELECT 'config ' || cfg::pg_catalog.regclass::text || ' ' || coalesce(cond, '')
  FROM ext, LATERAL unnest(ext.extconfig, ext.extcondition) AS u(cfg, cond)
  UNION ALL
  SELECT 'schema ' || n.nspname || ' acl=' || coalesce(n.nspacl::text, '')
  FROM pg_catalog.pg_namespace n WHERE n.nspname IN ('medallion', 'bronze', 'silver', 'gold')
  UNION ALL
  SELECT 'event trigger ' || e.evtname || ' ' || e.evtevent || ' ' || e.evtfoid::pg_catalog.regproc::text ||
         ' ' || coalesce(e.evttags::text, '')
  FROM members m JOIN pg_catalog.pg_event_trigger e ON e.oid = m.objid
  WHERE m.classid = 'pg_catalog.pg_event_trigger'::pg_catalog.regclass
) x ORDER BY line COLLATE "C"
};
my $old_objects = $node->safe_psql('old', $describe);
my $fresh_objects = $node->safe_psql('fresh', $describe);
ok(length($fresh_objects) > 1000, 'the description of a fresh install is not empty');
if ($old_objects eq $fresh_objects)
{
	pass('an updated 0.1.0 has exactly the objects of a fresh 0.2.0 install');
}
else
{
	my %old = map { $_ => 1 } split /\n(?=member |function |relation |column |index |constraint |policy |view |trigger |config |schema |event trigger )/, $old_objects;
	my %fresh = map { $_ => 1 } split /\n(?=member |function |relation |column |index |constraint |policy |view |trigger |config |schema |event trigger )/, $fresh_objects;
	diag("only after the update:\n" . join("\n", grep { !$fresh{$_} } sort keys %old));
	diag("only in a fresh install:\n" . join("\n", grep { !$old{$_} } sort keys %fresh));
	fail('an updated 0.1.0 has exactly the objects of a fresh 0.2.0 install');
}

# ---- the pipelines keep working ----------------------------------------------------------
is($node->safe_psql('old', q{
		SELECT string_agg(pipeline || ' <- ' || upstream || ' (' || kind || ')', ', ' ORDER BY pipeline, upstream)
		FROM medallion.dependencies}),
	'silver.a_checked <- bronze.orders (source), silver.a_checked <- silver.customers (reference), '
	  . 'silver.customers <- bronze.customers (source), silver.orders <- bronze.orders (source)',
	'the update records the graph of 0.1.0 pipelines: bronze sources and contract references');
is($node->safe_psql('old', q{
		SELECT string_agg(upstream || ' -> ' || pipeline, ', ') FROM medallion.lineage WHERE kind = 'capture'}),
	'public.accounts -> bronze.accounts', 'and the lineage shows the capture made under 0.1.0');
is($node->safe_psql('old', q{
		SET ROLE alice;
		DO $$ BEGIN
			PERFORM medallion.ingest('bronze.customers', '{"id": 7}', 'c1');
			PERFORM medallion.ingest('bronze.orders', '{"id": 5, "amount": 50, "customer": 7}', 'b5');
		END $$;
		CREATE TEMP TABLE round AS SELECT r AS run_id FROM medallion.run_all() r;
		SELECT string_agg(r.pipeline || '=' || r.status, ', ' ORDER BY r.run_id)
		FROM medallion.runs r JOIN round USING (run_id);
	}),
	'silver.customers=succeeded, silver.a_checked=succeeded, silver.orders=succeeded',
	'run_all runs a 0.1.0 pipeline after the one it references, though its name sorts first');
is($node->safe_psql('old', q{
		SELECT (SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.a_checked') || ' '
		    || (SELECT string_agg(order_id || ':' || coalesce(customer_id::text, '-'), ',' ORDER BY order_id)
		        FROM silver.a_checked)}),
	'0 1:-,2:-,5:7', 'so the order of the new customer is loaded, not sent to the DLQ');
is($node->safe_psql('old',
		q{SELECT _raw->>'card' FROM bronze.orders WHERE _raw->>'id' = '1'}),
	$hash_before, 'data redacted under 0.1.0 is unchanged');
$node->safe_psql('old', q{
	SET ROLE alice;
	SELECT medallion.ingest('bronze.orders', '{"id": 3, "amount": 30, "card": "4111"}', 'b2');
	INSERT INTO public.accounts VALUES (2, 'two');
	UPDATE public.accounts SET name = 'uno' WHERE id = 1;
});
is($node->safe_psql('old', q{SELECT count(*) FROM bronze.accounts}),
	'3', 'capture of a table captured under 0.1.0 goes on after the update');
is($node->safe_psql('old',
		q{SELECT (SELECT _raw->>'card' FROM bronze.orders WHERE _raw->>'id' = '3')
		       = (SELECT _raw->>'card' FROM bronze.orders WHERE _raw->>'id' = '1')}),
	't', 'a pipeline made under 0.1.0 keeps its hash, so redacted values still join');

my $run_id = $node->safe_psql('old', q{SET ROLE alice; SELECT medallion.run('silver.orders')});
is($node->safe_psql('old', "SELECT status FROM medallion.runs WHERE run_id = $run_id"),
	'succeeded', 'a manual run of a 0.1.0 pipeline succeeds after the update');
is($node->safe_psql('old', q{SELECT string_agg(order_id || '=' || amount, ',' ORDER BY order_id) FROM silver.orders}),
	'1=10,3=30,5=50', 'silver has the old and the new rows');
is($node->safe_psql('old', q{SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.orders'}),
	'1', 'the DLQ row from 0.1.0 is kept, not duplicated');
is($node->safe_psql('old', q{SELECT status FROM medallion.dlq WHERE pipeline = 'silver.orders'}),
	'pending', 'it has a status after the update');
$node->safe_psql('old', q{SET ROLE alice;
	SELECT medallion.dlq_correct(id, '{"id": 8}') FROM medallion.dlq WHERE pipeline = 'bronze.customers'});
is($node->safe_psql('old', q{SET ROLE alice; SELECT medallion.replay_dlq('bronze.customers')}),
	'1', 'a bronze dead letter made under 0.1.0 is corrected and replayed after the update');
is($node->safe_psql('old', q{SELECT status || ' ' || (b._raw->>'id') FROM medallion.dlq d
		JOIN bronze.customers b ON b._batch_id = d.replay_batch_id WHERE d.pipeline = 'bronze.customers'}),
	'replayed 8', 'it landed in bronze under the batch its dead letter names');
is($node->safe_psql('old', q{SELECT string_agg(path || ':' || change || ':' || classification, ',' ORDER BY path)
		FROM medallion.schema_changes WHERE pipeline = 'silver.orders' AND path = 'card'}),
	'card:key_added:safe', 'payload drift: a key the 0.1.0 contract does not read is recorded after the update');

# A gold model over a pipeline made under 0.1.0, on the updated catalog.
$node->safe_psql('old', q{
	GRANT CREATE ON SCHEMA gold TO alice;
	SET ROLE alice;
	SELECT medallion.create_gold('order_total',
		'SELECT count(*) AS orders, sum(amount) AS amount FROM silver.orders', NULL,
		'{"description": "all orders", "columns": {"orders": {"description": "how many orders"}}}');
	SELECT medallion.run('gold.order_total');
});
is($node->safe_psql('old', q{SELECT orders || '=' || amount FROM gold.order_total}),
	$node->safe_psql('old', q{SELECT count(*) || '=' || sum(amount) FROM silver.orders}),
	'a gold model over a 0.1.0 silver pipeline runs after the update');
is($node->safe_psql('old', q{SELECT description || ' ' || column_descriptions::text FROM medallion.lineage
		WHERE pipeline = 'gold.order_total'}),
	'all orders {"orders": "how many orders"}',
	'its descriptions are its table\'s comments, shown by the updated lineage view');

# A scheduled run, in a worker, on the updated catalog.
$node->safe_psql('old', q{
	SET ROLE alice;
	SELECT medallion.ingest('bronze.orders', '{"id": 4, "amount": 40, "card": "4444"}', 'b3');
	SELECT medallion.schedule('silver.orders', '1 second');
});
ok( $node->poll_query_until('old',
		q{SELECT count(*) = 1 FROM silver.orders WHERE order_id = 4}),
	'a scheduled run processes new rows after the update');

# Its contract is version 1 after the update, and evolves like a new one.
is($node->safe_psql('old',
		q{SELECT string_agg(version || ':' || (v.definition = p.definition) || ':' || p.definition_version, ',')
		  FROM medallion.contract_versions v JOIN medallion.pipelines p ON p.name = v.pipeline
		  WHERE v.pipeline = 'silver.orders'}),
	'1:true:1', 'a contract made under 0.1.0 is version 1 after the update');
is($node->safe_psql('old', q{SET ROLE alice;
		SELECT medallion.alter_contract('silver.orders', '{"note": {"type": "text", "description": "the buyer''s note"}}')}),
	'2', 'alter_contract makes version 2 of a 0.1.0 pipeline');
is($node->safe_psql('old', q{SELECT col_description('silver.orders'::regclass,
		(SELECT attnum FROM pg_attribute WHERE attrelid = 'silver.orders'::regclass AND attname = 'note'))}),
	"the buyer's note", "with the new column's description as its comment");
$node->safe_psql('old', q{
	SET ROLE alice;
	SELECT medallion.ingest('bronze.orders', '{"id": 5, "amount": 50, "card": "4555", "note": "n5"}', 'b4');
	SELECT medallion.run('silver.orders');
});
is($node->safe_psql('old', q{SELECT note FROM silver.orders WHERE order_id = 5}),
	'n5', 'the next run loads under version 2');

# An HTTP source on the updated catalog: registered with its edge; its run (nothing
# listens on port 9) fails as transient.
$node->safe_psql('old', q{
	SET medallion.http_allowed_hosts = '127.0.0.1';
	SELECT medallion.create_http_source('bronze.orders', 'http://127.0.0.1:9/orders', '{}', 'shop');
	SELECT medallion.run('source.shop');
});
is($node->safe_psql('old', q{SELECT pipeline || ' ' || kind FROM medallion.dependencies WHERE upstream = 'source.shop'}),
	'bronze.orders feed', 'an HTTP source made after the update feeds its bronze table');
is($node->safe_psql('old', q{SELECT status || ' ' || error_class FROM medallion.runs WHERE pipeline = 'source.shop'}),
	'failed transient', 'and runs (a refused connection is transient)');

# A backfill of a pipeline made under 0.1.0 recomputes its history in place.
my $bf_id = $node->safe_psql('old', q{SET ROLE alice; SELECT medallion.backfill('silver.orders', NULL, NULL)});
is($node->safe_psql('old', "SELECT kind || ' ' || status || ' ' || (detail->>'strategy') FROM medallion.runs WHERE run_id = $bf_id"),
	'backfill succeeded partition', 'a 0.1.0 pipeline is backfilled after the update');
is($node->safe_psql('old', q{SELECT string_agg(order_id || '=' || amount || '/' || coalesce(note, '-'), ',' ORDER BY order_id) FROM silver.orders}),
	'1=10/-,3=30/-,4=40/-,5=50/n5', 'its rows are the same, recomputed');
is($node->safe_psql('old', q{SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.orders' AND NOT reprocessed}),
	'1', 'and its DLQ row from 0.1.0 is neither duplicated nor released');

# A full backfill of it: rebuilt aside from bronze and swapped in by storage, same table.
my $orders_oid = $node->safe_psql('old', q{SELECT 'silver.orders'::regclass::oid});
my $full_id = $node->safe_psql('old', q{SET ROLE alice; SELECT medallion.backfill('silver.orders', NULL, NULL, 'full')});
is($node->safe_psql('old', "SELECT kind || ' ' || status || ' ' || (detail->>'strategy') FROM medallion.runs WHERE run_id = $full_id"),
	'backfill succeeded full', 'a 0.1.0 pipeline is rebuilt by a full backfill after the update');
is($node->safe_psql('old', q{SELECT string_agg(order_id || '=' || amount || '/' || coalesce(note, '-'), ',' ORDER BY order_id) FROM silver.orders}),
	'1=10/-,3=30/-,4=40/-,5=50/n5', 'its rows are the same, rebuilt');
is($node->safe_psql('old', q{SELECT 'silver.orders'::regclass::oid}), $orders_oid, 'in the same table (OID)');
is($node->safe_psql('old', q{SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.orders' AND NOT reprocessed}),
	'1', 'its DLQ row still once');

# A fresh install works the same way.
$node->safe_psql('fresh', q{
	SET ROLE alice;
	SELECT medallion.create_bronze('orders', 'shop');
	SELECT medallion.create_silver('orders', 'bronze.orders',
		'{"order_id": {"path": "id", "type": "int", "required": true}}', '{order_id}');
	SELECT medallion.ingest('bronze.orders', '{"id": 1}', 'b1');
	SELECT medallion.run('silver.orders');
});
is($node->safe_psql('fresh', q{SELECT count(*) FROM silver.orders}), '1',
	'a pipeline on a fresh 0.2.0 install runs');

# The DDL watch tracks what 0.1.0 made, from the update on.
is($node->safe_psql('old', q{SELECT string_agg(relation, ',' ORDER BY relation) FROM medallion.column_snapshots
	WHERE 'silver.orders' = ANY (pipelines)}),
	'bronze.orders,silver.orders', 'the update snapshots the relations of pipelines made under 0.1.0');
$node->safe_psql('old', q{SET ROLE alice; ALTER TABLE silver.orders ADD COLUMN remark text});
is($node->safe_psql('old', q{SELECT change || ' ' || path || ' ' || classification FROM medallion.schema_changes
	WHERE pipeline = 'silver.orders' ORDER BY id DESC LIMIT 1}),
	'column_added remark safe', 'and DDL on them is classified');

# A pipeline made under 0.1.0 is renamed after the update: a contract made under 0.1.0 that
# references it follows (its contract versions were made by the update), and still runs.
$node->safe_psql('old', q{SET ROLE alice; SELECT medallion.rename_pipeline('silver.customers', 'silver.clients')});
is($node->safe_psql('old', q{SELECT definition #>> '{columns,1,references}' FROM medallion.pipelines WHERE name = 'silver.a_checked'}),
	'silver.clients.customer_id', 'a 0.1.0 pipeline is renamed, and the contract that references it follows');
my $ren_id = $node->safe_psql('old', q{SET ROLE alice; SELECT medallion.run('silver.a_checked')});
is($node->safe_psql('old', "SELECT status FROM medallion.runs WHERE run_id = $ren_id"), 'succeeded',
	'which runs, its reference checked against the renamed table');

$node->stop;
done_testing();
