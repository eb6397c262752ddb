# pg_dump / pg_restore of a database with pipelines into another cluster: the catalog,
# bronze data, DLQ and silver come back; ingestion works; the watermark, whose xids belong
# to the old cluster, is detected and reset, so rows that were not processed before the dump
# are processed after it (none missed), and silver equals a plain-SQL dedup of bronze.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode qw(medallion_node);

my $old = medallion_node('old');

$old->safe_psql('postgres', 'CREATE DATABASE app');
$old->safe_psql('app', q{
	CREATE EXTENSION medallion;
	SELECT medallion.create_bronze('orders', 'shop');
	SELECT medallion.create_silver('orders', 'bronze.orders',
		'{"order_id": {"path": "id", "type": "int", "required": true},
		  "amount": {"type": "numeric", "required": true},
		  "version": {"type": "int", "required": true}}',
		'{order_id}', 'version');
	SELECT medallion.ingest('bronze.orders',
		'[{"id": 1, "amount": 10, "version": 1}, {"id": 2, "amount": 20, "version": 1},
		  {"id": 3, "amount": "oops", "version": 1}]', 'b1');
	SELECT medallion.run('silver.orders');
});

# Push the old cluster's xids well past where a fresh cluster's will be, then land rows
# that are NOT processed before the dump: their _xid is "in the future" for the new cluster.
$old->safe_psql('app', 'SELECT pg_current_xact_id()') for 1 .. 300;
$old->safe_psql('app', q{
	SELECT medallion.ingest('bronze.orders',
		'[{"id": 2, "amount": 25, "version": 2}, {"id": 4, "amount": 40, "version": 1}]', 'b2')});

my $tempdir = PostgreSQL::Test::Utils::tempdir;
my $dump = "$tempdir/app.dump";
$old->command_ok([ 'pg_dump', '-Fc', '-d', $old->connstr('app'), '-f', $dump ], 'pg_dump');

my $new = medallion_node('new');
$new->safe_psql('postgres', 'CREATE DATABASE app');
$new->command_ok([ 'pg_restore', '--exit-on-error', '-d', $new->connstr('app'), $dump ],
	'pg_restore into another cluster');

is( $new->safe_psql('app',
		q{SELECT string_agg(name || ':' || layer, ',' ORDER BY name) FROM medallion.pipelines}),
	'bronze.orders:bronze,silver.orders:silver',
	'the pipelines are restored');
is( $new->safe_psql('app',
		q{SELECT string_agg(pipeline || ' <- ' || upstream || ' (' || kind || ')', ',') FROM medallion.dependencies}),
	'silver.orders <- bronze.orders (source)',
	'the pipeline graph is restored, through its loop check');
is($new->safe_psql('app', 'SELECT count(*) FROM bronze.orders'), '5', 'bronze rows are restored');
is($new->safe_psql('app', q{SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.orders'}),
	'1', 'the DLQ is restored');
is($new->safe_psql('app', q{SELECT string_agg(order_id || '=' || amount, ',' ORDER BY order_id) FROM silver.orders}),
	'1=10,2=20', 'silver is restored');

# Ingesting works in the new cluster (partitions, triggers, identity).
$new->safe_psql('app', q{
	SELECT medallion.ingest('bronze.orders', '{"id": 5, "amount": 50, "version": 1}', 'b3')});
is($new->safe_psql('app', q{SELECT count(*) FROM medallion.batches WHERE pipeline = 'bronze.orders'}),
	'3', 'batches are kept and a new one lands');
is($new->safe_psql('app', q{
	SELECT medallion.ingest('bronze.orders', '{"id": 9, "amount": 90, "version": 1}', 'b1')}),
	'0', 'a batch landed before the dump is still a no-op');

my ($stdout, $stderr);
$new->psql('app', q{SELECT medallion.run('silver.orders', strict => true)},
	stdout => \$stdout, stderr => \$stderr);
like($stderr, qr/comes from another cluster/, 'the foreign watermark is detected');

is( $new->safe_psql('app',
		q{SELECT string_agg(order_id || '=' || amount, ',' ORDER BY order_id) FROM silver.orders}),
	'1=10,2=25,4=40,5=50',
	'rows landed before the dump but not processed are processed, and new ones too');
is( $new->safe_psql('app', q{
	SELECT count(*) FROM (
		SELECT DISTINCT ON ((_raw->>'id')::int) (_raw->>'id')::int AS id, (_raw->>'amount')::numeric AS amount
		FROM bronze.orders WHERE _raw->>'amount' ~ '^[0-9.]+$'
		ORDER BY (_raw->>'id')::int, (_raw->>'version')::int DESC, _seq DESC) d
	FULL JOIN silver.orders s ON s.order_id = d.id AND s.amount = d.amount
	WHERE s.order_id IS NULL OR d.id IS NULL}),
	'0', 'silver equals the dedup of bronze by plain SQL');
is($new->safe_psql('app', q{SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.orders'}),
	'1', 'the bad row is still in the DLQ once, not twice');

# And the next run is incremental again: nothing new, nothing read.
$new->safe_psql('app', q{SELECT medallion.run('silver.orders')});
is($new->safe_psql('app',
		q{SELECT rows_read FROM medallion.runs WHERE pipeline = 'silver.orders' ORDER BY run_id DESC LIMIT 1}),
	'0', 'the run after the reset reads nothing');

$old->stop;
$new->stop;
done_testing();
