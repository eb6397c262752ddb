# HTTP sources against a real HTTP server on 127.0.0.1 (test/net/httpd.py): creation checks
# (file:// refused, hosts outside medallion.http_allowed_hosts refused, EXECUTE and INSERT
# needed); pagination by a link in the body, by the Link header and by an offset parameter;
# a refetch lands nothing; a body that is not JSON is one DLQ row of the source; ndjson; the
# error classes (a slow server times out, 503 is transient, 404 is not, an oversized body,
# a TLS failure and a redirect to a host not allowed are refused); a cancel stops a download at once;
# secret headers are sent but readable only by the source's owner.
use strict;
use warnings;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;
use Time::HiRes qw(time usleep);

# ---- the HTTP server -------------------------------------------------------------------
my ($base, $port) = start_httpd();

my $node = medallion_node('http_source', conf => qq{
max_worker_processes = 16
log_min_messages = warning
medallion.http_allowed_hosts = '127.0.0.1'
});
my $db = 'postgres';

sub last_run
{
	my ($source, $cols) = @_;
	return sq(qq{SELECT $cols FROM medallion.runs WHERE pipeline = 'source.$source' ORDER BY run_id DESC LIMIT 1});
}
sub source
{
	my ($name, $path, $options) = @_;
	$options //= '{}';
	return sq(qq{SELECT medallion.create_http_source('bronze.ev', '$base$path', '$options', '$name')});
}

sq(q{CREATE EXTENSION medallion; SELECT medallion.create_bronze('ev', 'api')});

# ---- creation ---------------------------------------------------------------------------
like(sql_error(q{SELECT medallion.create_http_source('bronze.ev', 'file:///etc/passwd')}),
	qr/MD065|uses scheme "file"/, 'a file:// URL is refused');
like(sql_error(qq{SELECT medallion.create_http_source('bronze.ev', 'http://localhost:$port/items')}),
	qr/host "localhost" .* is not allowed/, 'a host outside medallion.http_allowed_hosts is refused');
like(sql_error(qq{SELECT medallion.create_http_source('bronze.ev', '$base/items', '{"nxt": "\$.next"}')}),
	qr/unrecognized option "nxt"/, 'an unknown option is refused');
sq(q{CREATE ROLE alice; CREATE ROLE bob});
like(sql_error(qq{SET ROLE alice; SELECT medallion.create_http_source('bronze.ev', '$base/items')}),
	qr/permission denied for function create_http_source/, 'EXECUTE is not granted to PUBLIC');
sq(q{GRANT EXECUTE ON FUNCTION medallion.create_http_source(regclass, text, jsonb, text) TO alice});
like(sql_error(qq{SET ROLE alice; SELECT medallion.create_http_source('bronze.ev', '$base/items')}),
	qr/permission denied for table bronze\.ev/, 'INSERT on the bronze table is needed too');
like(sql_error(q{SET ROLE alice; SET medallion.http_allowed_hosts = '*'}),
	qr/permission denied to set parameter/, 'only a superuser sets medallion.http_allowed_hosts');
is(sq(q{SELECT medallion.create_http_source('bronze.ev', '} . $base . q{/items')}), 'source.ev_1',
	'the default name is <bronze name>_<n>');
is(sq(q{SELECT medallion.create_http_source('bronze.ev', '} . $base . q{/items')}), 'source.ev_2',
	'and the next one gets the next number');
is(sq(q{SELECT layer || ' ' || (SELECT kind || ':' || pipeline FROM medallion.dependencies
        WHERE upstream = 'source.ev_1') FROM medallion.pipelines WHERE name = 'source.ev_1'}),
	'source feed:bronze.ev', 'a source is a pipeline of layer source, feeding its bronze table');

