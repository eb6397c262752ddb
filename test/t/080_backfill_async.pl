# Asynchronous backfills (options.async): backfill() returns the run id at once; a background
# worker started by the scheduler processes the days in medallion.backfills one transaction
# each. Killed mid-way (kill -9, crash restart), the run stays 'running' and the next worker
# resumes at its first day not done: days done before the crash are not processed again, and
# silver ends equal to a plain-SQL dedup of bronze. Asking for the same backfill while it runs
# returns the same run.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('backfill_async', conf => qq{
max_worker_processes = 16
restart_after_crash = on
log_min_messages = warning
});

# Four ingestion days (today and the three premade ahead), ten keys each; every row's expr
# sleeps public.delay seconds, so that a day takes a while.
sq(q{
CREATE EXTENSION medallion;
CREATE TABLE public.delay (s float8 NOT NULL);
INSERT INTO public.delay VALUES (0);
CREATE FUNCTION public.slow(v text) RETURNS text LANGUAGE sql
	AS $$ SELECT upper(v) FROM pg_sleep((SELECT s FROM public.delay)) $$;
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.create_silver('ev', 'bronze.ev',
	'{"id": {"type": "int", "required": true}, "ver": "int", "v": {"type": "text", "expr": "public.slow(v)"}}',
	'{id}', 'ver');
SELECT medallion.ingest('bronze.ev',
	(SELECT jsonb_agg(jsonb_build_object('id', i, 'ver', 1, 'v', 'v' || i)) FROM generate_series(1, 40) i));
SET medallion.allow_bronze_changes = on;
UPDATE bronze.ev SET _ingested_at = _ingested_at + ((((_raw->>'id')::int - 1) / 10) || ' days')::interval;
RESET medallion.allow_bronze_changes;
SELECT medallion.run('silver.ev');
});
is(sq(q{SELECT count(*) FROM medallion.backfill_plan('silver.ev', current_date, current_date + 3) WHERE est_rows = 10}),
	'4', 'four days of ten rows');

# A new expression for history: v lower case; each row sleeps.
sq(q{
SELECT medallion.alter_contract('silver.ev', '{"v": {"type": "text", "expr": "lower(public.slow(v))"}}');
UPDATE public.delay SET s = 0.3;
});
my $run_id = sq(q{SELECT medallion.backfill('silver.ev', current_date, current_date + 3, options => '{"async": true}')});
like($run_id, qr/^\d+$/, 'an async backfill returns its run id at once');
is(sq(qq{SELECT status FROM medallion.runs WHERE run_id = $run_id}), 'running', 'running');
is(sq(qq{SELECT count(*) FROM medallion.backfills WHERE run_id = $run_id AND done_at IS NULL}), '4',
	'its four days are queued');
is(sq(q{SELECT medallion.backfill('silver.ev', current_date, current_date + 3, options => '{"async": true}')}),
	$run_id, 'asking again returns the same run');

wait_for(qq{SELECT count(*) = 1 FROM medallion.backfills WHERE run_id = $run_id AND done_at IS NOT NULL},
	'the worker commits its first day');
my $first_done = sq(qq{SELECT done_at FROM medallion.backfills WHERE run_id = $run_id AND done_at IS NOT NULL});
wait_for(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name LIKE 'medallion backfill %'
	       AND wait_event = 'PgSleep'},
	'and is under way in the next');
my $pid = sq(q{SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'medallion backfill %'});
ok(sq(qq{SELECT count(*) < 4 FROM medallion.backfills WHERE run_id = $run_id AND done_at IS NOT NULL}) eq 't',
	'not every day is done when it is killed');

kill 'KILL', $pid;
$node->poll_query_until('postgres', 'SELECT 1', '1');    # the server is back
wait_for(qq{SELECT status = 'succeeded' FROM medallion.runs WHERE run_id = $run_id},
	'after the crash restart a new worker finishes the backfill');
ok($node->log_contains("was terminated by signal 9"), 'the server did crash-restart');
is(sq(qq{SELECT done_at FROM medallion.backfills WHERE run_id = $run_id ORDER BY day LIMIT 1}), $first_done,
	'the day done before the crash was not processed again');
is(sq(qq{SELECT count(*) FROM medallion.backfills WHERE run_id = $run_id AND done_at IS NOT NULL}), '4',
	'every day is done');
is(sq(q{SELECT count(*) FROM silver.ev s JOIN bronze.ev b ON (b._raw->>'id')::int = s.id
	    WHERE s.v = lower(b._raw->>'v')}), '40',
	'history is recomputed under the new expression, every key once');
is(sq(q{SELECT count(*) FROM silver.ev}), '40', 'no loss, no duplicate');

# A finished backfill asked again runs again and changes nothing.
sq(q{UPDATE public.delay SET s = 0});
my $again = sq(q{SELECT medallion.backfill('silver.ev', current_date, current_date + 3, options => '{"async": true}')});
isnt($again, $run_id, 'a finished backfill asked again is a new run');
wait_for(qq{SELECT status = 'succeeded' FROM medallion.runs WHERE run_id = $again}, 'which finishes');
is(sq(q{SELECT count(*) FROM silver.ev s JOIN bronze.ev b ON (b._raw->>'id')::int = s.id
	    WHERE s.v = lower(b._raw->>'v')}), '40', 'and changes nothing');

$node->stop;
done_testing();
