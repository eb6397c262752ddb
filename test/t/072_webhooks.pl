# Webhook alerts against a real receiver on 127.0.0.1 (test/net/httpd.py): add_webhook is an
# administrator's (EXECUTE not granted to PUBLIC) and checks its URL like a source's; an
# alert raised (a scheduled source halted by a 404) is queued in medallion.alert_deliveries
# by the transaction that raised it and sent after commit by the delivery worker, as
# Slack-compatible JSON with the webhook's secret headers; a webhook whose filters do not
# match gets nothing; while the receiver is down the message is retried with backoff, and
# delivered once it is back; remove_webhook drops a webhook and its messages; DROP DATABASE
# takes a delivery worker down with the database's scheduler.
use strict;
use warnings;
use FindBin;
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;
use Time::HiRes qw(time usleep);

my ($base, $port) = start_httpd();

my $node = medallion_node('webhooks', conf => qq{
max_worker_processes = 16
log_min_messages = warning
medallion.http_allowed_hosts = '127.0.0.1'
});
my $db = 'postgres';

# What the receiver got: {received => [{body, content_type, token}], refused => n}.
sub received { return decode_json(HTTP::Tiny->new->get("$base/hook/received")->{content}); }
# hook('down'), hook('up'): the receiver refuses (503) or accepts messages.
sub hook { HTTP::Tiny->new->get("$base/hook/$_[0]"); }

sq(q{CREATE EXTENSION medallion; SELECT medallion.create_bronze('ev', 'api'); CREATE ROLE carol});

# ---- add_webhook --------------------------------------------------------------------------
like(sql_error(qq{SET ROLE carol; SELECT medallion.add_webhook('$base/hook')}),
	qr/permission denied for function add_webhook/, 'EXECUTE on add_webhook is not granted to PUBLIC');
like(sql_error(q{SELECT medallion.add_webhook('file:///tmp/x')}), qr/uses scheme "file"/, 'file:// is refused');
like(sql_error(qq{SELECT medallion.add_webhook('http://localhost:$port/hook')}), qr/is not allowed/,
	'a host outside medallion.http_allowed_hosts is refused');
like(sql_error(qq{SELECT medallion.add_webhook('$base/hook', '{"format": "xml"}')}), qr/invalid value for option "format"/,
	'an unknown format is refused');
like(sql_error(q{SET ROLE carol; SELECT count(*) FROM medallion.webhooks}), qr/permission denied for table webhooks/,
	'PUBLIC cannot read webhooks (their headers are secrets)');

my $hook = sq(qq{SELECT medallion.add_webhook('$base/hook',
                 '{"kinds": ["halted"], "pipelines": ["source.*"], "headers": {"X-Token": "t0k"}}')});
my $other = sq(qq{SELECT medallion.add_webhook('$base/hook', '{"pipelines": ["silver.*"], "format": "json"}')});

# ---- an alert raised is delivered after commit --------------------------------------------
sq(qq{SELECT medallion.create_http_source('bronze.ev', '$base/status?code=404', '{}', 'gone')});
sq(q{SELECT medallion.schedule('source.gone', '1 hour')});
wait_for(q{SELECT state = 'halted' FROM medallion.pipelines WHERE name = 'source.gone'}, 'the source halts');
is(sq(qq{SELECT count(*) || ' ' || min(event) || ' ' || min(kind) FROM medallion.alert_deliveries WHERE webhook_id = $hook}),
	'1 raised halted', 'the halted alert is queued for the matching webhook');
is(sq(qq{SELECT count(*) FROM medallion.alert_deliveries WHERE webhook_id = $other}), '0',
	'and not for a webhook whose pipelines do not match');
wait_for(qq{SELECT delivered_at IS NOT NULL FROM medallion.alert_deliveries WHERE webhook_id = $hook},
	'the delivery worker sends it');
my $got = received();
is(scalar @{ $got->{received} }, 1, 'the receiver got one message');
my $msg = $got->{received}[0];
my $payload = decode_json($msg->{body});
like($payload->{text}, qr/^\[medallion\] halted raised on source\.gone at \S+Z: infrastructure error, pipeline halted until resume\(\): HTTP status 404/,
	'Slack-compatible JSON: a "text" naming kind, pipeline, time and message');
is($msg->{content_type}, 'application/json', 'sent as application/json');
is($msg->{token}, 't0k', 'with the webhook\'s secret headers');
is(sq(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'medallion delivery worker'}), '0',
	'the delivery worker exits when nothing is due');

# ---- retried while the receiver is down --------------------------------------------------
hook('down');
# resume() resolves the halted alert: a "resolved" message
sq(q{SELECT medallion.unschedule('source.gone'); SELECT medallion.resume('source.gone')});
wait_for(qq{SELECT attempts >= 2 AND delivered_at IS NULL AND last_error LIKE 'HTTP status 503%'
            FROM medallion.alert_deliveries WHERE webhook_id = $hook AND event = 'resolved'},
	'while the receiver is down, the resolved message fails and is tried again');
is(sq(qq{SELECT next_attempt_at > now() FROM medallion.alert_deliveries WHERE webhook_id = $hook AND event = 'resolved'}),
	't', 'later, after a backoff');
ok(received()->{refused} >= 2, 'the receiver saw the attempts');
hook('up');
wait_for(qq{SELECT delivered_at IS NOT NULL FROM medallion.alert_deliveries WHERE webhook_id = $hook AND event = 'resolved'},
	'once the receiver is back the message is delivered');
$got = received();
is(scalar @{ $got->{received} }, 2, 'once');
like(decode_json($got->{received}[1]{body})->{text}, qr/halted resolved on source\.gone/, 'saying the alert is resolved');

# ---- remove_webhook --------------------------------------------------------------------------
sq(qq{SELECT medallion.remove_webhook($hook)});
is(sq(qq{SELECT count(*) FROM medallion.alert_deliveries WHERE webhook_id = $hook}), '0',
	'remove_webhook drops the webhook\'s messages');
like(sql_error(qq{SELECT medallion.remove_webhook($hook)}), qr/webhook $hook does not exist/,
	'removing it again is an error');

# ---- DROP DATABASE does not wait for a delivery in progress ------------------------------
sq(q{CREATE DATABASE hooked});
$node->safe_psql('hooked', qq{CREATE EXTENSION medallion; SELECT medallion.create_bronze('ev', 'api');
    SELECT medallion.add_webhook('$base/hook');
    SELECT medallion.create_http_source('bronze.ev', '$base/status?code=404', '{}', 'gone');
    SELECT medallion.schedule('source.gone', '1 hour')});
hook('slow');
wait_for(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion delivery worker' AND datname = 'hooked'},
	'a delivery to a slow receiver is under way');
my $t0 = time;
sq(q{DROP DATABASE hooked});
ok(time - $t0 < 4, 'DROP DATABASE stops the delivery worker with the scheduler, without waiting for it');

done_testing();
