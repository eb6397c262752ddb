# Scheduled HTTP sources (test/net/httpd.py on 127.0.0.1): an interval schedule pulls in run
# workers; a pull that lands nothing (the server answers 304 to the conditional request)
# records no run, only last_checked_at; 503 is retried by the scheduler and then succeeds;
# 429's Retry-After delays the retry beyond the backoff; a 404 halts the source with an
# alert; on_change is refused for a source.
use strict;
use warnings;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;
use Time::HiRes qw(usleep);

my ($base, $port) = start_httpd();

my $node = medallion_node('http_schedule', conf => qq{
max_worker_processes = 16
log_min_messages = warning
medallion.http_allowed_hosts = '127.0.0.1'
});
my $db = 'postgres';

sub source
{
	my ($name, $path, $options) = @_;
	$options //= '{}';
	return sq(qq{SELECT medallion.create_http_source('bronze.ev', '$base$path', '$options', '$name')});
}

sq(q{CREATE EXTENSION medallion; SELECT medallion.create_bronze('ev', 'api')});

# ---- an interval schedule; unchanged pulls record no run -----------------------------------
source('static', '/static');
my ($rc, $out, $err) = $node->psql($db, q{SELECT medallion.schedule('source.static', 'on_change')},
	extended_stderr => 1);
like($err, qr/cannot schedule pipeline "source.static" on_change/, 'on_change is refused for a source');
sq(q{SELECT medallion.schedule('source.static', '1 second')});
wait_for(q{SELECT count(*) = 2 FROM bronze.ev WHERE _file_name LIKE '%/static'}, 'a scheduled pull lands the page');
is(sq(q{SELECT count(*) || ' ' || min(rows_inserted) || ' ' || bool_and(worker_pid IS NOT NULL)
        FROM medallion.runs WHERE pipeline = 'source.static'}), '1 2 true', 'in a run worker, one run');
is(sq(q{SELECT etag FROM medallion.http_sources WHERE pipeline = 'source.static'}), '"v1"',
	'the response\'s ETag is kept for the next request');
my $t0 = sq(q{SELECT now()});
wait_for(qq{SELECT last_checked_at > '$t0'::timestamptz + interval '2 seconds'
            FROM medallion.pipelines WHERE name = 'source.static'},
	'later pulls go on (last_checked_at)');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'source.static'}), '1',
	'a pull that lands nothing (304 Not Modified) records no run');
sq(q{SELECT medallion.unschedule('source.static')});

# ---- 503: retried by the scheduler -------------------------------------------------------
source('flaky', '/flaky?key=scheduled');
sq(q{SELECT medallion.schedule('source.flaky', '1 hour')});
wait_for(q{SELECT count(*) = 1 FROM medallion.runs WHERE pipeline = 'source.flaky' AND status = 'succeeded'},
	'after a 503 the scheduler retries, and the pull succeeds');
is(sq(q{SELECT string_agg(status || ':' || coalesce(error_class, ''), ',' ORDER BY run_id)
        FROM medallion.runs WHERE pipeline = 'source.flaky'}),
	'failed:transient,succeeded:', 'each attempt is a run: a transient failure, then success');

# ---- 429 with Retry-After ------------------------------------------------------------------
source('limited', '/ratelimit?key=scheduled');
sq(q{SELECT medallion.schedule('source.limited', '1 hour')});
wait_for(q{SELECT count(*) = 1 FROM medallion.runs WHERE pipeline = 'source.limited' AND status = 'failed'},
	'a 429 fails the pull');
my $delay = sq(q{SELECT extract(epoch FROM p.retry_at - r.finished_at) >= 2.9
                 FROM medallion.pipelines p, medallion.runs r
                 WHERE p.name = 'source.limited' AND r.pipeline = p.name AND r.status = 'failed'});
is($delay, 't', 'the retry waits for Retry-After (3 s), beyond the backoff of about 1 s');
wait_for(q{SELECT count(*) = 1 FROM medallion.runs WHERE pipeline = 'source.limited' AND status = 'succeeded'},
	'then the retry succeeds');
is(sq(q{SELECT extract(epoch FROM s.started_at - f.finished_at) >= 2.9
        FROM medallion.runs f, medallion.runs s
        WHERE f.pipeline = 'source.limited' AND f.status = 'failed'
          AND s.pipeline = 'source.limited' AND s.status = 'succeeded'}),
	't', 'no sooner than Retry-After');

# ---- a client error halts a scheduled source --------------------------------------------
source('gone', '/status?code=410');
sq(q{SELECT medallion.schedule('source.gone', '1 second')});
wait_for(q{SELECT state = 'halted' FROM medallion.pipelines WHERE name = 'source.gone'},
	'410 halts the scheduled source');
is(sq(q{SELECT kind FROM medallion.alerts WHERE pipeline = 'source.gone' AND resolved_at IS NULL}), 'halted',
	'with an alert');
is(sq(q{SELECT count(*) || ' ' || min(sqlstate) FROM medallion.runs WHERE pipeline = 'source.gone'}), '1 MD060',
	'after one attempt: retrying would not help');

done_testing();
