# Crashes: kill -9 of a run worker mid-run, and of a backend mid-run; after
# the crash restart the worker's run is recorded failed (error_class 'crashed'), the next
# attempt succeeds by itself and silver equals a clean run's; an immediate-mode stop and a
# start: scheduling resumes by itself.  A run worker that is terminated (no crash restart)
# is marked failed by its scheduler at once.  The scheduler's housekeeping trims old
# history; it copes with no free background worker slot.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('crash', conf => qq{
max_worker_processes = 16
restart_after_crash = on
log_min_messages = warning
});
my $db = 'postgres';

# silver.ev: every row's expr sleeps public.delay seconds (0 = a fast run); silver.clean:
# the same contract without the sleep, run by hand, is what a clean run gives.
sq(q{
CREATE EXTENSION medallion;
CREATE TABLE public.delay (s float8 NOT NULL);
INSERT INTO public.delay VALUES (3);
CREATE FUNCTION public.slow(v text) RETURNS text LANGUAGE sql
	AS $$ SELECT v FROM pg_sleep((SELECT s FROM public.delay)) $$;
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.create_silver('ev', 'bronze.ev',
	'{"id": {"type": "int", "required": true}, "ver": "int", "v": {"type": "text", "expr": "public.slow(v)"}}',
	'{id}', 'ver');
SELECT medallion.create_silver('clean', 'bronze.ev',
	'{"id": {"type": "int", "required": true}, "ver": "int", "v": "text"}', '{id}', 'ver');
SELECT medallion.ingest('bronze.ev',
	(SELECT jsonb_agg(jsonb_build_object('id', i % 50, 'ver', i, 'v', 'v' || i)) FROM generate_series(1, 200) i));
SELECT medallion.schedule('silver.ev', '1 second');
});

my $worker_q = q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'medallion run worker'};
wait_for(
	q{SELECT count(*) = 1 FROM medallion.runs r JOIN pg_stat_activity a ON a.pid = r.worker_pid
	  WHERE r.pipeline = 'silver.ev' AND r.status = 'running' AND a.backend_type = 'medallion run worker'
	    AND a.wait_event = 'PgSleep'},
	'a scheduled run is under way in a run worker (sleeping in the expr)');
my $pid = sq(q{SELECT worker_pid FROM medallion.runs WHERE status = 'running'});
my $run_id = sq(q{SELECT run_id FROM medallion.runs WHERE status = 'running'});
is(sq($worker_q), $pid, 'runs.worker_pid is the run worker\'s pid');

# kill -9: the postmaster restarts everything; the run was committed 'running' first.
kill 'KILL', $pid;
$node->poll_query_until($db, 'SELECT 1', '1');    # the server is back
sq(q{UPDATE public.delay SET s = 0});
wait_for(qq{SELECT status = 'failed' AND error_class = 'crashed' AND finished_at IS NOT NULL
	        FROM medallion.runs WHERE run_id = $run_id},
	'after the crash restart the scheduler marks the killed worker\'s run failed (crashed)');
wait_for(qq{SELECT count(*) = 1 FROM medallion.runs
	        WHERE pipeline = 'silver.ev' AND status = 'succeeded' AND run_id > $run_id AND rows_read = 200},
	'the next attempt succeeds by itself and reads every row');
ok($node->log_contains("was terminated by signal 9"), 'the server did crash-restart');

sq(q{SELECT medallion.run('silver.clean')});
is( sq(q{SELECT count(*) FROM (SELECT id, ver, v FROM silver.ev EXCEPT SELECT id, ver, v FROM silver.clean
	                              UNION ALL
	                              SELECT id, ver, v FROM silver.clean EXCEPT SELECT id, ver, v FROM silver.ev) d}),
	'0', 'silver equals a clean run\'s');
is(sq(q{SELECT count(*) FROM silver.ev}), '50', 'one row per key');

# kill -9 of a backend in the middle of a manual run: its run row goes with its transaction.
sq(q{UPDATE public.delay SET s = 3; SELECT medallion.unschedule('silver.ev')});
sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 1, "ver": 1000, "v": "late"}')});
my $bg = $node->background_psql($db, on_error_stop => 0);
$bg->query_until(qr/started/, q{\echo started
SELECT medallion.run('silver.ev');
});
wait_for(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'SELECT medallion.run%' AND wait_event = 'PgSleep'},
	'a manual run is under way in a backend');
