# Exports of gold tables to a receiver on 127.0.0.1 (test/net/httpd.py).  An export of a gold
# model consumes the model's change records with a snapshot watermark of its own: the first run
# sends the whole table; later runs send exactly the partitions gold runs refreshed since, each
# as a replace-set ({"replace": {"from", "to"}}: an emptied partition goes out as an empty set),
# and nothing when nothing was refreshed; an unpartitioned model (or a full refresh) sends the
# whole table ({"replace": "table"}); a batch sent again after a receiver failure carries the
# same Idempotency-Key; a refresh that commits after the export's snapshot is sent next time.
use strict;
use warnings;
use FindBin;
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;
use Time::HiRes qw(usleep);

my ($base, $port) = start_httpd();

my $node = medallion_node('gold_exports', conf => qq{
max_worker_processes = 16
log_min_messages = warning
medallion.http_allowed_hosts = '127.0.0.1'
});
my $db = 'postgres';

sub received { return decode_json(HTTP::Tiny->new->get("$base/hook/received")->{content}); }
sub hook { HTTP::Tiny->new->get("$base/hook/$_[0]"); }
my $seen = 0;
# The batches received since the last call, one string each:
# "<export> <replace> <batch>/<batches>: day=amount,..." (an unpartitioned model: amount only).
sub new_batches
{
	my @all = @{ received()->{received} };
	my @r;
	for my $m (@all[ $seen .. $#all ])
	{
		my $b = decode_json($m->{body});
		my $replace = ref $b->{replace} ? "$b->{replace}{from}..$b->{replace}{to}" : $b->{replace};
		my @rows = map { $_->{op} eq 'upsert' or die 'not an upsert';
						 defined $_->{row}{day} ? "$_->{row}{day}=$_->{row}{amount}" : $_->{row}{amount} }
		  @{ $b->{records} };
		push @r, "$b->{export} $replace $b->{batch}/$b->{batches}: " . join(',', @rows);
	}
	$seen = scalar @all;
	return join(' | ', @r);
}
sub ingest_and_refresh
{
	sq(qq{SELECT medallion.ingest('bronze.sales_raw', '$_[0]'); SELECT medallion.run('silver.sales');
	      SELECT medallion.run('gold.daily')});
}
sub last_run
{
	return sq(qq{SELECT $_[1] FROM medallion.runs WHERE pipeline = '$_[0]' ORDER BY run_id DESC LIMIT 1});
}

sq(q{CREATE EXTENSION medallion;
     SELECT medallion.create_bronze('sales_raw', 'app');
     SELECT medallion.create_silver('sales', 'bronze.sales_raw',
       '{"id": "int", "amount": "int", "day": "date"}', '{id}');
     SELECT medallion.ingest('bronze.sales_raw', '[{"id": 1, "amount": 10, "day": "2024-03-01"},
                                                    {"id": 2, "amount": 20, "day": "2024-03-02"},
                                                    {"id": 3, "amount": 30, "day": "2024-03-03"}]');
     SELECT medallion.run('silver.sales');
     SELECT medallion.create_gold('daily', 'SELECT day, sum(amount)::int AS amount FROM silver.sales GROUP BY 1', 'day');
     SELECT medallion.create_gold('total', 'SELECT sum(amount)::int AS amount FROM silver.sales');
     SELECT medallion.run('gold.daily'); SELECT medallion.run('gold.total')});

# ---- creation ------------------------------------------------------------------------------
is(sq(qq{SELECT medallion.create_export('gold.daily', '$base/hook', '{"batch_size": 2}')}), 'export.daily',
	'create_export takes a gold table');
is(sq(q{SELECT kind || ' ' || partition_column FROM medallion.dependencies
        WHERE pipeline = 'export.daily' AND upstream = 'gold.daily'}), 'export day',
	'its edge from the model names the model\'s partition column');
is(sq(qq{SELECT medallion.create_export('gold.total', '$base/hook')}), 'export.total',
	'and an unpartitioned model');

# ---- partitioned model ---------------------------------------------------------------------
sq(q{SELECT medallion.run('export.daily')});
is(new_batches(), 'export.daily table 1/2: 2024-03-01=10,2024-03-02=20 | export.daily table 2/2: 2024-03-03=30',
	'the first run sends the whole table as one replace-set, in batches of batch_size');
is(last_run('export.daily', q{status || ' ' || rows_read}), 'succeeded 3', 'and counts its rows');

sq(q{SELECT medallion.run('export.daily')});
is(new_batches(), '', 'a second run sends nothing');

ingest_and_refresh('[{"id": 2, "amount": 25, "day": "2024-03-02"}]');
is(last_run('gold.daily', q{detail->>'partitions'}), '["2024-03-02"]', 'a gold run refreshes one day');
sq(q{SELECT medallion.run('export.daily')});
is(new_batches(), 'export.daily 2024-03-02..2024-03-03 1/1: 2024-03-02=25',
	'the next export sends exactly the refreshed partition\'s rows, as a replace-set');
sq(q{SELECT medallion.run('export.daily')});
is(new_batches(), '', 'once');

ingest_and_refresh('[{"id": 3, "amount": 30, "day": "2024-03-04"}]');
sq(q{SELECT medallion.run('export.daily')});
is(new_batches(), 'export.daily 2024-03-03..2024-03-04 1/1:  | export.daily 2024-03-04..2024-03-05 1/1: 2024-03-04=30',
	'a partition left empty goes out as an empty replace-set (its rows were deleted)');

# ---- a receiver failure: the same batch again, with the same key -----------------------------
ingest_and_refresh('[{"id": 1, "amount": 11, "day": "2024-03-01"}]');
hook('down');
sq(q{SELECT medallion.run('export.daily')});
is(last_run('export.daily', q{status || ' ' || error_class}), 'failed transient', 'the receiver down: a transient failure');
my @refused = @{ received()->{refused_keys} };
is(scalar @refused, 1, 'the batch was refused');
hook('up');
sq(q{SELECT medallion.run('export.daily')});
is(last_run('export.daily', 'status'), 'succeeded', 'the next attempt succeeds');
is(received()->{received}[-1]{key}, $refused[0], 'the batch sent again carries the key of the failed attempt');
is(new_batches(), 'export.daily 2024-03-01..2024-03-02 1/1: 2024-03-01=11', 'with the refreshed partition');

# the same content later, from another watermark: another key (a receiver must not drop it)
ingest_and_refresh('[{"id": 1, "amount": 10, "day": "2024-03-01"}]');
ingest_and_refresh('[{"id": 1, "amount": 11, "day": "2024-03-01"}]');
sq(q{SELECT medallion.run('export.daily')});
is(new_batches(), 'export.daily 2024-03-01..2024-03-02 1/1: 2024-03-01=11', 'a partition refreshed twice goes out once');
isnt(received()->{received}[-1]{key}, $refused[0], 'under a new key: the same rows from a later watermark');

# ---- a refresh that commits after the export's snapshot ------------------------------------
sq(q{SELECT medallion.ingest('bronze.sales_raw', '[{"id": 2, "amount": 26, "day": "2024-03-02"}]');
     SELECT medallion.run('silver.sales')});
my $bg = $node->background_psql($db);
$bg->query_safe(q{BEGIN; SELECT medallion.run('gold.daily')});
sq(q{SELECT medallion.run('export.daily')});
is(new_batches(), '', 'a refresh not committed yet is not sent');
$bg->query_safe('COMMIT');
$bg->quit;
sq(q{SELECT medallion.run('export.daily')});
is(new_batches(), 'export.daily 2024-03-02..2024-03-03 1/1: 2024-03-02=26',
	'committed after the export\'s snapshot, it goes out with the next export');

# ---- change records: kept until every consumer has them ------------------------------------
sq(q{SELECT medallion.create_gold('days', 'SELECT count(*)::int AS n FROM gold.daily');
     SELECT medallion.run('gold.days')});
ingest_and_refresh('[{"id": 4, "amount": 40, "day": "2024-03-05"}]');
sq(q{SELECT medallion.run('gold.days')});
is(sq(q{SELECT count(*) FROM medallion.changes WHERE pipeline = 'gold.daily'}), '1',
	'a record the model reading gold.daily consumed stays for the export');
sq(q{SELECT medallion.run('export.daily')});
is(new_batches(), 'export.daily 2024-03-05..2024-03-06 1/1: 2024-03-05=40', 'which sends it');
is(sq(q{SELECT count(*) FROM medallion.changes WHERE pipeline = 'gold.daily'}), '0',
	'then the record is dropped');

# ---- unpartitioned model: the whole table ---------------------------------------------------
sq(q{SELECT medallion.run('export.total')});
is(new_batches(), 'export.total table 1/1: 60', 'an unpartitioned model\'s first export: the whole table');
sq(q{SELECT medallion.run('export.total')});
is(new_batches(), '', 'nothing when it was not refreshed');
sq(q{SELECT medallion.run('gold.total'); SELECT medallion.run('export.total')});
is(new_batches(), 'export.total table 1/1: 107', 'after a refresh: the whole table again');
is(sq(q{SELECT count(*) FROM medallion.changes WHERE pipeline = 'gold.total'}), '0',
	'its records consumed');

# ---- silver exports are unchanged: a silver table with an export writes no change records ---
sq(qq{SELECT medallion.create_export('silver.sales', '$base/hook', '{}', 'sales_out')});
sq(q{SELECT medallion.ingest('bronze.sales_raw', '[{"id": 9, "amount": 1, "day": "2024-04-01"}]');
     SELECT medallion.run('silver.sales')});
is(sq(q{SELECT count(*) FROM medallion.changes c WHERE c.pipeline = 'silver.sales'
          AND c.run_id = (SELECT max(run_id) FROM medallion.runs WHERE pipeline = 'silver.sales')}), '1',
	'the silver run writes one record (for its gold models)');
sq(q{SELECT medallion.run('gold.daily'); SELECT medallion.run('gold.total')});
is(sq(q{SELECT count(*) FROM medallion.changes WHERE pipeline = 'silver.sales'}), '0',
	'which the models consume: the silver export does not hold records back');

# ---- a monthly model: the refreshed month goes out whole -------------------------------------
sq(qq{SELECT medallion.create_gold('monthly', 'SELECT day, amount FROM silver.sales', 'day', '{"granularity": "month"}');
      SELECT medallion.run('gold.monthly');
      SELECT medallion.create_export('gold.monthly', '$base/hook');
      SELECT medallion.run('export.monthly')});
new_batches();
sq(q{SELECT medallion.ingest('bronze.sales_raw', '[{"id": 10, "amount": 5, "day": "2024-03-09"}]');
     SELECT medallion.run('silver.sales'); SELECT medallion.run('gold.monthly'); SELECT medallion.run('export.monthly')});
is(new_batches(), 'export.monthly 2024-03-01..2024-04-01 1/1: 2024-03-01=11,2024-03-02=26,2024-03-04=30,2024-03-05=40,2024-03-09=5',
	'a monthly model: the month refreshed, as one replace-set');

done_testing();
