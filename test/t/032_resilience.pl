# Resilience of scheduled runs: a transient error is retried with a growing,
# jittered backoff, each attempt a runs row with its attempt number and error class; beyond
# max_retries the circuit breaker opens (state circuit_open, an alert row and a NOTIFY on
# medallion_alerts), and after breaker_cooldown a trial run closes it again (alert
# resolved).  A schema error halts the pipeline until resume().  A run stopped by its own
# time budget is recorded as over budget and alerts; a cancel is recorded as cancelled,
# never retried, never alerted; the caller's own statement_timeout is a cancel too.
# Freshness SLAs: a breach raises one alert, cleared once the pipeline is fresh again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;
use Time::HiRes qw(time);

my $node = medallion_node('resilience', conf => qq{
max_worker_processes = 16
log_min_messages = warning
});
my $db = 'postgres';

sq(q{
CREATE EXTENSION medallion;
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.create_bronze('fr', 'app');
CREATE TABLE public.delay (s float8 NOT NULL);
INSERT INTO public.delay VALUES (3);
CREATE FUNCTION public.slow(v text) RETURNS text LANGUAGE sql
	AS $$ SELECT v FROM pg_sleep((SELECT s FROM public.delay)) $$;
-- fails with a serialization failure (40001, transient) until silver.tr has 4 failed runs
CREATE FUNCTION public.flaky(v text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	IF (SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.tr' AND status = 'failed') < 4 THEN
		RAISE EXCEPTION 'could not serialize access (injected)' USING ERRCODE = '40001';
	END IF;
	RETURN v;
END $$;
CREATE FUNCTION public.fmt(v text) RETURNS text LANGUAGE sql AS $$ SELECT upper(v) $$;
SELECT medallion.create_silver('tr', 'bronze.ev', '{"id": "int", "v": {"type": "text", "expr": "public.flaky(v)"}}', '{id}');
SELECT medallion.create_silver('sc', 'bronze.ev', '{"id": "int", "v": {"type": "text", "expr": "public.fmt(v)"}}', '{id}');
SELECT medallion.create_silver('marker', 'bronze.ev', '{"id": "int", "v": "text"}', '{id}');
SELECT medallion.create_silver('bud', 'bronze.ev', '{"id": "int", "v": {"type": "text", "expr": "public.slow(v)"}}', '{id}');
SELECT medallion.create_silver('fr', 'bronze.fr', '{"id": "int"}', '{id}');
SELECT medallion.create_silver('fr2', 'bronze.fr', '{"id": "int"}', '{id}');
});

# ---- transient errors: retries, then the circuit breaker --------------------------------
my $listener = $node->background_psql($db);
$listener->query_safe('LISTEN medallion_alerts');

sq(q{SELECT medallion.alter_pipeline('silver.tr',
	'{"retry_base": "700 milliseconds", "max_retries": 3, "breaker_cooldown": "2 seconds"}')});
sq(q{SELECT medallion.schedule('silver.tr', 'on_change');
	SELECT medallion.ingest('bronze.ev', '[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]')});
wait_for(q{SELECT count(*) = 4 FROM medallion.runs WHERE pipeline = 'silver.tr' AND status = 'failed'},
	'the first attempt and max_retries (3) retries all fail');
wait_for(q{SELECT count(*) = 1 FROM medallion.runs WHERE pipeline = 'silver.tr' AND status = 'succeeded'},
	'after the cooldown a trial run succeeds');
is( sq(q{SELECT string_agg(format('%s:%s:%s:%s', attempt, status, error_class, sqlstate), ' ' ORDER BY run_id)
	     FROM medallion.runs WHERE pipeline = 'silver.tr' AND status = 'failed'}),
	'1:failed:transient:40001 2:failed:transient:40001 3:failed:transient:40001 4:failed:transient:40001',
	'each attempt is a runs row: attempt number, error class transient, SQLSTATE');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.tr' AND worker_pid IS NULL}),
	'0', 'all of them run by workers');

# The spacing: retry_base * 2^n, jittered by ±25%: gaps in [525, 875], [1050, 1750],
# [2100, 3500] ms (plus the run and the start of a worker): growing.
my @gaps = split /\n/, sq(q{
	SELECT round(1000 * extract(epoch FROM started_at - lag(started_at) OVER (ORDER BY run_id)))
	FROM medallion.runs WHERE pipeline = 'silver.tr' AND status = 'failed' ORDER BY run_id OFFSET 1});
note "gaps between attempts (ms): @gaps";
ok(@gaps == 3 && $gaps[0] < $gaps[1] && $gaps[1] < $gaps[2], 'the gaps between attempts grow');
ok(@gaps == 3 && $gaps[0] >= 525 && $gaps[1] >= 1050 && $gaps[2] >= 2100,
	'each gap is at least retry_base * 2^n less the jitter');
ok(@gaps == 3 && $gaps[0] < 2000 && $gaps[1] < 3000 && $gaps[2] < 5000, 'and not much more');

is( sq(q{SELECT round(extract(epoch FROM s.started_at - f.finished_at)) >= 2
	     FROM (SELECT max(finished_at) finished_at FROM medallion.runs WHERE pipeline = 'silver.tr' AND status = 'failed') f,
	          (SELECT started_at FROM medallion.runs WHERE pipeline = 'silver.tr' AND status = 'succeeded') s}),
	't', 'no run while the breaker is open: the trial waits for breaker_cooldown');
is( sq(q{SELECT state || '/' || consecutive_failures || '/' || retry_attempt || '/' || (retry_at IS NULL)
	     FROM medallion.pipelines WHERE name = 'silver.tr'}),
	'active/0/0/true', 'the successful trial closes the breaker and resets the counts');
is( sq(q{SELECT attempt FROM medallion.runs WHERE pipeline = 'silver.tr' AND status = 'succeeded'}),
	'5', 'the trial is attempt 5');
is(sq(q{SELECT string_agg(v, ',' ORDER BY id) FROM silver.tr}), 'a,b', 'and loads the rows');
is( sq(q{SELECT count(*) || '/' || count(resolved_at) FROM medallion.alerts
	     WHERE pipeline = 'silver.tr' AND kind = 'circuit_open'}),
	'1/1', 'the breaker raised one alert, resolved when it closed');
my $notes = $listener->query_safe('SELECT 1');
like($notes, qr/Asynchronous notification "medallion_alerts" with payload "\{[^\n]*"pipeline":\s*"silver\.tr"[^\n]*"kind":\s*"circuit_open"/,
	'the alert was sent as NOTIFY medallion_alerts with a JSON payload');
sq(q{SELECT medallion.unschedule('silver.tr')});

# ---- a schema error halts the pipeline until resume() ------------------------------------
sq(q{SELECT medallion.schedule('silver.sc', 'on_change'); SELECT medallion.schedule('silver.marker', 'on_change')});
sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 3, "v": "c"}')});
wait_for(q{SELECT count(*) = 3 FROM silver.sc}, 'silver.sc runs on change');
sq(q{DROP FUNCTION public.fmt(text)});
sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 4, "v": "d"}')});
wait_for(q{SELECT state = 'halted' FROM medallion.pipelines WHERE name = 'silver.sc'},
	'a schema error (the function its expr calls is gone) halts the pipeline');
