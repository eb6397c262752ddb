# The background processes (launcher, schedulers, run workers), with medallion preloaded: the launcher
# starts a scheduler in a database once CREATE EXTENSION commits; interval and 'on_change'
# schedules run without manual calls, in run workers (runs.worker_pid); an empty check
# records no run row, only pipelines.last_checked_at; 'on_change' fires after ingest(),
# ingest_text(), ingest_file(), a plain INSERT into the bronze table and capture() of a
# source table; trigger() asks the scheduler; unschedule, pause and resume; a worker runs
# the pipeline as its (NOLOGIN) owner in READ COMMITTED; medallion.max_workers is
# honoured and a reload (SIGHUP) changes it; DROP DATABASE of a database with a scheduler
# succeeds at once, and so do CREATE DATABASE ... TEMPLATE and ALTER DATABASE ... RENAME;
# DROP EXTENSION stops the scheduler, CREATE EXTENSION brings it back; a standby idles until
# it is promoted.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;
use Time::HiRes qw(time usleep);

my $node = medallion_node('scheduler', allows_streaming => 1, conf => qq{
max_worker_processes = 16
log_min_messages = warning
});
my $db = 'postgres';

# The launcher runs; CREATE EXTENSION gets this database a scheduler (no setting needed).
wait_for(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion launcher'},
	'the launcher runs');
sq('CREATE EXTENSION medallion');
wait_for(
	q{SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE backend_type = 'medallion scheduler' AND datname = 'postgres'},
	'CREATE EXTENSION starts a scheduler in the database');

sq(q{
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.create_silver('ev', 'bronze.ev', '{"id": {"type": "int", "required": true}, "v": "text"}', '{id}');
SELECT medallion.create_bronze('other', 'app');
SELECT medallion.create_silver('other', 'bronze.other', '{"id": "int", "v": "text"}', '{id}');
});

# ---- interval --------------------------------------------------------------------------
sq(q{SELECT medallion.schedule('silver.ev', '1 second')});
is(sq(q{SELECT schedule || '/' || schedule_kind FROM medallion.pipelines WHERE name = 'silver.ev'}),
	'00:00:01/interval', 'an interval schedule is stored normalised, of kind interval');
sq(q{SELECT medallion.ingest('bronze.ev', '[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]')});
wait_for(q{SELECT count(*) = 2 FROM silver.ev}, 'an interval schedule runs the pipeline by itself');
is( sq(q{SELECT count(*) FROM medallion.runs
	    WHERE pipeline = 'silver.ev' AND status = 'succeeded' AND worker_pid IS NOT NULL AND rows_read = 2}),
	'1', 'the run was done by a run worker (worker_pid) and read both rows');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE status = 'running'}), '0', 'no run left running');

# Empty checks: last_checked_at moves on, no run row is added.
my $runs = sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.ev'});
my $t0 = sq(q{SELECT now()});
wait_for(
	qq{SELECT last_checked_at > '$t0'::timestamptz + interval '2 seconds'
	   FROM medallion.pipelines WHERE name = 'silver.ev'},
	'empty checks update pipelines.last_checked_at');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.ev'}),
	$runs, 'empty checks record no run row');

# unschedule stops it.  (Marker: an interval pipeline's checks show the scheduler working.)
sq(q{SELECT medallion.schedule('silver.other', '1 second')});
sq(q{SELECT medallion.unschedule('silver.ev')});
is(sq(q{SELECT coalesce(schedule, '') || coalesce(schedule_kind, '') FROM medallion.pipelines WHERE name = 'silver.ev'}),
	'', 'unschedule clears the schedule');
sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 3, "v": "c"}')});
$t0 = sq(q{SELECT now()});
wait_for(
	qq{SELECT last_checked_at > '$t0'::timestamptz + interval '2 seconds'
	   FROM medallion.pipelines WHERE name = 'silver.other'},
	'the scheduler keeps checking other pipelines');
is(sq(q{SELECT count(*) FROM silver.ev}), '2', 'an unscheduled pipeline does not run');