# ---- pagination ---------------------------------------------------------------------------
source('items', '/items?page=1', '{"records": "$.data", "next": "$.next"}');
sq(q{SELECT medallion.run('source.items')});
is(sq(q{SELECT count(*) || ' ' || count(DISTINCT _file_name) || ' ' || count(DISTINCT _batch_id)
        FROM bronze.ev WHERE _file_name LIKE '%/items%'}),
	'6 3 3', 'a link in the body: three pages, each its own batch named by its URL');
is(last_run('items', q{status || ' ' || rows_read || ' ' || rows_inserted || ' ' || rows_unchanged || ' ' || (detail->>'pages')}),
	'succeeded 6 6 0 3', 'the run counts six records read and landed over three pages');
is(sq(q{SELECT string_agg(_raw->>'id', ',' ORDER BY _raw->>'id') FROM bronze.ev WHERE _file_name LIKE '%/items%'}),
	'11,12,21,22,31,32', 'the records are the elements at "$.data"');

sq(q{SELECT medallion.run('source.items')});
is(last_run('items', q{status || ' ' || rows_read || ' ' || rows_inserted || ' ' || rows_unchanged}),
	'succeeded 6 0 6', 'a refetch of unchanged pages lands nothing: the records count as unchanged');
is(sq(q{SELECT count(*) FROM bronze.ev WHERE _file_name LIKE '%/items%'}), '6', 'bronze holds them once');

source('link', '/link?page=1', '{"next": "link_header"}');
sq(q{SELECT medallion.run('source.link')});
is(sq(q{SELECT count(*) || ' ' || count(DISTINCT _file_name) FROM bronze.ev WHERE _file_name LIKE '%/link%'}),
	'6 3', 'the Link header\'s rel="next": three pages');

source('off', '/offset', '{"records": "$.items", "next": {"offset": "offset"}}');
sq(q{SELECT medallion.run('source.off')});
is(sq(q{SELECT string_agg(_raw->>'id', ',' ORDER BY (_raw->>'id')::int) FROM bronze.ev WHERE _file_name LIKE '%/offset%'}),
	'1,2,3,4,5', 'an offset parameter: pages until an empty one');
is(last_run('off', q{rows_read || ' ' || (detail->>'pages')}), '5 4', 'four requests, the last one empty');

source('capped', '/items?page=1', '{"records": "$.data", "next": "$.next", "max_pages": 2}');
sq(q{SELECT medallion.run('source.capped')});
is(last_run('capped', q{(detail->>'pages') || ' ' || (detail->>'truncated')}), '2 true', 'max_pages bounds a run');

# ---- bodies that are not what they should be -----------------------------------------------
source('garbage', '/garbage');
sq(q{SELECT medallion.run('source.garbage')});
is(last_run('garbage', q{status || ' ' || rows_read || ' ' || rows_inserted || ' ' || rows_dlq}),
	'succeeded 1 0 1', 'a body that is not JSON: one record read, to the DLQ');
is(sq(q{SELECT pipeline || ' ' || source_table || ' ' || error_type || ' ' || original_payload
        FROM medallion.dlq WHERE pipeline = 'source.garbage'}),
	'source.garbage bronze.ev parse <html>not json</html>', 'the DLQ row is the source\'s, with the body as it came');
sq(q{SELECT medallion.run('source.garbage')});
is(sq(q{SELECT count(*) FROM medallion.dlq WHERE pipeline = 'source.garbage'}), '1',
	'fetching the same body again adds no DLQ row');

sq(q{SELECT medallion.create_bronze('sec', 'api', redact_keys => '{card}');
     SELECT medallion.create_http_source('bronze.sec', '} . $base . q{/garbage', '{}', 'sec_garbage');
     SELECT medallion.run('source.sec_garbage')});
is(sq(q{SELECT (original_payload IS NULL) || ' ' || original_length FROM medallion.dlq WHERE pipeline = 'source.sec_garbage'}),
	'true 21', 'for a bronze table that redacts, the DLQ row keeps no payload, only its length');

