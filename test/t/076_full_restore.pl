# pg_dump / pg_restore into another cluster of what the 0.2.0 catalog adds: gold models and
# their change records, contract versions, the payload registry, operators, corrected and
# discarded dead letters, the graph's edges.  Gold watermarks hold the old cluster's xids,
# like silver's: they are re-based (the first gold run after a restore refreshes the model
# whole, and is exact); the runs after it are incremental again.  Nothing is reprocessed or
# duplicated (DLQ included), nothing stalls.  The first silver runs after the restore re-read
# all of bronze, max_rows_per_run (2) rows per run, resuming where the last committed run
# stopped, across a crash; freshness says 'rebasing' meanwhile.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode qw(medallion_node);

my $setup_roles = q{CREATE ROLE fr_operator NOLOGIN};

my $old = medallion_node('old_full');
$old->safe_psql('postgres', $setup_roles);
$old->safe_psql('postgres', 'CREATE DATABASE app');
$old->safe_psql('app', q{
	CREATE EXTENSION medallion;
	SELECT medallion.create_bronze('orders', 'shop');
	SELECT medallion.create_silver('orders', 'bronze.orders',
		'{"id": {"type": "int", "required": true}, "channel": "text",
		  "amount": {"type": "numeric", "required": true}, "ordered_at": "timestamptz"}',
		'{id}');
	SELECT medallion.create_gold('daily',
		$$SELECT date(ordered_at AT TIME ZONE 'UTC') AS day, channel, count(*) AS orders, sum(amount) AS revenue
		  FROM silver.orders GROUP BY 1, 2$$, 'day',
		'{"partition_sources": {"silver.orders": "ordered_at"}}');
	SELECT medallion.grant_operator('silver.orders', 'fr_operator');
	SELECT medallion.ingest('bronze.orders',
		'[{"id": 1, "channel": "web", "amount": 10, "ordered_at": "2024-01-01T10:00:00Z"},
		  {"id": 2, "channel": "web", "amount": 20, "ordered_at": "2024-01-02T10:00:00Z"},
		  {"id": 3, "channel": "shop", "amount": "oops", "ordered_at": "2024-01-02T10:00:00Z"},
		  {"id": 4, "channel": "shop", "amount": "bad", "ordered_at": "2024-01-03T10:00:00Z"},
		  {"id": 5, "channel": "shop", "amount": "worse", "ordered_at": "2024-01-03T10:00:00Z"}]', 'b1');
	SELECT medallion.run('silver.orders');
	SELECT medallion.run('gold.daily');
});
# Triage: one dead letter corrected and replayed, one discarded, one left pending.
$old->safe_psql('app', q{
	SELECT medallion.dlq_correct(id, replace(original_payload, '"oops"', '30'))
	FROM medallion.dlq WHERE pipeline = 'silver.orders' AND original_payload LIKE '%oops%';
	SELECT medallion.replay_dlq('silver.orders',
		(SELECT array_agg(id) FROM medallion.dlq WHERE pipeline = 'silver.orders' AND original_payload LIKE '%"id": 3%'));
	SELECT medallion.dlq_discard('silver.orders',
		(SELECT array_agg(id) FROM medallion.dlq WHERE pipeline = 'silver.orders' AND original_payload LIKE '%bad%'),
		'test data');
	SELECT medallion.alter_contract('silver.orders', '{"note": "text"}', '{"max_rows_per_run": 2}');
	SELECT medallion.run('gold.daily');
});
my $dlq_state = q{SELECT string_agg(
		(coalesce(first_payload, original_payload)::jsonb->>'id') || ':' || CASE WHEN discarded_at IS NOT NULL THEN 'discarded'
		WHEN reprocessed THEN 'replayed' ELSE 'pending' END, ',' ORDER BY id)
	FROM medallion.dlq WHERE pipeline = 'silver.orders'};
my $dlq_before = $old->safe_psql('app', $dlq_state);
is($dlq_before, '3:replayed,4:discarded,5:pending', 'the old cluster has triaged dead letters');
my $keys_before = $old->safe_psql('app',
	q{SELECT string_agg(DISTINCT path || ':' || json_type, ',') FROM medallion.payload_keys WHERE pipeline = 'bronze.orders'});