is( sq(q{SELECT status || '/' || error_class || '/' || sqlstate FROM medallion.runs
	     WHERE pipeline = 'silver.sc' ORDER BY run_id DESC LIMIT 1}),
	'failed/schema/42883', 'the run is recorded failed, class schema');
is( sq(q{SELECT count(*) FROM medallion.alerts WHERE pipeline = 'silver.sc' AND kind = 'halted' AND resolved_at IS NULL}),
	'1', 'with an alert');
is(sq(q{SELECT retry_at IS NULL FROM medallion.pipelines WHERE name = 'silver.sc'}), 't', 'and no retry');
my $sc_runs = sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.sc'});
sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 5, "v": "e"}')});
wait_for(q{SELECT count(*) = 5 FROM silver.marker}, '(another on_change pipeline of the same bronze table ran)');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.sc'}), $sc_runs, 'a halted pipeline does not run');
my ($rc, $out, $err) = $node->psql($db, q{SELECT medallion.run('silver.sc')});
like($err, qr/pipeline "silver.sc" is halted.*HINT:.*resume/s, 'a manual run is refused, with a hint');
sq(q{CREATE FUNCTION public.fmt(v text) RETURNS text LANGUAGE sql AS $$ SELECT upper(v) $$;
	SELECT medallion.resume('silver.sc')});