source('nd', '/ndjson', '{"format": "ndjson"}');
sq(q{SELECT medallion.run('source.nd')});
is(last_run('nd', q{rows_read || ' ' || rows_inserted || ' ' || rows_dlq}), '3 2 1',
	'ndjson: a broken line goes to the DLQ, the others land');

# ---- error classes -------------------------------------------------------------------------
source('slow', '/slow', '{"timeout": "1 second"}');
my $t0 = time;
sq(q{SELECT medallion.run('source.slow')});
ok(time - $t0 < 4, 'a slow server is given up on at the timeout');
is(last_run('slow', q{status || ' ' || error_class || ' ' || sqlstate}), 'failed transient 08006',
	'a timeout is a transient failure');

source('flaky', '/flaky?key=manual');
sq(q{SELECT medallion.run('source.flaky')});
like(last_run('flaky', q{status || ' ' || error_class || ' ' || sqlstate || ' ' || error_message}),
	qr/^failed transient 08000 HTTP status 503/, '503: a transient failed run, the status in the message');
sq(q{SELECT medallion.run('source.flaky')});
is(last_run('flaky', q{status || ' ' || rows_inserted}), 'succeeded 1', 'then a run succeeds');

source('missing', '/status?code=404');
sq(q{SELECT medallion.run('source.missing')});
like(last_run('missing', q{error_class || ' ' || sqlstate || ' ' || error_message}),
	qr/^infrastructure MD060 HTTP status 404/, '404 is not transient: its own SQLSTATE');

source('big', '/big?kb=2048');
source('bigz', '/bigz?kb=2048');
$node->append_conf('postgresql.conf', "medallion.http_max_response_size = '1MB'");
$node->reload;
sq(q{SELECT medallion.run('source.big'); SELECT medallion.run('source.bigz')});
is(last_run('big', q{status || ' ' || sqlstate}), 'failed MD064', 'a body over the size limit is refused');
is(last_run('bigz', q{status || ' ' || sqlstate}), 'failed MD064',
	'a compressed body is limited by its decoded size');
is(sq(q{SELECT count(*) FROM bronze.ev WHERE _file_name LIKE '%/big%'}), '0', 'nothing of them landed');
sq(q{SELECT medallion.run('source.ev_1')});
is(last_run('ev_1', 'status'), 'succeeded', 'the server stays up (the next source is served)');

source('redir', "/redirect?to=http://localhost:$port/items");
sq(q{SELECT medallion.run('source.redir')});
like(last_run('redir', q{sqlstate || ' ' || error_message}),
	qr/^MD063 redirect from .* refused: host "localhost"/, 'a redirect to a host not allowed is refused');
source('redir_file', "/redirect?to=file:///etc/passwd");
sq(q{SELECT medallion.run('source.redir_file')});
is(last_run('redir_file', 'sqlstate'), 'MD063', 'a redirect to file:// is refused');

sq(qq{SELECT medallion.create_http_source('bronze.ev', 'https://127.0.0.1:$port/items', '{}', 'tls')});
sq(q{SELECT medallion.run('source.tls')});
like(last_run('tls', q{error_class || ' ' || sqlstate || ' ' || error_message}), qr/^infrastructure MD062 TLS failure/,
	'a TLS failure (here: no TLS at all on the other side) is refused, not retried');

# ---- a cancel stops a download ----------------------------------------------------------
source('trickle', '/trickle');
my $bg = $node->background_psql($db, on_error_stop => 0);
$bg->query_until(qr/started/, q{\echo started
SELECT medallion.run('source.trickle');
});
wait_for(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%source.trickle%' AND pid <> pg_backend_pid()},
	'a pull is under way');
usleep(1_500_000);
$t0 = time;
sq(q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%source.trickle%' AND pid <> pg_backend_pid()});
wait_for(q{SELECT count(*) = 0 FROM pg_stat_activity WHERE query LIKE '%source.trickle%' AND state = 'active' AND pid <> pg_backend_pid()},
	'the cancelled pull ends');
ok(time - $t0 < 5, 'at once, not at the end of the download');
eval { $bg->quit; };
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'source.trickle'}), '0',
	'a cancel stops the run with its transaction');