# trigger() asks the scheduler: a worker runs it.
sq(q{SELECT medallion.trigger('silver.ev')});
wait_for(q{SELECT count(*) = 3 FROM silver.ev}, 'trigger() runs the pipeline soon');
is( sq(q{SELECT worker_pid IS NOT NULL FROM medallion.runs WHERE pipeline = 'silver.ev' ORDER BY run_id DESC LIMIT 1}),
	't', 'through a run worker');
is(sq(q{SELECT trigger_requested FROM medallion.pipelines WHERE name = 'silver.ev'}),
	'f', 'the request is consumed');

# ---- on_change --------------------------------------------------------------------------
sq(q{SELECT medallion.unschedule('silver.other')});
sq(q{SELECT medallion.schedule('silver.ev', 'on_change')});
sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 4, "v": "d"}')});
wait_for(q{SELECT count(*) = 4 FROM silver.ev}, 'on_change: runs after ingest()');
sq(q{SELECT medallion.ingest_text('bronze.ev', E'{"id": 5, "v": "e"}\n{"id": 6, "v": "f"}')});
wait_for(q{SELECT count(*) = 6 FROM silver.ev}, 'on_change: runs after ingest_text()');
sq(q{INSERT INTO bronze.ev (_raw) VALUES ('{"id": 7, "v": "g"}')});
wait_for(q{SELECT count(*) = 7 FROM silver.ev}, 'on_change: runs after a plain INSERT into bronze');
my $file = $node->basedir . '/ev.ndjson';
open(my $fh, '>', $file) or die "could not write $file: $!";
print $fh qq{{"id": 71, "v": "file1"}\n{"id": 72, "v": "file2"}\n};
close($fh);
sq(qq{SELECT medallion.ingest_file('bronze.ev', '$file')});
wait_for(q{SELECT count(*) = 9 FROM silver.ev}, 'on_change: runs after ingest_file()');
# A burst in one transaction: one wake-up, the rows are visible once it commits.
sq(q{BEGIN;
	SELECT medallion.ingest('bronze.ev', '{"id": 8, "v": "h"}');
	INSERT INTO bronze.ev (_raw) VALUES ('{"id": 9, "v": "i"}');
	SELECT pg_sleep(0.5);
	COMMIT});
wait_for(q{SELECT count(*) = 11 FROM silver.ev}, 'on_change: a transaction\'s rows run after its commit');
is( sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.ev' AND worker_pid IS NULL}),
	'0', 'every run of silver.ev was a scheduled one');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE status <> 'succeeded'}), '0', 'all runs succeeded');

# capture() of a source table into bronze: on_change runs after its commits.
sq(q{
CREATE TABLE public.accounts (id int PRIMARY KEY, name text);
SELECT medallion.capture('public.accounts');
SELECT medallion.create_silver('accounts', 'bronze.accounts',
	'{"id": {"path": "data.id", "type": "int", "required": true}, "name": {"path": "data.name", "type": "text"}}', '{id}');
SELECT medallion.schedule('silver.accounts', 'on_change');
});
sq(q{INSERT INTO public.accounts VALUES (1, 'ann'), (2, 'bob')});
wait_for(q{SELECT count(*) = 2 FROM silver.accounts}, 'on_change: runs after a captured INSERT');
sq(q{UPDATE public.accounts SET name = 'bobby' WHERE id = 2});
wait_for(q{SELECT name = 'bobby' FROM silver.accounts WHERE id = 2}, 'and after a captured UPDATE');

# pause / resume
sq(q{SELECT medallion.pause('silver.ev')});
sq(q{SELECT medallion.ingest('bronze.ev', '{"id": 10, "v": "j"}')});
sq(q{INSERT INTO public.accounts VALUES (3, 'cy')});
wait_for(q{SELECT count(*) = 3 FROM silver.accounts},
	'the same wake-up runs the other on_change pipeline');
$t0 = sq(q{SELECT now()});
sq(q{SELECT medallion.schedule('silver.other', '1 second')});
wait_for(
	qq{SELECT last_checked_at > '$t0'::timestamptz + interval '1 second'
	   FROM medallion.pipelines WHERE name = 'silver.other'},
	'(the scheduler made passes since)');
