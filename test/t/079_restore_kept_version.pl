# A version a blue-green backfill kept survives pg_dump / pg_restore into another cluster:
# the kept table and its medallion.backfill_versions row come back, rollback() swaps it in
# there with the contract version it was built with, and the runs after it process only what
# is new (nothing lost, nothing doubled; the kept watermark holds the old cluster's
# transaction ids, so the pipeline is re-based as after any restore).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $old = medallion_node('old_kept', db => 'app');
$old->safe_psql('postgres', 'CREATE DATABASE app');
sq(q{
	CREATE EXTENSION medallion;
	SELECT medallion.create_bronze('kv_raw', 'shop');
	SELECT medallion.create_silver('kv_orders', 'bronze.kv_raw', '{"id": "bigint", "tier": "text"}', '{id}',
	                               NULL, '{"compatibility": "none"}');
	SELECT medallion.ingest('bronze.kv_raw',
	       (SELECT jsonb_agg(jsonb_build_object('id', i, 'tier', 'gold')) FROM generate_series(1, 10) i));
	SELECT medallion.run('silver.kv_orders');
	SELECT medallion.alter_contract('silver.kv_orders', '{"tier": {"type": "text", "expr": "upper(tier)"}}');
	SELECT medallion.backfill('silver.kv_orders', NULL, NULL, 'blue_green');
	-- landed after the swap: the next run in the new cluster must read them once
	SELECT medallion.ingest('bronze.kv_raw', '[{"id": 11, "tier": "gold"}, {"id": 3, "tier": "silver"}]');
});
is(sq(q{SELECT count(*) FILTER (WHERE tier = 'GOLD') || '/' || count(*) FROM silver.kv_orders}), '10/10',
	'the blue-green version is in place in the old cluster');
is(sq(q{SELECT count(*) FROM medallion.backfill_versions WHERE pipeline = 'silver.kv_orders'}), '1',
	'and the replaced version is kept');

my $tempdir = PostgreSQL::Test::Utils::tempdir;
my $dump = "$tempdir/app.dump";
$old->command_ok([ 'pg_dump', '-Fc', '-d', $old->connstr('app'), '-f', $dump ], 'pg_dump');
$old->stop;

my $new = medallion_node('new_kept', db => 'app');
$new->safe_psql('postgres', 'CREATE DATABASE app');
$new->command_ok([ 'pg_restore', '--exit-on-error', '-d', $new->connstr('app'), $dump ],
	'pg_restore into another cluster');

is(sq(q{SELECT count(*) FROM medallion.backfill_versions v
        JOIN pg_class c ON c.oid = v.kept_table WHERE v.pipeline = 'silver.kv_orders'}), '1',
	'the kept version\'s row points at its restored table');
is(sq(q{SELECT count(*) FILTER (WHERE tier = 'gold') FROM silver._bf} .
      sq(q{SELECT run_id FROM medallion.backfill_versions WHERE pipeline = 'silver.kv_orders'}) . q{_old}),
	'10', 'the kept table holds the old version\'s rows');

sq(q{SELECT medallion.rollback('silver.kv_orders')});
is(sq(q{SELECT count(*) FILTER (WHERE tier = 'gold') || '/' || count(*) FROM silver.kv_orders}), '10/10',
	'rollback in the new cluster swaps the old version back in');
is(sq(q{SELECT c.version FROM medallion.pipelines p
        JOIN medallion.contract_versions c ON c.pipeline = p.name AND c.definition = p.definition
        WHERE p.name = 'silver.kv_orders'}), '1',
	'with the contract version it was built with');
is(sq(q{SELECT count(*) FROM medallion.backfill_versions}), '0', 'the kept version is used up');

sq(q{SELECT medallion.run('silver.kv_orders')});
sq(q{SELECT medallion.ingest('bronze.kv_raw', '[{"id": 12, "tier": "gold"}]')});
sq(q{SELECT medallion.run('silver.kv_orders')});
is(sq(q{SELECT string_agg(id || ':' || tier, ',' ORDER BY id) FROM silver.kv_orders WHERE id IN (3, 11, 12)}),
	'3:silver,11:gold,12:gold',
	'the runs after it apply what landed since the swap and what lands now, under the restored contract');
is(sq(q{SELECT count(*) || '/' || count(DISTINCT id) FROM silver.kv_orders}), '12/12',
	'every key once: nothing lost, nothing doubled');
is(sq(q{SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.kv_orders'}), '0', 'and no dead letter');
sq(q{SELECT medallion.run('silver.kv_orders')});
is(sq(q{SELECT rows_read FROM medallion.runs WHERE pipeline = 'silver.kv_orders' ORDER BY run_id DESC LIMIT 1}),
	'0', 'a further run finds nothing new: the watermark is not stalled behind foreign transaction ids');

$new->stop;
done_testing();
