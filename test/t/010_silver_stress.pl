# Stress test of silver runs under concurrent, out-of-order ingestion
# (the snapshot watermark loses and repeats nothing).
#
# For LOAD_SECONDS, 8 ingesters land batches in bronze.st in many transactions (random keys
# from a small key space, random versions so that older versions arrive late, ~1% bad rows,
# some ingests inside subtransactions that commit or roll back, some transactions rolled
# back, and a random delay before COMMIT, sometimes a long one) while two runner loops run
# the silver pipelines:
#   - runner A: medallion.run('silver.st') in short transactions, and a naive pipeline
#     (plain SQL, a max(_seq) watermark) in the same loop;
#   - runner B: run('silver.st', wait => false) or run('silver.st') held open for a moment
#     before COMMIT (so runner A waits on it), sometimes rolled back; run('silver.stb')
#     (the same contract, bounded: max_rows_per_run); and now and then replay_dlq();
#   - session C: ingests, runs silver.st or silver.stb, and ingests again in one
#     transaction (sometimes rolled back), so a run's own transaction adds rows after it.
# Then one last batch with a bad row (so the final strict runs have a DLQ row to write), the
# final runs (silver.stb until its bounded window is drained), and the checks:
#   - silver equals the dedup computed by plain SQL over bronze (per key, the valid row with
#     the greatest (ver, _seq)), for both pipelines;
#   - the DLQ holds exactly the bad bronze rows, each once, none reprocessed;
#   - sum(rows_read) of the committed incremental runs = bronze rows (nothing read twice,
#     nothing missed), sum(rows_inserted) = silver rows, sum(rows_dlq) = DLQ rows;
#   - every run's counts add up (read = inserted + updated + unchanged + dlq + quarantined
#     + dropped, none negative), no run failed;
#   - and the test has teeth: the naive max(_seq) pipeline, under the same load, never saw
#     some bronze rows (and has wrong keys).  The 5% of transactions that wait 0.5-2 s
#     before COMMIT (spanning dozens of runs) are what make it miss thousands (measured on
#     2 cores: ~4,000-5,000 of ~32,000-35,000 rows, 20-30 of the 200 keys wrong), so this
#     check does not depend on luck.
#
# The load is server-side (procedures with COMMIT inside, one psql per session), so its
# duration is bounded by a deadline and the driver needs no sleeps: it starts the sessions
# and waits for them to end.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode qw(medallion_node);

my $LOAD_SECONDS = 32;
my $INGESTERS = 8;
my $KEYS = 200;    # small key space: many duplicate keys

my $node = medallion_node('silver_stress', workers => 16, quiet => 1, conf => qq{
max_connections = 40
log_statement = none
});

$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION medallion;
SELECT medallion.create_bronze('st', 'stress');
SELECT medallion.create_silver('st', 'bronze.st',
	'{"id": {"type": "int", "required": true}, "ver": {"type": "int", "required": true}, "v": "text"}',
	'{id}', 'ver');
SELECT medallion.create_silver('stb', 'bronze.st',
	'{"id": {"type": "int", "required": true}, "ver": {"type": "int", "required": true}, "v": "text"}',
	'{id}', 'ver', '{"max_rows_per_run": 200}');

-- A row is valid when its id is an integer (the generator's bad rows have id "x..." or
-- none; ver is always an integer).
CREATE FUNCTION public.valid(raw jsonb) RETURNS boolean IMMUTABLE LANGUAGE sql
AS \$\$ SELECT coalesce(raw->>'id' ~ '^-?[0-9]+\$', false) \$\$;