is(sq(q{SELECT count(*) FROM silver.ev}), '11', 'a paused pipeline does not run');
sq(q{SELECT medallion.resume('silver.ev')});
wait_for(q{SELECT count(*) = 12 FROM silver.ev}, 'resume(): it runs again, catching up');
sq(q{SELECT medallion.unschedule('silver.other')});

# ---- a worker runs as the pipeline's owner, in READ COMMITTED ------------------------------
# The owner cannot log in (a worker connects as the bootstrap superuser and switches), and
# the database's default isolation is REPEATABLE READ, which a run refuses.
sq(q{
CREATE ROLE powner NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO powner;
ALTER DATABASE postgres SET default_transaction_isolation = 'repeatable read';
SET ROLE powner;
SELECT medallion.create_bronze('own', 'app');
SELECT medallion.create_silver('own', 'bronze.own',
	'{"id": "int", "who": {"path": "id", "type": "text", "expr": "current_user::text"},
	  "iso": {"path": "id", "type": "text", "expr": "current_setting(''transaction_isolation'')"}}', '{id}');
SELECT medallion.schedule('silver.own', 'on_change');
SELECT medallion.ingest('bronze.own', '{"id": 1}');
});
wait_for(q{SELECT count(*) = 1 FROM silver.own}, 'a pipeline of a NOLOGIN role runs on its schedule');
is(sq(q{SELECT who || '/' || iso FROM silver.own}), 'powner/read committed',
	'as its owner, in READ COMMITTED whatever default_transaction_isolation says');
sq(q{ALTER DATABASE postgres RESET default_transaction_isolation; SELECT medallion.unschedule('silver.own')});

# ---- medallion.max_workers, and a reload ------------------------------------------------
# Three slow pipelines (each run sleeps 1.5 s), all triggered at once.
sq(q{
CREATE FUNCTION public.slow(v text) RETURNS text LANGUAGE sql AS $$ SELECT v FROM pg_sleep(1.5) $$;
SELECT medallion.create_bronze('w', 'app');
SELECT medallion.create_silver('w' || i, 'bronze.w', '{"id": "int", "v": {"type": "text", "expr": "public.slow(v)"}}', '{id}')
FROM generate_series(1, 3) i;
ALTER SYSTEM SET medallion.max_workers = 1;
SELECT pg_reload_conf();
});
wait_for(q{SELECT current_setting('medallion.max_workers') = '1'}, 'max_workers = 1 after a reload');

# Samples of pg_stat_activity while the runs go on: the most run workers seen at once.
sub max_concurrent_workers
{
	my ($until) = @_;
	my $max = 0;
	my $deadline = time() + 60;
	while (time() < $deadline)
	{
		my ($n, $done) = split /\|/, sq(qq{
			SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'medallion run worker'),
			       ($until)});
		$max = $n if $n > $max;
		last if $done eq 't';
		usleep(100_000);
	}
	return $max;
}

sq(q{SELECT medallion.ingest('bronze.w', '{"id": 1, "v": "x"}');
	SELECT medallion.trigger('silver.w' || i) FROM generate_series(1, 3) i});
my $max = max_concurrent_workers(
	q{(SELECT count(*) = 3 FROM medallion.runs WHERE pipeline LIKE 'silver.w_' AND status = 'succeeded')});
is($max, 1, 'with max_workers = 1, never more than one run worker at once');
is( sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline LIKE 'silver.w_' AND status = 'succeeded'}),
	'3', 'the three runs all happened, one after the other');
is( sq(q{SELECT bool_and(started_at >= prev_finished)
	    FROM (SELECT started_at, lag(finished_at) OVER (ORDER BY started_at) AS prev_finished
	          FROM medallion.runs WHERE pipeline LIKE 'silver.w_') r
	    WHERE prev_finished IS NOT NULL}),
	't', 'their times do not overlap');

sq(q{ALTER SYSTEM SET medallion.max_workers = 4; SELECT pg_reload_conf()});
wait_for(q{SELECT current_setting('medallion.max_workers') = '4'}, 'max_workers = 4 after a reload');
sq(q{SELECT medallion.ingest('bronze.w', '{"id": 2, "v": "y"}');
	SELECT medallion.trigger('silver.w' || i) FROM generate_series(1, 3) i});
