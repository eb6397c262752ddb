# Smoke test of a server that preloads medallion: the extension installs its schemas and
# catalog, survives a crash (immediate stop + recovery), and refuses to be dropped while a
# user's table lives in one of its layer schemas.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('smoke');

$node->safe_psql('postgres', 'CREATE EXTENSION medallion');

is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace
	WHERE nspname IN ('bronze', 'silver', 'gold')}),
	'bronze,gold,silver',
	'layer schemas bronze, silver and gold exist');

my $catalog_query = q{
	SELECT string_agg(c::text, ',' ORDER BY c::text)
	FROM unnest(ARRAY[to_regclass('medallion.pipelines'), to_regclass('medallion.runs'),
	                  to_regclass('medallion.dlq')]) AS c};
is($node->safe_psql('postgres', $catalog_query),
	'medallion.dlq,medallion.pipelines,medallion.runs',
	'catalog tables medallion.pipelines, runs and dlq exist');

my $version = $node->safe_psql('postgres',
	q{SELECT extversion FROM pg_extension WHERE extname = 'medallion'});
isnt($version, '', "extension medallion $version is installed");

# Crash: no shutdown checkpoint, the server must recover from WAL.
$node->stop('immediate');
$node->start;

is( $node->safe_psql(
		'postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'medallion'}),
	$version,
	'extension still installed after crash recovery');
is($node->safe_psql('postgres', $catalog_query),
	'medallion.dlq,medallion.pipelines,medallion.runs',
	'catalog tables still there after crash recovery');
is($node->safe_psql('postgres', 'SELECT count(*) FROM medallion.pipelines'),
	'0', 'medallion.pipelines readable after crash recovery');

# A user's table in a layer schema: dropping the extension must not take it along.
$node->safe_psql('postgres',
	'CREATE TABLE bronze.t(x int); INSERT INTO bronze.t VALUES (1), (2)');
my ($rc, $stdout, $stderr) =
  $node->psql('postgres', 'DROP EXTENSION medallion');
isnt($rc, 0, 'DROP EXTENSION medallion fails while bronze.t exists');
like($stderr, qr/ERROR:/, 'the failed DROP EXTENSION reports an error');
note "DROP EXTENSION said: $stderr";

is($node->safe_psql('postgres', 'SELECT sum(x) FROM bronze.t'),
	'3', 'bronze.t and its rows survive');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_extension WHERE extname = 'medallion'}),
	'1',
	'extension medallion is still installed');

$node->stop;
done_testing();
