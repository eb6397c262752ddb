# The scheduler's housekeeping drops the versions blue-green backfills kept once their time
# (options.keep) is up, and only those: a gold model's version kept for a second is dropped
# (table and medallion.backfill_versions row) by the full housekeeping a scheduler does when it
# starts; a silver one kept for seven days stays, and rollback() still works on it.
# And the scheduler does not start runs of a gold model whose new query's output columns wait
# for a backfill (they could only fail, and open the breaker that refuses the backfill): once
# a full backfill has built them, it runs the model again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('backfill_housekeeping', conf => qq{
log_min_messages = warning
});

sq(q{
CREATE EXTENSION medallion;
SELECT medallion.create_bronze('hk', 'app');
SELECT medallion.create_silver('hk', 'bronze.hk', '{"id": "int", "v": "text"}', '{id}');
SELECT medallion.ingest('bronze.hk', (SELECT jsonb_agg(jsonb_build_object('id', i, 'v', 'v' || i))
                                      FROM generate_series(1, 20) i));
SELECT medallion.run('silver.hk');
SELECT medallion.create_gold('hk_count', 'SELECT count(*) AS n FROM silver.hk');
SELECT medallion.run('gold.hk_count');
SELECT medallion.backfill('gold.hk_count', NULL, NULL, 'blue_green', options => '{"keep": "1 second"}');
SELECT medallion.backfill('silver.hk', current_date, current_date, 'blue_green');
});
is(sq(q{SELECT count(*) FROM medallion.backfill_versions}), '2', 'two versions are kept');
my $gold_kept = sq(q{SELECT kept_table::text FROM medallion.backfill_versions WHERE pipeline = 'gold.hk_count'});
like($gold_kept, qr/^gold\._bf\d+_old$/, 'the gold one in a table of its own');

# past the gold version's time; a scheduler that starts does a full housekeeping pass
sleep(2);
$node->restart;
wait_for(q{SELECT count(*) = 0 FROM medallion.backfill_versions WHERE pipeline = 'gold.hk_count'},
	'the housekeeping forgets the expired version');
is(sq(qq{SELECT to_regclass('$gold_kept') IS NULL}), 't', 'and drops its table');
is(sq(q{SELECT count(*) FROM medallion.backfill_versions WHERE pipeline = 'silver.hk'}), '1',
	'a version whose time is not up stays');
is(sq(q{SELECT count(*) FROM pg_class WHERE relname LIKE '\_bf%\_old'}), '1', 'with its table');
sq(q{SELECT medallion.rollback('silver.hk')});
is(sq(q{SELECT count(*) FROM medallion.backfill_versions}), '0', 'and rollback() can still use it');

# A scheduled model whose query changed its output columns
sq(q{
SELECT medallion.create_bronze('hkd', 'app');
SELECT medallion.create_silver('hkd', 'bronze.hkd', '{"id": "int", "day": "date"}', '{id}');
SELECT medallion.ingest('bronze.hkd', '[{"id": 1, "day": "2024-01-01"}, {"id": 2, "day": "2024-01-02"}]');
SELECT medallion.run('silver.hkd');
SELECT medallion.create_gold('hkd_daily', 'SELECT day, count(*) AS n FROM silver.hkd GROUP BY 1', 'day');
SELECT medallion.run('gold.hkd_daily');
SELECT medallion.alter_pipeline('gold.hkd_daily', '{"query": "SELECT day, count(*) AS n, max(id) AS top FROM silver.hkd GROUP BY 1"}');
SELECT medallion.schedule('gold.hkd_daily', '1 second');
SELECT medallion.ingest('bronze.hkd', '{"id": 3, "day": "2024-01-02"}');
SELECT medallion.run('silver.hkd');
});
my $t0 = sq(q{SELECT now()});
wait_for(qq{SELECT last_checked_at > '$t0'::timestamptz + interval '2 seconds'
            FROM medallion.pipelines WHERE name = 'gold.hkd_daily'},
	'the scheduler checks the model with pending columns');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'gold.hkd_daily' AND status <> 'succeeded'}), '0',
	'and starts no run of it');
is(sq(q{SELECT state FROM medallion.pipelines WHERE name = 'gold.hkd_daily'}), 'active', 'it stays active');
sq(q{SELECT medallion.backfill('gold.hkd_daily', NULL, NULL, 'full')});
wait_for(q{SELECT count(*) = 1 FROM medallion.runs WHERE pipeline = 'gold.hkd_daily' AND kind = 'incremental'
           AND status = 'succeeded'},
	'after the full backfill the scheduler runs it again');
is(sq(q{SELECT string_agg(day || ':' || n || ':' || top, ',' ORDER BY day) FROM gold.hkd_daily}),
	'2024-01-01:1:1,2024-01-02:2:3', 'with the new columns');

done_testing();
