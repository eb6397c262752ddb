# Exports of a silver table to a receiver on 127.0.0.1 (test/net/httpd.py): create_export is
# an administrator's and needs SELECT on the table; a run POSTs the rows not exported yet as
# JSON batches of batch_size records with an Idempotency-Key; a second run sends nothing; rows
# a later silver run changed or deleted go out as upserts and deletes; an export that failed
# (the receiver down: a transient failure) sends the same batches again with the same keys.
# Exports of gold tables: 075_gold_exports.pl.
use strict;
use warnings;
use FindBin;
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;
use Time::HiRes qw(usleep);

my ($base, $port) = start_httpd();

my $node = medallion_node('exports', conf => qq{
max_worker_processes = 16
log_min_messages = warning
medallion.http_allowed_hosts = '127.0.0.1'
});
my $db = 'postgres';

sub received { return decode_json(HTTP::Tiny->new->get("$base/hook/received")->{content}); }
sub hook { HTTP::Tiny->new->get("$base/hook/$_[0]"); }
# The records received so far, as "op:id" strings in arrival order.
sub records
{
	my @r;
	for my $m (@{ received()->{received} })
	{
		my $b = decode_json($m->{body});
		push @r, map { $_->{op} . ':' . ($_->{op} eq 'upsert' ? $_->{row}{id} : $_->{key}{id}) } @{ $b->{records} };
	}
	return join(',', @r);
}
sub last_run
{
	return sq(qq{SELECT $_[0] FROM medallion.runs WHERE pipeline = 'export.ev' ORDER BY run_id DESC LIMIT 1});
}

sq(q{CREATE EXTENSION medallion; CREATE ROLE dave;
     SELECT medallion.create_bronze('ev', 'api');
     SELECT medallion.create_silver('ev', 'bronze.ev', '{"id": "int", "v": "text"}', '{id}', NULL,
                                    '{"delete_when": "_raw->>''deleted'' = ''true''"}');
     SELECT medallion.ingest('bronze.ev', '[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}]');
     SELECT medallion.run('silver.ev')});

# ---- creation -----------------------------------------------------------------------------
like(sql_error(qq{SET ROLE dave; SELECT medallion.create_export('silver.ev', '$base/hook')}),
	qr/permission denied for function create_export/, 'EXECUTE on create_export is not granted to PUBLIC');
sq(q{GRANT EXECUTE ON FUNCTION medallion.create_export(regclass, text, jsonb, text) TO dave});
like(sql_error(qq{SET ROLE dave; SELECT medallion.create_export('silver.ev', '$base/hook')}),
	qr/permission denied for table silver\.ev/, 'SELECT on the silver table is needed too');
like(sql_error(qq{SELECT medallion.create_export('bronze.ev', '$base/hook')}), qr/is not a silver or gold table/,
	'an export reads a silver or gold table');
like(sql_error(qq{SELECT medallion.create_export('silver.ev', 'http://localhost:$port/hook')}), qr/is not allowed/,
	'its URL is checked against medallion.http_allowed_hosts');
is(sq(qq{SELECT medallion.create_export('silver.ev', '$base/hook', '{"batch_size": 2}')}), 'export.ev',
	'create_export registers export.<table name>');
is(sq(q{SELECT kind FROM medallion.dependencies WHERE pipeline = 'export.ev' AND upstream = 'silver.ev'}), 'export',
	'with its edge from the silver pipeline');

# ---- runs -----------------------------------------------------------------------------------
sq(q{SELECT medallion.run('export.ev')});
is(records(), 'upsert:1,upsert:2,upsert:3', 'the first run sends every row');
my $got = received();
is(scalar @{ $got->{received} }, 2, 'in batches of batch_size records');
ok((grep { defined $_->{key} && length $_->{key} == 64 } @{ $got->{received} }) == 2, 'each with an Idempotency-Key');
isnt($got->{received}[0]{key}, $got->{received}[1]{key}, 'a key per batch');
is(last_run(q{status || ' ' || rows_read}), 'succeeded 3', 'the run counts the rows sent');

sq(q{SELECT medallion.run('export.ev')});
is(scalar @{ received()->{received} }, 2, 'a second run sends nothing');

sq(q{SELECT medallion.ingest('bronze.ev', '[{"id": 2, "v": "B"}, {"id": 3, "deleted": "true"}, {"id": 4, "v": "d"}]');
     SELECT medallion.run('silver.ev'); SELECT medallion.run('export.ev')});
is(records(), 'upsert:1,upsert:2,upsert:3,delete:3,upsert:2,upsert:4',
	'then only what the next silver run changed: deletes as delete records');

# ---- failure: the same batches again, with the same keys ---------------------------------
sq(q{SELECT medallion.ingest('bronze.ev', '[{"id": 5, "v": "e"}, {"id": 6, "v": "f"}, {"id": 7, "v": "g"}]');
     SELECT medallion.run('silver.ev')});
hook('down');
sq(q{SELECT medallion.run('export.ev')});
is(last_run(q{status || ' ' || error_class}), 'failed transient', 'the receiver down: a transient failure');
my @refused = @{ received()->{refused_keys} };
is(scalar @refused, 1, 'the first batch was refused');
hook('up');
sq(q{SELECT medallion.run('export.ev')});
is(last_run('status'), 'succeeded', 'the next attempt succeeds');
$got = received();
my @keys = map { $_->{key} } @{ $got->{received} };
is($keys[-2], $refused[0], 'the batch sent again carries the key of the failed attempt');
is(records(), 'upsert:1,upsert:2,upsert:3,delete:3,upsert:2,upsert:4,upsert:5,upsert:6,upsert:7',
	'and every row arrives');

# ---- alter_pipeline ------------------------------------------------------------------------
sq(q{SELECT medallion.alter_pipeline('export.ev', '{"batch_size": 100, "headers": {"X-Token": "e1"}, "max_retries": 7}')});
is(sq(q{SELECT (definition->>'batch_size') || ' ' || (options->>'max_retries') FROM medallion.pipelines WHERE name = 'export.ev'}),
	'100 7', 'alter_pipeline changes an export\'s options and those of every pipeline');
like(sql_error(q{SELECT medallion.alter_pipeline('export.ev', '{"batch_size": 0}')}), qr/invalid value for option "batch_size"/,
	'checked as at creation');
like(sql_error(q{SELECT medallion.alter_pipeline('export.ev', '{"url": null}')}), qr/url of pipeline "export.ev" cannot be removed/,
	'its url cannot be removed');
sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 9, "v": "i"}'); SELECT medallion.run('silver.ev'); SELECT medallion.run('export.ev')});
is(received()->{received}[-1]{token}, 'e1', 'the new headers are sent');

# ---- scheduled ----------------------------------------------------------------------------
sq(q{SELECT medallion.schedule('export.ev', '1 second')});
my $runs = sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'export.ev'});
sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 8, "v": "h"}'); SELECT medallion.run('silver.ev')});
wait_for(q{SELECT count(*) = 1 FROM medallion.export_runs e JOIN medallion.runs r ON r.run_id = e.run_id
           WHERE e.export = 'export.ev' AND r.pipeline = 'silver.ev'
             AND r.run_id = (SELECT max(run_id) FROM medallion.runs WHERE pipeline = 'silver.ev')},
	'a scheduled export sends the new run\'s rows');
usleep(2_500_000);
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'export.ev'}), $runs + 1,
	'scheduled exports with nothing to send record no run');

done_testing();