# ---- two pulls of the same page at once: it lands once -------------------------------------
source('twin_a', '/slow');
source('twin_b', '/slow');
$bg = $node->background_psql($db, on_error_stop => 0);
$bg->query_until(qr/started/, q{\echo started
SELECT medallion.run('source.twin_a');
});
wait_for(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%source.twin_a%' AND state = 'active' AND pid <> pg_backend_pid()},
	'a pull of a slow page is under way');
sq(q{SELECT medallion.run('source.twin_b')});
$bg->quit;
is(sq(q{SELECT count(*) FROM bronze.ev WHERE _file_name LIKE '%/slow'}), '1',
	'two sources pulling the same page at once land it once');
is(sq(q{SELECT sum(rows_read) || ' ' || sum(rows_inserted) || ' ' || sum(rows_unchanged) FROM medallion.runs
        WHERE pipeline IN ('source.twin_a', 'source.twin_b') AND status = 'succeeded'}),
	'2 1 1', 'one counts it inserted, the other unchanged');

# ---- secret headers -------------------------------------------------------------------------
sq(q{GRANT INSERT ON bronze.ev TO alice; GRANT USAGE ON SCHEMA bronze TO alice});
sq(qq{SET ROLE alice; SELECT medallion.create_http_source('bronze.ev', '$base/echo',
      '{"headers": {"Authorization": "Bearer s3cret"}}', 'echo')});
sq(q{SET ROLE alice; SELECT medallion.run('source.echo')});
is(sq(q{SELECT _raw->>'authorization' FROM bronze.ev WHERE _file_name LIKE '%/echo'}), 'Bearer s3cret',
	'the headers are sent');
is(sq(q{SELECT count(*) FROM medallion.pipelines WHERE (options::text || coalesce(definition::text, '')) LIKE '%s3cret%'}),
	'0', 'they are not in medallion.pipelines, which anyone reads');
is(sq(q{SET ROLE bob; SELECT count(*) FROM medallion.http_sources}), '0', 'another role reads no secret');
is(sq(q{SET ROLE alice; SELECT headers->>'Authorization' FROM medallion.http_sources WHERE pipeline = 'source.echo'}),
	'Bearer s3cret', 'the source\'s owner reads its own');

# ---- alter_pipeline changes a source's options ------------------------------------------------
sq(q{SET ROLE alice; SELECT medallion.alter_pipeline('source.echo',
      '{"headers": {"Authorization": "Bearer n3w"}, "max_retries": 5, "timeout": "5 seconds"}')});
sq(q{SET ROLE alice; SELECT medallion.run('source.echo')});
is(sq(q{SELECT string_agg(_raw->>'authorization', ',' ORDER BY _ingested_at) FROM bronze.ev WHERE _file_name LIKE '%/echo'}),
	'Bearer s3cret,Bearer n3w', 'alter_pipeline replaces the secret headers');
is(sq(q{SELECT (options->>'max_retries') || ' ' || (definition->>'timeout') FROM medallion.pipelines WHERE name = 'source.echo'}),
	'5 5 seconds', 'a source takes the options of every pipeline and its own');
like(sql_error(qq{SET ROLE alice; SELECT medallion.alter_pipeline('source.echo', '{"url": "http://localhost:$port/echo"}')}),
	qr/host "localhost" .* is not allowed/, 'a new URL is checked against medallion.http_allowed_hosts');
like(sql_error(q{SET ROLE alice; SELECT medallion.alter_pipeline('source.echo', '{"format": "csv"}')}),
	qr/invalid value for option "format"/, 'and its options as at creation');
like(sql_error(q{SET ROLE bob; SELECT medallion.alter_pipeline('source.echo', '{"max_pages": 1}')}),
	qr/must be owner|permission denied/, 'only by its owner');

done_testing();
