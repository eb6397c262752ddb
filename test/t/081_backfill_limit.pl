# medallion.max_backfills: at most that many asynchronous backfills run at once in the cluster;
# the others are not refused: they stay 'running' with their days queued, and a worker starts
# for them as soon as one finishes. Here max_backfills = 1: the backfill of ea holds the only
# slot (its worker waits on ea's run lock, held by another session), so the backfill of eb
# gets no worker until ea's is done; then both succeed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('backfill_limit', conf => qq{
max_worker_processes = 16
medallion.max_backfills = 1
log_min_messages = warning
});

sq(q{
CREATE EXTENSION medallion;
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.create_silver('ea', 'bronze.ev', '{"id": "int", "v": "text"}', '{id}');
SELECT medallion.create_silver('eb', 'bronze.ev', '{"id": "int", "v": "text"}', '{id}');
SELECT medallion.ingest('bronze.ev',
	(SELECT jsonb_agg(jsonb_build_object('id', i, 'v', 'v' || i)) FROM generate_series(1, 10) i));
SELECT medallion.run('silver.ea');
SELECT medallion.run('silver.eb');
SELECT medallion.alter_contract('silver.ea', '{"v": {"type": "text", "expr": "upper(v)"}}');
SELECT medallion.alter_contract('silver.eb', '{"v": {"type": "text", "expr": "upper(v)"}}');
});
is(sq(q{SHOW medallion.max_backfills}), '1', 'max_backfills is 1');

# ea's run lock, held by another session: ea's backfill worker waits on it, holding the slot.
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{BEGIN; SELECT 1 FROM medallion.pipelines WHERE name = 'silver.ea' FOR NO KEY UPDATE});

my $ra = sq(q{SELECT medallion.backfill('silver.ea', current_date, current_date, options => '{"async": true}')});
wait_for(qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'medallion backfill $ra'
	       AND wait_event_type = 'Lock'},
	'the first backfill has a worker, waiting for the run lock');
my $rb = sq(q{SELECT medallion.backfill('silver.eb', current_date, current_date, options => '{"async": true}')});
like($rb, qr/^\d+$/, 'a second backfill over the limit is accepted, not refused');

# Several scheduler passes: eb would be done in well under a second with a worker of its own.
sleep 5;
is(sq(qq{SELECT status FROM medallion.runs WHERE run_id = $rb}), 'running', 'the second backfill waits its turn');
is(sq(qq{SELECT count(*) FROM medallion.backfills WHERE run_id = $rb AND done_at IS NULL}), '1',
	'its day is still queued');
is(sq(q{SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'medallion backfill %'}), '1',
	'one backfill worker runs in the cluster');
is(sq(q{SELECT count(*) FROM silver.eb WHERE v = upper(v) AND v <> lower(v)}), '0',
	'eb is untouched so far');

$holder->query_safe('COMMIT');
$holder->quit;
wait_for(qq{SELECT status = 'succeeded' FROM medallion.runs WHERE run_id = $ra}, 'the first backfill finishes');
wait_for(qq{SELECT status = 'succeeded' FROM medallion.runs WHERE run_id = $rb}, 'then the second gets the slot and finishes');
is(sq(q{SELECT count(*) FROM silver.eb WHERE v = upper(v)}), '10', 'eb is backfilled');

$node->stop;
done_testing();
