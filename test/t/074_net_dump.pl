# pg_dump / pg_restore into another cluster keeps what the network room stores: an HTTP
# source (its pipeline, its edge, its secret headers and validators), a webhook (and new ones
# get fresh ids: the sequence is dumped too), an export and the source runs it has sent (so
# nothing is sent twice after a restore).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $old = PostgreSQL::Test::Cluster->new('old_net');
$old->init(extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
$old->append_conf('postgresql.conf', "medallion.http_allowed_hosts = '127.0.0.1'\n");
$old->start;
$old->safe_psql('postgres', 'CREATE DATABASE app');
$old->safe_psql('app', q{
	CREATE EXTENSION medallion;
	SELECT medallion.create_bronze('ev', 'api');
	SELECT medallion.create_http_source('bronze.ev', 'http://127.0.0.1:9/ev',
		'{"records": "$.data", "headers": {"Authorization": "Bearer k"}}', 'api');
	UPDATE medallion.http_sources SET etag = '"v7"' WHERE pipeline = 'source.api';
	SELECT medallion.add_webhook('http://127.0.0.1:9/hook', '{"kinds": ["halted"], "headers": {"X-Token": "t"}}');
	SELECT medallion.create_silver('ev', 'bronze.ev', '{"id": "int"}', '{id}');
	SELECT medallion.create_export('silver.ev', 'http://127.0.0.1:9/sink');
	INSERT INTO medallion.export_runs (export, run_id) VALUES ('export.ev', 42);
});

my $tempdir = PostgreSQL::Test::Utils::tempdir;
my $dump = "$tempdir/app.dump";
$old->command_ok([ 'pg_dump', '-Fc', '-d', $old->connstr('app'), '-f', $dump ], 'pg_dump');

my $new = PostgreSQL::Test::Cluster->new('new_net');
$new->init(extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
$new->append_conf('postgresql.conf', "medallion.http_allowed_hosts = '127.0.0.1'\n");
$new->start;
$new->safe_psql('postgres', 'CREATE DATABASE app');
$new->command_ok([ 'pg_restore', '--exit-on-error', '-d', $new->connstr('app'), $dump ],
	'pg_restore into another cluster');

is($new->safe_psql('app', q{SELECT layer || ' ' || (definition->>'records') FROM medallion.pipelines WHERE name = 'source.api'}),
	'source $.data', 'the source\'s pipeline and definition are restored');
is($new->safe_psql('app', q{SELECT pipeline || ' ' || kind FROM medallion.dependencies WHERE upstream = 'source.api'}),
	'bronze.ev feed', 'and its edge');
is($new->safe_psql('app', q{SELECT (headers->>'Authorization') || ' ' || etag FROM medallion.http_sources WHERE pipeline = 'source.api'}),
	'Bearer k "v7"', 'and its secret headers and validators');
is($new->safe_psql('app', q{SELECT count(*) || ' ' || min(headers->>'X-Token') || ' ' || min(kinds::text) FROM medallion.webhooks}),
	'1 t {halted}', 'the webhook is restored');
my $id = $new->safe_psql('app', q{SELECT medallion.add_webhook('http://127.0.0.1:9/other')});
is($new->safe_psql('app', qq{SELECT $id > max(id) FROM medallion.webhooks WHERE id <> $id}), 't',
	'a new webhook gets a fresh id');
is($new->safe_psql('app', q{SELECT string_agg(run_id::text, ',') FROM medallion.export_runs WHERE export = 'export.ev'}),
	'42', 'the runs an export has sent are restored');

$old->stop;
$new->stop;
done_testing();
