# Bounded runs never stall (max_rows_per_run): a window of exactly the cap is drained by one
# run; the pending check and the freshness lag see rows that arrived after the window being
# drained (a watermark left by 0.1.0 at an empty rest of its window stalled the pipeline for
# good); a run that stopped at its cap asks for the next one itself, for an interval and an
# on_change schedule alike. A run keeps its DLQ rows in memory only by batches: the backend's
# memory stays flat in the number of bad rows.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('stall', conf => qq{
max_worker_processes = 16
log_min_messages = warning
});
my $db = 'postgres';
sub run_read
{
	my ($pipeline) = @_;
	sq(qq{SELECT medallion.run('$pipeline')});
	return sq(qq{SELECT rows_read FROM medallion.runs WHERE pipeline = '$pipeline' ORDER BY run_id DESC LIMIT 1});
}
sub ingest
{
	my ($bronze, $from, $to) = @_;
	sq(qq{SELECT medallion.ingest('bronze.$bronze',
	        (SELECT jsonb_agg(jsonb_build_object('id', i)) FROM generate_series($from, $to) i))});
}

sq('CREATE EXTENSION medallion');

# ---- exact cap, by hand (each statement its own transaction) ------------------------------
sq(q{SELECT medallion.create_bronze('cap', 'app');
     SELECT medallion.create_silver('cap', 'bronze.cap', '{"id": "int"}', '{id}', NULL,
                                    '{"max_rows_per_run": 10}')});
ingest('cap', 1, 10);
is(run_read('silver.cap'), '10',
	'cap 10, 10 rows: one run reads them');
is(sq(q{SELECT target_snapshot IS NULL FROM medallion.watermarks WHERE pipeline = 'silver.cap'}), 't',
	'and its window is drained');
ingest('cap', 11, 15);
is(sq(q{SELECT medallion.pipeline_lag('silver.cap') IS NOT NULL}), 't', 'rows landed: lag is known');
is(run_read('silver.cap'), '5',
	'then 5 more rows: the next run reads them');
ingest('cap', 16, 26);
is(run_read('silver.cap'), '10',
	'cap + 1 rows: a run of the cap');
is(run_read('silver.cap'), '1',
	'then one of the last row');
is(sq(q{SELECT count(*) FROM silver.cap}), '26', 'every row loaded');

# A watermark stalled as 0.1.0 left it: a window being drained, its rest empty, rows after it.
ingest('cap', 27, 37);
sq(q{SELECT medallion.run('silver.cap')});    # 10 of 11: a window being drained
sq(q{UPDATE medallion.watermarks SET resume_seq = (SELECT max(_seq) FROM bronze.cap)
     WHERE pipeline = 'silver.cap'});          # as if its rest were read
ingest('cap', 38, 40);
sleep(1);
is(sq(q{SELECT medallion.pipeline_lag('silver.cap') > interval '0'}), 't',
	'the lag sees rows after the window being drained');
is(sq(q{SELECT count(*) FROM medallion.freshness WHERE pipeline = 'silver.cap' AND lag > interval '0'}), '1',
	'so does medallion.freshness');
sq(q{SELECT medallion.run('silver.cap')});    # closes the empty window
sq(q{SELECT medallion.run('silver.cap')});
is(sq(q{SELECT count(*) FROM silver.cap WHERE id > 37}), '3', 'and the next runs read them');

# ---- the scheduler: interval, then on_change ----------------------------------------------
sq(q{SELECT medallion.create_bronze('ival', 'app');
     SELECT medallion.create_silver('ival', 'bronze.ival', '{"id": "int"}', '{id}', NULL,
                                    '{"max_rows_per_run": 10}');
     SELECT medallion.schedule('silver.ival', '1 second')});
ingest('ival', 1, 10);
wait_for(q{SELECT count(*) = 10 FROM silver.ival}, 'interval, cap 10: 10 rows run');
ingest('ival', 11, 15);
wait_for(q{SELECT count(*) = 15 FROM silver.ival}, 'then 5 more: the schedule does not stall');

sq(q{SELECT medallion.create_bronze('chg', 'app');
     SELECT medallion.create_silver('chg', 'bronze.chg', '{"id": "int"}', '{id}', NULL,
                                    '{"max_rows_per_run": 10}');
     SELECT medallion.schedule('silver.chg', 'on_change')});
ingest('chg', 1, 25);
wait_for(q{SELECT count(*) = 25 FROM silver.chg},
	'on_change, cap 10, 25 rows landing at once: runs follow each other until the backlog is drained');
is(sq(q{SELECT max(rows_read) FROM medallion.runs WHERE pipeline = 'silver.chg'}), '10',
	'each run bounded by the cap');

# ---- DLQ rows are written by batches: memory flat in the number of bad rows ----------------
# The run's backend's private memory (RssAnon: shared buffers are not in it) is sampled while
# it runs; the session sleeps first, so that its pid is known before a fast run ends.
sub peak_anon_kb
{
	my ($rows, $every, $expect) = @_;
	my $name = "mem$every" . ($expect ? 'x' : '');
	sq(qq{SELECT medallion.create_bronze('$name', 'app');
	      SELECT medallion.create_silver('$name', 'bronze.$name', '{"id": "int", "n": "int"}', '{id}')});
	# an expectation takes the other slow path (bad rows found first, then the MERGE)
	sq(qq{SELECT medallion.expect('silver.$name', 'positive', 'n > 0', 'warn')}) if $expect;
	# one row in $every bad, each with a 2 kB payload
	for (my $from = 1; $from <= $rows; $from += 10000)
	{
		my $to = $from + 9999 > $rows ? $rows : $from + 9999;
		sq(qq{SELECT medallion.ingest('bronze.$name',
		        (SELECT jsonb_agg(jsonb_build_object('id', i, 'n', CASE WHEN i % $every = 0 THEN 'bad' ELSE '1' END,
		                                             'pad', repeat('x', 2000)))
		           FROM generate_series($from, $to) i))});
	}
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr($db), '-c',
		  "SET application_name = 'medallion_mem'; SELECT pg_sleep(0.5); SELECT medallion.run('silver.$name')" ],
		'>', \$out, '2>', \$err);
	my ($pid, $peak) = (0, 0);
	while ($h->pumpable)
	{
		$pid ||= sq(q{SELECT pid FROM pg_stat_activity WHERE application_name = 'medallion_mem'}) || 0;
		if ($pid && open(my $fh, '<', "/proc/$pid/status"))
		{
			while (<$fh>)
			{
				$peak = $1 if /^RssAnon:\s+(\d+)/ && $1 > $peak;
			}
			close $fh;
		}
		$h->pump_nb;
		select(undef, undef, undef, 0.02);
	}
	$h->finish;
	return $peak;
}
my $small = peak_anon_kb(30000, 50);
my $large = peak_anon_kb(30000, 5);
is(sq(q{SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.mem5'}), '6000',
	'20 % of 30000 rows in the DLQ');
note("peak private memory of a run of 30000 rows: $small kB with 600 bad rows, $large kB with 6000");
ok($small > 0 && $large - $small < 6000, 'it hardly grows with the number of bad rows');
$small = peak_anon_kb(30000, 50, 1);
$large = peak_anon_kb(30000, 5, 1);
note("with an expectation: $small kB with 600 bad rows, $large kB with 6000");
ok($small > 0 && $large - $small < 6000, 'nor with an expectation (bad rows found before the MERGE)');

ok(!$node->log_contains('TRAP:|terminated by signal|server process .* was terminated'),
	'no crash in the server log');
$node->stop;
done_testing();