-- The naive pipeline: a max(_seq) watermark, INSERT ... ON CONFLICT newest-wins.
CREATE TABLE public.naive_silver (id int PRIMARY KEY, ver int NOT NULL, v text, src_seq bigint NOT NULL);
CREATE TABLE public.naive_seen (seq bigint PRIMARY KEY);
CREATE TABLE public.naive_state (max_seq bigint NOT NULL);
INSERT INTO public.naive_state VALUES (0);
CREATE PROCEDURE public.naive_step() LANGUAGE sql AS \$\$
WITH w AS (
	SELECT _seq, _raw FROM bronze.st WHERE _seq > (SELECT max_seq FROM public.naive_state)
), seen AS (
	INSERT INTO public.naive_seen SELECT _seq FROM w
), up AS (
	INSERT INTO public.naive_silver AS t (id, ver, v, src_seq)
	SELECT DISTINCT ON ((_raw->>'id')::int) (_raw->>'id')::int, (_raw->>'ver')::int, _raw->>'v', _seq
	  FROM w WHERE public.valid(_raw)
	 ORDER BY (_raw->>'id')::int, (_raw->>'ver')::int DESC, _seq DESC
	ON CONFLICT (id) DO UPDATE SET ver = EXCLUDED.ver, v = EXCLUDED.v, src_seq = EXCLUDED.src_seq
	 WHERE (EXCLUDED.ver, EXCLUDED.src_seq) > (t.ver, t.src_seq)
)
UPDATE public.naive_state SET max_seq = coalesce((SELECT max(_seq) FROM w), max_seq);
\$\$;

-- A batch of 1-10 rows: random keys and versions, ~1% bad rows.
CREATE FUNCTION public.stress_batch(worker int, txn int, b int, nkeys int) RETURNS jsonb
LANGUAGE sql VOLATILE AS \$\$
SELECT jsonb_agg(CASE
	WHEN random() >= 0.01 THEN
		jsonb_build_object('id', floor(random() * nkeys)::int,
		                   'ver', floor(random() * 50)::int,
		                   'v', format('w%s t%s b%s r%s', worker, txn, b, g))
	WHEN random() < 0.5 THEN   -- bad: id does not cast to int
		jsonb_build_object('id', format('x%s', g), 'ver', 1, 'v', 'bad cast')
	ELSE                        -- bad: required id missing
		jsonb_build_object('ver', 1, 'v', 'no id')
	END)
  FROM generate_series(1, 1 + floor(random() * 10)::int) g
\$\$;

-- One ingester: transactions of 1-3 batches of 1-10 rows until the deadline.
CREATE PROCEDURE public.stress_ingest(worker int, deadline timestamptz, nkeys int)
LANGUAGE plpgsql AS \$\$
DECLARE
	txn int := 0;
	batch jsonb;
	b int;
	dice float8;
BEGIN
	WHILE clock_timestamp() < deadline LOOP
		txn := txn + 1;
		-- Sometimes take the xid first and dawdle: this transaction's rows then get a
		-- larger _seq than rows of transactions with larger xids.
		IF random() < 0.1 THEN
			PERFORM pg_current_xact_id();
			PERFORM pg_sleep(random() * 0.05);
		END IF;
		FOR b IN 1 .. 1 + floor(random() * 3)::int LOOP
			batch := public.stress_batch(worker, txn, b, nkeys);
			dice := random();
			IF dice < 0.05 THEN
				-- in a subtransaction that rolls back: these rows never land
				BEGIN
					PERFORM medallion.ingest('bronze.st', batch);
					RAISE EXCEPTION 'roll back this batch' USING ERRCODE = 'MS001';
				EXCEPTION WHEN SQLSTATE 'MS001' THEN
					NULL;
				END;
			ELSIF dice < 0.15 THEN
				-- in a subtransaction that is released: the rows' xmin is the
				-- subtransaction's xid, their _xid the top-level one
				BEGIN
					PERFORM medallion.ingest('bronze.st', batch);
				EXCEPTION WHEN division_by_zero THEN
					NULL;
				END;
			ELSE
				PERFORM medallion.ingest('bronze.st', batch);
			END IF;
		END LOOP;
		-- Commit delay: mostly short, sometimes long enough to span many runs (this is
		-- what makes the naive pipeline miss rows: it passes their _seq while they are
		-- still invisible).
		IF random() < 0.05 THEN
			PERFORM pg_sleep(0.5 + random() * 1.5);
		ELSE
			PERFORM pg_sleep(random() * 0.03);
		END IF;
		IF random() < 0.03 THEN
			ROLLBACK;
		ELSE
			COMMIT;
		END IF;
	END LOOP;
END
\$\$;

-- Session C: ingest, run, ingest again, in one transaction (run() runs in its caller's
-- transaction: the rows landed after the run have the xid the run saw).
CREATE PROCEDURE public.stress_ingest_and_run(worker int, deadline timestamptz, nkeys int)
LANGUAGE plpgsql AS \$\$
DECLARE
	txn int := 0;
