# Hostile input to ingest_file() (trust §6): a device or a FIFO is refused at once; a line
# far over medallion.max_record_size (50 MB against 1 MB) goes to the DLQ cut to its first
# 64 kB with its length, the backend's memory stays bounded and the valid lines around it
# land; many bad lines do not grow memory either (the DLQ is written in batches); a cancel
# during a long read returns within a second; empty input and a batch where every record
# failed give a WARNING.
use strict;
use warnings;
use POSIX qw(mkfifo);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;
use Time::HiRes qw(time usleep);

my $node = medallion_node('hostile');
my $db = 'postgres';
my $dir = PostgreSQL::Test::Utils::tempdir();

sq(q{CREATE EXTENSION medallion; SELECT medallion.create_bronze('ev', 'app');});

# The peak resident memory (kB) of the backend that runs "sql", before and after it.
sub peak_around
{
	my ($sql) = @_;
	my $hwm = q{(SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmHWM:\s+(\d+)'))[1]::bigint)};
	my $out = sq(qq{SELECT $hwm; $sql; SELECT $hwm;});
	my @lines = split /\n/, $out;
	return ($lines[0], $lines[-1]);
}

# The private memory (RssAnon, kB) of a backend before "sql" and its peak while "sql"
# runs, sampled every 2 ms: shared buffers count in VmHWM once touched, and the ingests
# measured this way write far more than the backend's own memory.
sub private_peak
{
	my ($sql) = @_;
	my $rss = sub {
		open(my $st, '<', "/proc/$_[0]/status") or return 0;
		my ($kb) = join('', <$st>) =~ /RssAnon:\s+(\d+)/;
		close $st;
		return $kb // 0;
	};
	my $session = $node->background_psql($db);
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	my $before = $rss->($pid);
	my $peak = $before;
	$session->query_until(qr/started/, "\\echo started\n$sql;\n\\echo done\n");
	my $deadline = time + 300;
	while ($session->{stdout} !~ /done/ && time < $deadline)
	{
		my $now = $rss->($pid);
		$peak = $now if $now > $peak;
		usleep(2_000);
		$session->{run}->pump_nb;
	}
	$session->quit;
	return ($before, $peak);
}

# Devices and FIFOs ---------------------------------------------------------------------

my ($rc, $stdout, $stderr) =
  $node->psql($db, q{SELECT medallion.ingest_file('bronze.ev', '/dev/zero')});
isnt($rc, 0, '/dev/zero is refused');
like($stderr, qr/"\/dev\/zero" is not a regular file/, 'as not a regular file');

mkfifo("$dir/fifo", 0600) or die "mkfifo: $!";
my $t0 = time;
($rc, $stdout, $stderr) = $node->psql(
	$db, qq{SELECT medallion.ingest_file('bronze.ev', '$dir/fifo')},
	timeout => 30);
isnt($rc, 0, 'a FIFO is refused');
like($stderr, qr/is not a regular file/, 'as not a regular file');
cmp_ok(time - $t0, '<', 5, 'without waiting for a writer');

# A 50 MB line against a 1 MB limit ----------------------------------------------------------

my $big = 50 * 1024 * 1024;
open(my $fh, '>', "$dir/big.ndjson") or die $!;
print $fh '{"n": 1}', "\n", '{"big": "', 'x' x $big, '"}', "\n", '{"n": 2}', "\n";
close $fh;
my ($before, $after) = peak_around(
	qq{SET medallion.max_record_size = '1MB';
	   SELECT medallion.ingest_file('bronze.ev', '$dir/big.ndjson')});
note "VmHWM before $before kB, after $after kB";
cmp_ok($after - $before, '<', 16 * 1024,
	'reading a 50 MB line against a 1 MB limit grows the backend by less than 16 MB');
is(sq(q{SELECT string_agg(_raw->>'n', ',' ORDER BY _seq) FROM bronze.ev}),
	'1,2', 'the valid lines before and after it land');
is( sq(
		q{SELECT line_number, sqlstate, length(original_payload), original_length,
		         left(original_payload, 9)
		  FROM medallion.dlq WHERE file_name LIKE '%big.ndjson'}),
	join('|', 2, '54000', 65536, $big + 11, '{"big": "'),
	'the long line is a DLQ row: its line, its first 64 kB and its length');

# Many bad lines: the DLQ is written in batches, memory does not follow their number ------

open($fh, '>', "$dir/bad.ndjson") or die $!;
for my $i (1 .. 60000)
{
	print $fh '{"broken": "', 'y' x 1000, '"', "\n", '{"ok": ', $i, '}', "\n";
}
close $fh;
($before, $after) = private_peak(qq{SELECT medallion.ingest_file('bronze.ev', '$dir/bad.ndjson')});
note "RssAnon before $before kB, peak $after kB";
cmp_ok($after - $before, '<', 30 * 1024,
	'60,000 bad lines of 1 kB (60 MB) grow the backend by less than 30 MB');
is(sq(q{SELECT rows_landed || '/' || rows_dlq FROM medallion.batches WHERE file_name LIKE '%bad.ndjson'}),
	'60000/60000', 'every good line landed, every bad one is counted');
is(sq(q{SELECT count(*) FROM medallion.dlq WHERE file_name LIKE '%bad.ndjson'}),
	'60000', 'and is a DLQ row');

# The json format is read as a stream, not whole ---------------------------------------

open($fh, '>', "$dir/many.json") or die $!;
print $fh "[\n";
print $fh join(",\n", map { '{"j": ' . $_ . ', "pad": "' . ('z' x 200) . '"}' } 1 .. 200000);
print $fh "\n]\n";
close $fh;
($before, $after) =
  private_peak(qq{SELECT medallion.ingest_file('bronze.ev', '$dir/many.json', 'json')});
note "RssAnon before $before kB, peak $after kB";
cmp_ok($after - $before, '<', 20 * 1024,
	'a 44 MB json file of 200,000 objects grows the backend by less than 20 MB');
is(sq(q{SELECT count(*) || '/' || max((_raw->>'j')::int) FROM bronze.ev WHERE _raw ? 'j'}),
	'200000/200000', 'and every object landed');

# A cancel during a long read -----------------------------------------------------------

open($fh, '>', "$dir/sparse.ndjson") or die $!;
truncate($fh, 200 * 1024 * 1024 * 1024) or die "truncate: $!";
close $fh;
my $bg = $node->background_psql($db, on_error_stop => 0);
$bg->query_until(qr/started/, qq{\\echo started
SELECT medallion.ingest_file('bronze.ev', '$dir/sparse.ndjson');
});
ok( $node->poll_query_until(
		$db,
		q{SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE state = 'active' AND query LIKE 'SELECT medallion.ingest_file%sparse%'}),
	'a long read of a 200 GB sparse file is under way');
my $pid = sq(q{SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT medallion.ingest_file%sparse%'});
usleep(500_000);
is(sq(qq{SELECT state FROM pg_stat_activity WHERE pid = $pid}), 'active', 'still reading after 0.5 s');
$t0 = time;
sq(qq{SELECT pg_cancel_backend($pid)});
my $state = 'active';
while ($state eq 'active' && time - $t0 < 30)
{
	$state = sq(qq{SELECT state FROM pg_stat_activity WHERE pid = $pid});
	usleep(10_000) if $state eq 'active';
}
my $took = time - $t0;
note sprintf('the cancel took %.3f s', $took);
cmp_ok($took, '<', 1, 'pg_cancel_backend during the read returns within 1 s');
$bg->quit;
like($bg->{stderr}, qr/canceling statement due to user request/, 'the ingest was cancelled');

# WARNINGs: nothing in the input, nothing landed --------------------------------------

($rc, $stdout, $stderr) =
  $node->psql($db, q{SELECT medallion.ingest_text('bronze.ev', '', 'ndjson', 'empty-1')});
like($stderr, qr/WARNING:  batch "empty-1" holds no records/, 'empty input gives a WARNING');
open($fh, '>', "$dir/empty.csv") or die $!;
print $fh "\xEF\xBB\xBFid,name\n";
close $fh;
($rc, $stdout, $stderr) =
  $node->psql($db, qq{SELECT medallion.ingest_file('bronze.ev', '$dir/empty.csv', 'csv')});
like($stderr, qr/WARNING:  batch ".*" holds no records/, 'a csv file with a header alone too');
($rc, $stdout, $stderr) = $node->psql($db,
	q{SELECT medallion.ingest_text('bronze.ev', E'nope\n[1]', 'ndjson', 'failed-1')});
like($stderr, qr/WARNING:  no record of batch "failed-1" could be ingested/,
	'a batch where every record failed gives a WARNING');
like($stderr, qr/DETAIL:  2 records went to medallion.dlq/, 'saying how many went to the DLQ');
($rc, $stdout, $stderr) =
  $node->psql($db, q{SELECT medallion.ingest_text('bronze.ev', E'nope\n{}', 'ndjson', 'some-1')});
unlike($stderr, qr/WARNING/, 'a batch where some records landed gives none');

$node->stop;
done_testing();