wait_for(q{SELECT count(*) = 5 FROM silver.sc}, 'after resume() it catches up by itself');
is( sq(q{SELECT state || '/' || (SELECT count(resolved_at) FROM medallion.alerts WHERE pipeline = 'silver.sc' AND kind = 'halted')
	     FROM medallion.pipelines WHERE name = 'silver.sc'}),
	'active/1', 'active again, the halt alert resolved');
sq(q{SELECT medallion.unschedule('silver.sc'); SELECT medallion.unschedule('silver.marker')});

# ---- time budget vs cancel -----------------------------------------------------------------
sq(q{SELECT medallion.alter_pipeline('silver.bud', '{"time_budget": "500 milliseconds"}')});
my $start = time();
($rc, $out, $err) = $node->psql($db, q{SELECT medallion.run('silver.bud') > 0});
my $elapsed = time() - $start;
is($out, 't', 'a manual run over its time budget returns (the failure is recorded)');
like($err, qr/WARNING:.*exceeded its time budget of 500 milliseconds/, 'with a WARNING');
cmp_ok($elapsed, '<', 2.5, sprintf('the budget stopped it (%.2f s; the expr sleeps 3 s a row)', $elapsed));
is( sq(q{SELECT status || '/' || error_class || '/' || sqlstate FROM medallion.runs
	     WHERE pipeline = 'silver.bud' ORDER BY run_id DESC LIMIT 1}),
	'failed/over_budget/57014', 'recorded as over budget');
is( sq(q{SELECT count(*) FROM medallion.alerts WHERE pipeline = 'silver.bud' AND kind = 'over_budget' AND resolved_at IS NULL}),
	'1', 'with an alert');

sq(q{SELECT medallion.trigger('silver.bud')});
wait_for(q{SELECT count(*) = 2 FROM medallion.runs WHERE pipeline = 'silver.bud' AND status = 'failed'},
	'a scheduled run over its budget fails too');
is( sq(q{SELECT error_class || '/' || (worker_pid IS NOT NULL) FROM medallion.runs
	     WHERE pipeline = 'silver.bud' ORDER BY run_id DESC LIMIT 1}),
	'over_budget/true', 'recorded as over budget, by a worker');
is( sq(q{SELECT (retry_at IS NULL) || '/' || consecutive_failures || '/' || state FROM medallion.pipelines WHERE name = 'silver.bud'}),
	'true/2/active', 'not retried blindly; counted as failures');

# A cancel: recorded, not retried, not counted, no alert.
sq(q{SELECT medallion.alter_pipeline('silver.bud', '{"time_budget": null}'); SELECT medallion.trigger('silver.bud')});
wait_for(
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion run worker' AND wait_event = 'PgSleep'},
	'a scheduled run without a budget is sleeping');
sq(q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'medallion run worker'});
wait_for(q{SELECT count(*) = 3 FROM medallion.runs WHERE pipeline = 'silver.bud' AND status = 'failed'},
	'the cancelled run is recorded failed');
is( sq(q{SELECT error_class || '/' || sqlstate FROM medallion.runs WHERE pipeline = 'silver.bud' ORDER BY run_id DESC LIMIT 1}),
	'cancelled/57014', 'as cancelled');
is( sq(q{SELECT (retry_at IS NULL) || '/' || consecutive_failures || '/' || state FROM medallion.pipelines WHERE name = 'silver.bud'}),
	'true/2/active', 'a cancel is never retried, nor counted toward the breaker');
is(sq(q{SELECT count(*) FROM medallion.alerts WHERE pipeline = 'silver.bud' AND kind <> 'over_budget'}),
	'0', 'and raises no alert');