$max = max_concurrent_workers(
	q{(SELECT count(*) = 6 FROM medallion.runs WHERE pipeline LIKE 'silver.w_' AND status = 'succeeded')});
cmp_ok($max, '>', 1, "after the reload (SIGHUP) runs go in parallel ($max at once)");

# ---- DROP DATABASE / CREATE DATABASE ... TEMPLATE ------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE d1');
$node->safe_psql('d1', q{CREATE EXTENSION medallion;
	SELECT medallion.create_bronze('e', 'app');
	SELECT medallion.create_silver('e', 'bronze.e', '{"id": "int"}', '{id}');
	SELECT medallion.schedule('silver.e', '1 second')});
wait_for(
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion scheduler' AND datname = 'd1'},
	'd1 has a scheduler');
my $start = time();
my ($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE d1');
my $elapsed = time() - $start;
is($rc, 0, 'DROP DATABASE of a database with a scheduler succeeds') or diag $err;
cmp_ok($elapsed, '<', 3, sprintf('at once (%.2f s)', $elapsed));

$node->safe_psql('postgres', 'CREATE DATABASE tpl');
$node->safe_psql('tpl', q{CREATE EXTENSION medallion;
	SELECT medallion.create_bronze('e', 'app');
	SELECT medallion.create_silver('e', 'bronze.e', '{"id": "int"}', '{id}');
	SELECT medallion.schedule('silver.e', '1 second')});
wait_for(
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion scheduler' AND datname = 'tpl'},
	'tpl has a scheduler');
$start = time();
($rc, $out, $err) = $node->psql('postgres', 'CREATE DATABASE copy1 TEMPLATE tpl');
$elapsed = time() - $start;
is($rc, 0, 'CREATE DATABASE ... TEMPLATE of a database with a scheduler succeeds') or diag $err;
cmp_ok($elapsed, '<', 3, sprintf('at once (%.2f s)', $elapsed));
wait_for(
	q{SELECT count(*) = 2 FROM pg_stat_activity
	  WHERE backend_type = 'medallion scheduler' AND datname IN ('tpl', 'copy1')},
	'the template gets its scheduler back, and the copy gets one');
($rc, $out, $err) = $node->psql('postgres', 'ALTER DATABASE tpl RENAME TO tpl2');
is($rc, 0, 'ALTER DATABASE ... RENAME of a database with a scheduler succeeds') or diag $err;
wait_for(
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion scheduler' AND datname = 'tpl2'},
	'and it gets its scheduler back');
$node->safe_psql('copy1', q{SELECT medallion.ingest('bronze.e', '{"id": 1}')});
ok($node->poll_query_until('copy1', 'SELECT count(*) = 1 FROM silver.e'),
	'the copy\'s pipelines run on their schedule');

# DROP EXTENSION: the scheduler leaves; CREATE EXTENSION again: it comes back.
$node->safe_psql('copy1', q{DROP TABLE silver.e, bronze.e CASCADE; DROP EXTENSION medallion});
wait_for(
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'medallion scheduler' AND datname = 'copy1'},
	'DROP EXTENSION: the scheduler exits');
$node->safe_psql('copy1', 'CREATE EXTENSION medallion');
wait_for(
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion scheduler' AND datname = 'copy1'},
	'CREATE EXTENSION again: a scheduler again');

# A standby: no medallion process until promotion, then the schedulers start.
$node->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'b1', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{SELECT pg_is_in_recovery()}), 't', 'a standby runs');
is( $standby->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'medallion%'}),
	'0', 'on a standby medallion idles: no launcher, no scheduler');
$standby->promote;
ok( $standby->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion scheduler' AND datname = 'postgres'}),
	'once promoted, the launcher starts the schedulers');
$standby->safe_psql('postgres', q{SELECT medallion.ingest('bronze.ev', '{"id": 100, "v": "promoted"}')});
ok($standby->poll_query_until('postgres', q{SELECT count(*) = 1 FROM silver.ev WHERE id = 100}),
	'and on_change pipelines run there');
$standby->stop;

ok(!$node->log_contains('TRAP:|terminated by signal|server process .* was terminated'),
	'no crash in the server log');
$node->stop;
done_testing();