# Old xids run ahead of the new cluster's, then rows land that no run has read yet.
$old->safe_psql('app', 'SELECT pg_current_xact_id()') for 1 .. 300;
$old->safe_psql('app', q{
	SELECT medallion.ingest('bronze.orders',
		'[{"id": 2, "channel": "web", "amount": 25, "ordered_at": "2024-01-02T10:00:00Z"},
		  {"id": 6, "channel": "web", "amount": 60, "ordered_at": "2024-01-04T10:00:00Z"}]', 'b2')});

my $tempdir = PostgreSQL::Test::Utils::tempdir;
my $dump = "$tempdir/app.dump";
$old->command_ok([ 'pg_dump', '-Fc', '-d', $old->connstr('app'), '-f', $dump ], 'pg_dump');

my $new = medallion_node('new_full');
$new->safe_psql('postgres', $setup_roles);
$new->safe_psql('postgres', 'CREATE DATABASE app');
$new->command_ok([ 'pg_restore', '--exit-on-error', '-d', $new->connstr('app'), $dump ],
	'pg_restore into another cluster');

is( $new->safe_psql('app',
		q{SELECT string_agg(pipeline || '<-' || upstream || ':' || kind, ',' ORDER BY pipeline) FROM medallion.dependencies}),
	'gold.daily<-silver.orders:query,silver.orders<-bronze.orders:source',
	'the graph\'s edges are restored');
is( $new->safe_psql('app',
		q{SELECT string_agg(version::text, ',' ORDER BY version) || ' current ' || (SELECT definition_version FROM medallion.pipelines WHERE name = 'silver.orders')
		  FROM medallion.contract_versions WHERE pipeline = 'silver.orders'}),
	'1,2 current 2', 'contract versions are restored, the current one too');
is( $new->safe_psql('app',
		q{SELECT string_agg(DISTINCT path || ':' || json_type, ',') FROM medallion.payload_keys WHERE pipeline = 'bronze.orders'}),
	$keys_before, 'the payload registry is restored');
isnt($keys_before, '', 'and it was not empty');
is($new->safe_psql('app', q{SELECT string_agg(pipeline || ' ' || role, ',') FROM medallion.operators}),
	'silver.orders fr_operator', 'operators are restored');
is($new->safe_psql('app', $dlq_state), $dlq_before, 'dead letters keep their triage');
is($new->safe_psql('app', q{SELECT count(*) FROM gold.daily}), '3', 'the gold model is restored');
is($new->safe_psql('app', q{SELECT count(*) FROM medallion.changes}),
	$old->safe_psql('app', q{SELECT count(*) FROM medallion.changes}), 'and the change records');

# New data after the restore, then the runs the scheduler would make.
$new->safe_psql('app', q{
	SELECT medallion.ingest('bronze.orders',
		'[{"id": 7, "channel": "shop", "amount": 70, "ordered_at": "2024-01-05T10:00:00Z"},
		  {"id": 1, "channel": "web", "amount": 11, "ordered_at": "2024-01-01T10:00:00Z"}]', 'b3')});
my $last_read = q{SELECT rows_read FROM medallion.runs WHERE pipeline = 'silver.orders' ORDER BY run_id DESC LIMIT 1};
my $rebasing = q{SELECT rebase_until IS NOT NULL FROM medallion.watermarks WHERE pipeline = 'silver.orders'};
my $bronze_rows = $new->safe_psql('app', q{SELECT count(*) FROM bronze.orders});
is($bronze_rows, '9', 'bronze holds the restored rows and the new ones');
my $before = $new->safe_psql('app', q{SELECT coalesce(max(run_id), 0) FROM medallion.runs});
$new->safe_psql('app', q{SELECT medallion.run('silver.orders')});
is($new->safe_psql('app', $last_read), '2',
	'the first run after the restore honours max_rows_per_run (2)');
is($new->safe_psql('app', $rebasing), 't', 'the watermark says the rebase is in progress');
is($new->safe_psql('app', q{SELECT status FROM medallion.freshness WHERE pipeline = 'silver.orders'}),
	'rebasing', 'freshness does not say fresh meanwhile');
$new->safe_psql('app', q{SELECT medallion.alter_pipeline('silver.orders', '{"freshness_sla": "1 hour"}')});
is($new->safe_psql('app', q{SELECT status || ' ' || (lag > '0'::interval) FROM medallion.freshness WHERE pipeline = 'silver.orders'}),
	'rebasing true', 'nor when the rows not re-read yet are younger than its SLA; its lag counts them');

# A run in progress when the server crashes: its work is lost, the next run redoes it.
my $bg = $new->background_psql('app', on_error_stop => 0);
$bg->query_until(qr/ran/, q{BEGIN;
SELECT medallion.run('silver.orders');
\echo ran
});
$new->stop('immediate');
eval { $bg->quit; };
$new->start;
# A row lands while the rebase is in progress: after its end, so the runs after it read it.
$new->safe_psql('app', q{
	SELECT medallion.ingest('bronze.orders',
		'{"id": 9, "channel": "web", "amount": 90, "ordered_at": "2024-01-05T11:00:00Z"}', 'b3b')});

my $runs = 1;
while ($new->safe_psql('app', $rebasing) eq 't' && $runs < 20)
{
	$new->safe_psql('app', q{SELECT medallion.run('silver.orders')});
	$runs++;
	cmp_ok($new->safe_psql('app', $last_read), '<=', 2, "rebase run $runs reads at most 2 rows");
}
is($runs, 5, 'five committed runs re-read the 9 rows, 2 at a time, across the crash');
is($new->safe_psql('app',
		qq{SELECT sum(rows_read) || ' in ' || count(*) || ' runs' FROM medallion.runs
		    WHERE pipeline = 'silver.orders' AND status = 'succeeded' AND run_id > $before}),
	'9 in 5 runs', 'every row re-read once: none lost, none twice');
is($new->safe_psql('app', q{SELECT status FROM medallion.freshness WHERE pipeline = 'silver.orders'}),
	'fresh', 'once the rebase is done, the pipeline is fresh');
$new->safe_psql('app', q{SELECT medallion.run('silver.orders')});
is($new->safe_psql('app', $last_read), '1', 'the row that landed during the rebase is read next, once');
is( $new->safe_psql('app',
		q{SELECT string_agg(id || '=' || amount, ',' ORDER BY id) FROM silver.orders}),
	'1=11,2=25,3=30,6=60,7=70,9=90',
	'silver: rows landed before the dump and after it are processed, the replayed correction kept');
is($new->safe_psql('app', $dlq_state), $dlq_before,
	'no dead letter is written twice, the discarded one stays discarded');

my $gold_exact = q{SELECT NOT EXISTS (
	(SELECT day, channel, orders, revenue FROM gold.daily
	 EXCEPT ALL SELECT date(ordered_at AT TIME ZONE 'UTC'), channel, count(*), sum(amount) FROM silver.orders GROUP BY 1, 2)
	UNION ALL
	(SELECT date(ordered_at AT TIME ZONE 'UTC'), channel, count(*), sum(amount) FROM silver.orders GROUP BY 1, 2
	 EXCEPT ALL SELECT day, channel, orders, revenue FROM gold.daily))};
my $last_gold = q{SELECT status || ' ' || coalesce(detail->>'mode', '?') FROM medallion.runs
	WHERE pipeline = 'gold.daily' ORDER BY run_id DESC LIMIT 1};
$new->safe_psql('app', q{SELECT medallion.run('gold.daily')});
is($new->safe_psql('app', $last_gold), 'succeeded full',
	'the first gold run after the restore refreshes the model whole (its watermark is re-based)');
is($new->safe_psql('app', $gold_exact), 't', 'and the model equals its query');

# The next runs are incremental again: only the changed day is refreshed.
$new->safe_psql('app', q{
	SELECT medallion.ingest('bronze.orders',
		'{"id": 8, "channel": "web", "amount": 80, "ordered_at": "2024-01-05T12:00:00Z"}', 'b4');
	SELECT medallion.run('silver.orders');
	SELECT medallion.run('gold.daily');
});
is($new->safe_psql('app',
		q{SELECT rows_read FROM medallion.runs WHERE pipeline = 'silver.orders' ORDER BY run_id DESC LIMIT 1}),
	'1', 'the next silver run reads only the new row');
like($new->safe_psql('app', $last_gold), qr/^succeeded (partitions|incremental)/,
	'the next gold run refreshes only changed partitions');
is($new->safe_psql('app', $gold_exact), 't', 'and the model is still exact');
$new->safe_psql('app', q{SELECT medallion.run('gold.daily')});
is($new->safe_psql('app',
		q{SELECT coalesce(rows_inserted, 0) FROM medallion.runs WHERE pipeline = 'gold.daily' ORDER BY run_id DESC LIMIT 1}),
	'0', 'with nothing new, a gold run touches nothing');
is($new->safe_psql('app', $dlq_state), $dlq_before, 'the DLQ is unchanged');

$old->stop;
$new->stop;
done_testing();