# The caller's statement_timeout is a cancel, not the pipeline's budget: it is raised.
sq(q{SELECT medallion.alter_pipeline('silver.bud', '{"time_budget": "10 seconds"}')});
my $runs = sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.bud'});
($rc, $out, $err) = $node->psql($db, q{SET statement_timeout = '500ms'; SELECT medallion.run('silver.bud')});
like($err, qr/ERROR:  canceling statement due to statement timeout/,
	'a manual run stopped by the session\'s statement_timeout raises the cancel');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.bud'}), $runs, 'nothing recorded');

# The budget is put away after a run: a later statement of the session is not cancelled.
sq(q{UPDATE public.delay SET s = 0});
sq(q{SELECT medallion.alter_pipeline('silver.bud', '{"time_budget": "1 second"}')});
($rc, $out, $err) = $node->psql($db, q{SELECT medallion.run('silver.bud') > 0; SELECT pg_sleep(1.5); SELECT 'alive'});
is($rc . '/' . ($out =~ /alive/ ? 'alive' : ''), '0/alive', 'the budget does not outlive the run') or diag $err;
is( sq(q{SELECT status FROM medallion.runs WHERE pipeline = 'silver.bud' ORDER BY run_id DESC LIMIT 1}),
	'succeeded', 'a run within its budget succeeds');

# ---- freshness SLAs --------------------------------------------------------------------------
sq(q{SELECT medallion.pause('silver.fr'); SELECT medallion.pause('silver.fr2');
	SELECT medallion.alter_pipeline('silver.fr', '{"freshness_sla": "1 second"}');
	SELECT medallion.alter_pipeline('silver.fr2', '{"freshness_sla": "1 second"}');
	SELECT medallion.ingest('bronze.fr', '[{"id": 1}, {"id": 2}]')});
is(sq(q{SELECT status FROM medallion.freshness WHERE pipeline = 'silver.fr'}), 'fresh', 'fresh within its SLA');
wait_for(q{SELECT count(*) = 2 FROM medallion.freshness WHERE pipeline IN ('silver.fr', 'silver.fr2') AND status = 'breached'},
	'unprocessed rows older than the SLA: breached');
is( sq(q{SELECT lag > interval '1 second' AND sla = interval '1 second' AND last_success_at IS NULL
	     FROM medallion.freshness WHERE pipeline = 'silver.fr'}),
	't', 'the view shows the lag, the SLA and the last success');
sq(q{SELECT medallion.trigger('silver.marker')});    # a run: the scheduler checks freshness after it
wait_for(q{SELECT count(*) = 2 FROM medallion.alerts WHERE kind = 'freshness' AND resolved_at IS NULL},
	'a breach raises an alert');
sq(q{SELECT medallion.resume('silver.fr2'); SELECT medallion.trigger('silver.fr2')});
wait_for(q{SELECT count(resolved_at) = 1 FROM medallion.alerts WHERE pipeline = 'silver.fr2' AND kind = 'freshness'},
	'fresh again (silver.fr2 ran): its alert is resolved');
is(sq(q{SELECT count(*) FROM medallion.alerts WHERE pipeline = 'silver.fr' AND kind = 'freshness'}),
	'1', 'a breach still going on at a later check raises no second alert');
sq(q{SELECT medallion.resume('silver.fr'); SELECT medallion.trigger('silver.fr')});
wait_for(q{SELECT count(resolved_at) = 1 FROM medallion.alerts WHERE pipeline = 'silver.fr' AND kind = 'freshness'},
	'the breach is cleared (resolved_at) once the pipeline is fresh again');
is( sq(q{SELECT status || '/' || lag || '/' || (last_success_at IS NOT NULL) FROM medallion.freshness WHERE pipeline = 'silver.fr'}),
	'fresh/00:00:00/true', 'caught up: lag 0, fresh');
is(sq(q{SELECT count(*) FROM medallion.alerts WHERE pipeline = 'silver.fr'}), '1', 'one alert in all');
$notes = $listener->query_safe('SELECT 1');
like($notes, qr/"kind":\s*"freshness"/, 'freshness alerts are notified too');

$listener->quit;
$node->stop;
done_testing();
