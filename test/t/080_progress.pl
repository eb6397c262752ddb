# medallion.progress: a run in progress is visible from another session while it runs, with
# its pipeline, run id, pid, phase and the rows done so far (live, not at commit), for a manual
# run in a backend and a scheduled run in a worker; the slot is free once the run is over,
# whether it committed or its transaction aborted.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('progress', conf => qq{
max_worker_processes = 16
log_min_messages = warning
});
my $db = 'postgres';

# every row's expr sleeps public.delay seconds
sq(q{
CREATE EXTENSION medallion;
CREATE TABLE public.delay (s float8 NOT NULL);
INSERT INTO public.delay VALUES (0.2);
CREATE FUNCTION public.slow(v text) RETURNS text LANGUAGE sql
	AS $$ SELECT v FROM pg_sleep((SELECT s FROM public.delay)) $$;
SELECT medallion.create_bronze('pr', 'app');
SELECT medallion.create_silver('pr', 'bronze.pr',
	'{"id": {"type": "int", "required": true}, "v": {"type": "text", "expr": "public.slow(v)"}}',
	'{id}', NULL, '{"max_rows_per_run": 40}');
SELECT medallion.ingest('bronze.pr',
	(SELECT jsonb_agg(jsonb_build_object('id', i, 'v', 'v' || i)) FROM generate_series(1, 100) i));
});

is(sq(q{SELECT count(*) FROM medallion.progress}), '0', 'no run in progress: the view is empty');

# a manual run, in its own transaction
my $bg = $node->background_psql($db, on_error_stop => 0);
$bg->query_until(qr/started/, q{\echo started
BEGIN;
SELECT medallion.run('silver.pr');
});
wait_for(q{SELECT rows_done >= 3 FROM medallion.progress WHERE pipeline = 'silver.pr'},
	'another session sees the manual run\'s rows done grow while it runs');
my $row = sq(q{SELECT phase, rows_total, pid = (SELECT pid FROM pg_stat_activity
                                               WHERE query LIKE '%medallion.run(%' AND pid <> pg_backend_pid())
               FROM medallion.progress WHERE pipeline = 'silver.pr'});
is($row, 'merge|40|t', 'in phase merge, of 40 rows to do (the bound), with the backend\'s pid');
my $first = sq(q{SELECT rows_done FROM medallion.progress WHERE pipeline = 'silver.pr'});
wait_for(qq{SELECT rows_done > $first FROM medallion.progress WHERE pipeline = 'silver.pr'},
	'the count moves before the run commits');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.pr'}), '0',
	'while the run row itself is not committed yet');
wait_for(q{SELECT count(*) = 0 FROM medallion.progress}, 'the slot is free once the run is over');
$bg->query_safe('ROLLBACK');

# an aborted transaction frees the slot too
$bg->query_until(qr/started2/, q{\echo started2
BEGIN;
SELECT medallion.run('silver.pr');
});
wait_for(q{SELECT rows_done >= 1 FROM medallion.progress WHERE pipeline = 'silver.pr'}, 'a second run is under way');
sq(q{SELECT pg_cancel_backend(pid) FROM medallion.progress WHERE pipeline = 'silver.pr'});
wait_for(q{SELECT count(*) = 0 FROM medallion.progress}, 'a cancelled run leaves no slot behind');
$bg->quit;

# a scheduled run, in a worker
sq(q{SELECT medallion.schedule('silver.pr', '1 second')});
wait_for(q{SELECT count(*) = 1 FROM medallion.progress p JOIN pg_stat_activity a USING (pid)
           WHERE p.pipeline = 'silver.pr' AND a.backend_type = 'medallion run worker' AND p.rows_done > 0},
	'a scheduled run in a worker shows too');
my $run_id = sq(q{SELECT run_id FROM medallion.progress WHERE pipeline = 'silver.pr'});
is(sq(qq{SELECT status FROM medallion.runs WHERE run_id = $run_id}), 'running',
	'with the id of its running run row');
sq(q{UPDATE public.delay SET s = 0});
wait_for(q{SELECT count(*) = 100 FROM silver.pr}, 'the backlog drains');
wait_for(q{SELECT count(*) = 0 FROM medallion.progress}, 'and no slot is left');

done_testing();
