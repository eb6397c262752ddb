# Scheduler slots (64 in a cluster) go only to databases where the extension is installed:
# a cluster with more databases than slots, none of them with the extension, still gets a
# scheduler in the one where CREATE EXTENSION runs last.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode qw(medallion_node);

my $node = medallion_node('bgw_slots', workers => 16, quiet => 1, conf => "fsync = off\n");

# 70 databases without the extension (more than the 64 slots); the launcher looks at each.
$node->safe_psql('postgres', join("\n", map { "CREATE DATABASE plain$_ TEMPLATE template0;" } 1 .. 70));
$node->safe_psql('postgres', 'CREATE DATABASE late');
# the launcher has looked at every database: none keeps a scheduler
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'medallion scheduler'}),
	'no database without the extension keeps a scheduler');
sleep(3);
$node->safe_psql('late', 'CREATE EXTENSION medallion');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion scheduler' AND datname = 'late'}),
	'the 72nd database gets a scheduler once it has the extension');
$node->safe_psql('late', q{
SELECT medallion.create_bronze('e', 'app');
SELECT medallion.create_silver('e', 'bronze.e', '{"id": "int"}', '{id}');
SELECT medallion.schedule('silver.e', 'on_change');
SELECT medallion.ingest('bronze.e', '{"id": 1}');
});
ok($node->poll_query_until('late', 'SELECT count(*) = 1 FROM silver.e'), 'and its pipelines run');
ok(!$node->log_contains('every scheduler slot is taken'), 'no database was refused a slot');

$node->stop;
done_testing();