BEGIN
	WHILE clock_timestamp() < deadline LOOP
		txn := txn + 1;
		PERFORM medallion.ingest('bronze.st', public.stress_batch(worker, txn, 1, nkeys));
		IF random() < 0.5 THEN
			PERFORM medallion.run('silver.st');
		ELSE
			PERFORM medallion.run('silver.stb');
		END IF;
		PERFORM medallion.ingest('bronze.st', public.stress_batch(worker, txn, 2, nkeys));
		PERFORM pg_sleep(random() * 0.03);
		IF random() < 0.1 THEN
			ROLLBACK;
		ELSE
			COMMIT;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
END
\$\$;

CREATE PROCEDURE public.stress_runner_a(deadline timestamptz)
LANGUAGE plpgsql AS \$\$
BEGIN
	WHILE clock_timestamp() < deadline LOOP
		PERFORM medallion.run('silver.st');
		COMMIT;
		CALL public.naive_step();
		COMMIT;
		PERFORM pg_sleep(0.005);
	END LOOP;
END
\$\$;

CREATE PROCEDURE public.stress_runner_b(deadline timestamptz)
LANGUAGE plpgsql AS \$\$
DECLARE
	i int := 0;
BEGIN
	WHILE clock_timestamp() < deadline LOOP
		i := i + 1;
		IF random() < 0.4 THEN
			PERFORM medallion.run('silver.st', wait => false);   -- skipped while A runs
			COMMIT;
		ELSE
			PERFORM medallion.run('silver.st');
			PERFORM pg_sleep(random() * 0.05);   -- hold the pipeline's lock: A waits
			IF random() < 0.1 THEN
				ROLLBACK;                        -- the run's work and watermark go
			ELSE
				COMMIT;
			END IF;
		END IF;
		PERFORM medallion.run('silver.stb');
		COMMIT;
		PERFORM medallion.run('silver.stb');
		COMMIT;
		IF i % 20 = 0 THEN
			PERFORM medallion.replay_dlq('silver.st');   -- the bad rows stay bad
			COMMIT;
		END IF;
		PERFORM pg_sleep(0.005);
	END LOOP;
END
\$\$;
});

# ---- the load -------------------------------------------------------------------------
my $deadline = $node->safe_psql('postgres',
	"SELECT (clock_timestamp() + interval '$LOAD_SECONDS seconds')::text");
note "load until $deadline";

my @sessions;
sub start_session
{
	my ($name, $sql) = @_;
	# (no NOTICE per skipped run)
	local $ENV{PGOPTIONS} = '-c client_min_messages=warning';
	my %s = (name => $name, out => '', err => '');
	$s{h} = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
		'<', \undef, '>', \$s{out}, '2>', \$s{err},
		IPC::Run::timeout($LOAD_SECONDS + $PostgreSQL::Test::Utils::timeout_default));
	push @sessions, \%s;
}
start_session("ingester $_", "CALL public.stress_ingest($_, '$deadline', $KEYS)")
  for 1 .. $INGESTERS;
start_session('runner A', "CALL public.stress_runner_a('$deadline')");
start_session('session C', "CALL public.stress_ingest_and_run(99, '$deadline', $KEYS)");
start_session('runner B', "CALL public.stress_runner_b('$deadline')");

# All of them are at work at once.
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = $INGESTERS + 3 FROM pg_stat_activity WHERE query LIKE 'CALL public.stress_%'"),
	'all ingesters, runners and session C are running');

for my $s (@sessions)
{
	my $ok = eval { $s->{h}->finish; 1 };
	my $rc = $ok ? $s->{h}->result(0) : -1;
	is($rc, 0, "$s->{name} ended cleanly");
	diag "$s->{name}: " . ($@ || '') . $s->{err} if $rc != 0;
	# A failed run is reported as a WARNING (and recorded; checked below).
	note "$s->{name} said: $s->{err}" if $s->{err} ne '';
}

# ---- final runs ------------------------------------------------------------------------
# A last batch with a bad row, so that the final (strict) runs write a DLQ row for sure.
$node->safe_psql('postgres',
	q{SELECT medallion.ingest('bronze.st', '[{"id": 1, "ver": 99, "v": "last"}, {"id": "x", "ver": 99, "v": "last bad"}]')});