my $bpid = sq(q{SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT medallion.run%'});
kill 'KILL', $bpid;
eval { $bg->quit; };
$node->poll_query_until($db, 'SELECT 1', '1');
sq(q{UPDATE public.delay SET s = 0});
is(sq(q{SELECT count(*) FROM medallion.runs WHERE status = 'running'}), '0',
	'no run left running by the killed backend');
sq(q{SELECT medallion.schedule('silver.ev', '1 second')});
wait_for(q{SELECT v = 'late' FROM silver.ev WHERE id = 1}, 'scheduling resumes and the row is processed');

# Terminated (SIGTERM, no crash restart): the scheduler marks the run failed at once.
sq(q{UPDATE public.delay SET s = 3; SELECT medallion.unschedule('silver.ev')});
sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 2, "ver": 1000, "v": "term"}');
	SELECT medallion.trigger('silver.ev')});
wait_for(
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion run worker' AND wait_event = 'PgSleep'},
	'a triggered run worker is sleeping');
$run_id = sq(q{SELECT run_id FROM medallion.runs WHERE status = 'running'});
sq(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'medallion run worker'});
wait_for(qq{SELECT status = 'failed' AND error_class = 'crashed' FROM medallion.runs WHERE run_id = $run_id},
	'a terminated worker\'s run is marked failed by the running scheduler');
wait_for(q{SELECT consecutive_failures = 1 FROM medallion.pipelines WHERE name = 'silver.ev'},
	'and counts as a failure of the pipeline');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE run_id > } . $run_id), '0', 'which is not retried');
sq(q{UPDATE public.delay SET s = 0; SELECT medallion.schedule('silver.ev', '1 second')});
wait_for(q{SELECT v = 'term' FROM silver.ev WHERE id = 2}, 'the next tick processes the row');
is(sq(q{SELECT consecutive_failures FROM medallion.pipelines WHERE name = 'silver.ev'}),
	'0', 'a success resets the count');

# Immediate stop (no shutdown checkpoint) and start: scheduling resumes by itself.  History
# older than medallion.history_days (30) is trimmed by the scheduler's housekeeping, which
# runs at its start.
sq(q{
INSERT INTO medallion.runs (pipeline, status, started_at, finished_at)
VALUES ('silver.ev', 'succeeded', now() - interval '40 days', now() - interval '40 days'),
       ('silver.ev', 'succeeded', now() - interval '20 days', now() - interval '20 days');
INSERT INTO medallion.dlq (pipeline, error_message, error_type, reprocessed, reprocessed_at)
VALUES ('silver.ev', 'old', 'test', true, now() - interval '40 days'),
       ('silver.ev', 'recent', 'test', true, now() - interval '20 days'),
       ('silver.ev', 'pending', 'test', false, NULL);
});
$node->stop('immediate');
$node->start;
wait_for(q{SELECT count(*) = 0 FROM medallion.runs WHERE finished_at < now() - interval '30 days'},
	'the scheduler trims run history older than medallion.history_days');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE finished_at < now() - interval '10 days'}), '1', 'and keeps the rest');
is(sq(q{SELECT string_agg(error_message, ',' ORDER BY id) FROM medallion.dlq}), 'recent,pending',
	'and replayed DLQ rows older than that, not the others');
sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 3, "ver": 1000, "v": "after restart"}')});
wait_for(q{SELECT v = 'after restart' FROM silver.ev WHERE id = 3},
	'after an immediate stop and a start, scheduled runs go on by themselves');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE status = 'running'}), '0', 'no run left running');
sq(q{SELECT medallion.run('silver.clean')});
is( sq(q{SELECT count(*) FROM (SELECT id, ver, v FROM silver.ev EXCEPT SELECT id, ver, v FROM silver.clean
	                              UNION ALL
	                              SELECT id, ver, v FROM silver.clean EXCEPT SELECT id, ver, v FROM silver.ev) d}),
	'0', 'silver still equals a clean run\'s');

# No free background worker slot (max_worker_processes = 4: the launcher, the logical
# replication launcher, the scheduler and one more): the scheduler starts the runs one by one
# as slots free up, and says why it waits.
sq(q{SELECT medallion.create_silver('w' || i, 'bronze.ev', '{"id": "int", "v": "text"}', '{id}')
	FROM generate_series(1, 3) i});
$node->append_conf('postgresql.conf', "max_worker_processes = 4\n");
$node->restart;
sq(q{SELECT medallion.trigger('silver.w' || i) FROM generate_series(1, 3) i});
wait_for(q{SELECT count(*) = 3 FROM medallion.runs WHERE pipeline LIKE 'silver.w_' AND status = 'succeeded'},
	'with a single free worker slot, every triggered pipeline still runs');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline LIKE 'silver.w_' AND status <> 'succeeded'}), '0',
	'and nothing failed');
ok($node->log_contains('could not start a run worker .*: no free background worker slot'),
	'the server log says why runs wait');

$node->stop;
done_testing();