$node->safe_psql('postgres', "SELECT medallion.run('silver.st', strict => true)");
$node->safe_psql('postgres', 'CALL public.naive_step()');
# The bounded pipeline drains its window max_rows_per_run rows at a time.
$node->safe_psql(
	'postgres', q{
DO $$
BEGIN
	FOR i IN 1 .. 1000 LOOP
		PERFORM medallion.run('silver.stb', strict => true);
		IF (SELECT target_snapshot IS NULL FROM medallion.watermarks WHERE pipeline = 'silver.stb') THEN
			RETURN;
		END IF;
	END LOOP;
	RAISE EXCEPTION 'silver.stb did not drain its window in 1000 runs';
END $$;
SELECT medallion.run('silver.stb', strict => true);
});

# ---- what happened ---------------------------------------------------------------------
my %n = split /[|\n]/, $node->safe_psql(
	'postgres', q{
SELECT 'bronze', count(*) FROM bronze.st
UNION ALL SELECT 'bad', count(*) FROM bronze.st WHERE NOT public.valid(_raw)
UNION ALL SELECT 'xacts', count(DISTINCT _xid) FROM bronze.st
UNION ALL SELECT 'keys', count(DISTINCT _raw->>'id') FROM bronze.st WHERE public.valid(_raw)
UNION ALL SELECT 'late_older', count(*) FROM (
	SELECT (_raw->>'ver')::int AS ver,
	       max((_raw->>'ver')::int) OVER (PARTITION BY _raw->>'id' ORDER BY _seq
	                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
	  FROM bronze.st WHERE public.valid(_raw)) x WHERE ver < before
UNION ALL SELECT 'runs_st', count(*) FROM medallion.runs WHERE pipeline = 'silver.st' AND kind = 'incremental' AND status = 'succeeded'
UNION ALL SELECT 'runs_st_nonempty', count(*) FROM medallion.runs WHERE pipeline = 'silver.st' AND kind = 'incremental' AND rows_read > 0
UNION ALL SELECT 'skipped_st', count(*) FROM medallion.runs WHERE pipeline = 'silver.st' AND status = 'skipped'
UNION ALL SELECT 'replays', count(*) FROM medallion.runs WHERE pipeline = 'silver.st' AND kind = 'replay'
UNION ALL SELECT 'runs_stb', count(*) FROM medallion.runs WHERE pipeline = 'silver.stb' AND status = 'succeeded'
UNION ALL SELECT 'max_read_st', max(rows_read) FROM medallion.runs WHERE pipeline = 'silver.st' AND kind = 'incremental'
UNION ALL SELECT 'max_read_stb', max(rows_read) FROM medallion.runs WHERE pipeline = 'silver.stb'
UNION ALL SELECT 'naive_missed', count(*) FROM bronze.st b WHERE NOT EXISTS (SELECT 1 FROM public.naive_seen s WHERE s.seq = b._seq)
});
note join ', ', map { "$_=$n{$_}" } sort keys %n;

cmp_ok($n{bronze}, '>', 5000, 'the load landed many bronze rows');
cmp_ok($n{bad}, '>', 0, 'the load landed bad rows');
cmp_ok($n{late_older}, '>', 0, 'older versions of keys landed after newer ones');
cmp_ok($n{runs_st_nonempty}, '>', 100, 'silver.st ran many non-empty runs during the load');
cmp_ok($n{skipped_st}, '>', 0, 'some run(wait => false) found a run in progress and skipped');
cmp_ok($n{replays}, '>', 0, 'replay_dlq ran during the load');
cmp_ok($n{max_read_stb}, '<=', 200, 'silver.stb never read more than max_rows_per_run');

# ---- correctness -----------------------------------------------------------------------
for my $p ('st', 'stb')
{
	my $expected = qq{
		SELECT DISTINCT ON ((_raw->>'id')::int)
		       (_raw->>'id')::int AS id, (_raw->>'ver')::int AS ver, _raw->>'v' AS v, _seq
		  FROM bronze.st WHERE public.valid(_raw)
		 ORDER BY (_raw->>'id')::int, (_raw->>'ver')::int DESC, _seq DESC};
	my $actual = "SELECT id, ver, v, _source_seq FROM silver.$p";
	is( $node->safe_psql(
			'postgres', qq{
SELECT (SELECT count(*) FROM (($expected) EXCEPT ($actual)) a) || ' missing or stale, '
    || (SELECT count(*) FROM (($actual) EXCEPT ($expected)) a) || ' unexpected'}),
		'0 missing or stale, 0 unexpected',
		"silver.$p = per key the valid bronze row with the greatest (ver, _seq)");
	is($node->safe_psql('postgres', "SELECT count(*) FROM silver.$p"),
		$n{keys}, "silver.$p has one row per valid key");

	is( $node->safe_psql(
			'postgres', qq{
SELECT (SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.$p') || ' dlq rows, '
    || (SELECT count(DISTINCT source_seq) FROM medallion.dlq WHERE pipeline = 'silver.$p') || ' distinct, '
    || (SELECT count(*) FROM (SELECT _seq FROM bronze.st WHERE NOT public.valid(_raw)
                              EXCEPT SELECT source_seq FROM medallion.dlq WHERE pipeline = 'silver.$p') x) || ' bad not in dlq, '
    || (SELECT count(*) FROM (SELECT source_seq FROM medallion.dlq WHERE pipeline = 'silver.$p'
                              EXCEPT SELECT _seq FROM bronze.st WHERE NOT public.valid(_raw)) x) || ' good in dlq, '
    || (SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.$p' AND reprocessed) || ' reprocessed'}),
		"$n{bad} dlq rows, $n{bad} distinct, 0 bad not in dlq, 0 good in dlq, 0 reprocessed",
		"the DLQ of silver.$p holds exactly the bad bronze rows, each once");

	is( $node->safe_psql(
			'postgres', qq{
SELECT sum(rows_read) || ' read, ' || sum(rows_inserted) || ' inserted, ' || sum(rows_dlq) || ' to dlq'
  FROM medallion.runs WHERE pipeline = 'silver.$p' AND kind = 'incremental'}),
		"$n{bronze} read, $n{keys} inserted, $n{bad} to dlq",
		"silver.$p: every bronze row read by exactly one committed run");

	is( $node->safe_psql(
			'postgres', qq{
SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.$p'
   AND NOT (rows_read = rows_inserted + rows_updated + rows_unchanged + rows_dlq
                        + rows_quarantined + rows_dropped
            AND least(rows_read, rows_inserted, rows_updated, rows_unchanged, rows_dlq,
                      rows_quarantined, rows_dropped, rows_warned) >= 0)}),
		'0', "silver.$p: every run's counts add up");

	is( $node->safe_psql(
			'postgres', qq{
SELECT coalesce(string_agg(DISTINCT status || coalesce(': ' || error_message, ''), '; '), 'none')
  FROM medallion.runs WHERE pipeline = 'silver.$p' AND status NOT IN ('succeeded', 'skipped')}),
		'none', "silver.$p: no run failed or was left running");

	is( $node->safe_psql(
			'postgres', qq{
SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.$p' AND status = 'skipped'
   AND rows_read + rows_inserted + rows_updated + rows_unchanged + rows_dlq > 0}),
		'0', "silver.$p: skipped runs did nothing");
}

is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM medallion.dlq
 WHERE pipeline NOT IN ('silver.st', 'silver.stb') OR source_table IS DISTINCT FROM 'bronze.st'}),
	'0', 'every DLQ row names its pipeline and source table');

is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM medallion.watermarks WHERE target_snapshot IS NOT NULL OR resume_xid IS NOT NULL}),
	'0', 'both watermarks are drained');

# ---- the test has teeth ----------------------------------------------------------------
# The naive max(_seq) pipeline ran as often as runner A's runs, under the same load, and
# lost rows: a transaction still open when the watermark passed its rows' _seq. If this
# ever stops failing, the load lost its out-of-order pressure (the long commit delays).
cmp_ok($n{naive_missed}, '>', 0, "the naive max(_seq) pipeline never saw $n{naive_missed} bronze rows");
my $naive_wrong = $node->safe_psql(
	'postgres', q{
SELECT count(*) FROM (
	SELECT DISTINCT ON ((_raw->>'id')::int) (_raw->>'id')::int AS id, (_raw->>'ver')::int AS ver, _seq
	  FROM bronze.st WHERE public.valid(_raw)
	 ORDER BY (_raw->>'id')::int, (_raw->>'ver')::int DESC, _seq DESC) e
 FULL JOIN public.naive_silver n USING (id)
 WHERE n.id IS NULL OR e.id IS NULL OR (n.ver, n.src_seq) <> (e.ver, e._seq)});
note "the naive pipeline has $naive_wrong of $n{keys} keys wrong";

$node->stop;
done_testing();
