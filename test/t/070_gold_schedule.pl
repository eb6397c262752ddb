# Gold models are scheduled like silver pipelines, in run workers: with 'on_change' a silver
# run that changed rows wakes the scheduler at its commit and the model is refreshed (only the
# changed day) without any manual call; an interval schedule's empty checks start no worker
# (the pending check is "unconsumed change records of the upstreams"); a scheduled run
# executes the query as the model's NOLOGIN owner; freshness covers the model.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('gold_schedule', conf => qq{
max_worker_processes = 16
log_min_messages = warning
});

sq('CREATE EXTENSION medallion');
wait_for(
	q{SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE backend_type = 'medallion scheduler' AND datname = 'postgres'},
	'CREATE EXTENSION starts a scheduler in the database');

sq(q{
CREATE ROLE gold_owner NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver, gold TO gold_owner;
SET ROLE gold_owner;
SELECT medallion.create_bronze('sales_raw', 'app');
SELECT medallion.create_silver('sales', 'bronze.sales_raw',
  '{"id": "int", "amount": "int", "day": "date"}', '{id}');
SELECT medallion.ingest('bronze.sales_raw', '[{"id": 1, "amount": 10, "day": "2024-03-01"},
                                               {"id": 2, "amount": 20, "day": "2024-03-02"}]');
SELECT medallion.run('silver.sales');
SELECT medallion.create_gold('daily', 'SELECT day, sum(amount) AS amount, current_user::text AS made_by
                                       FROM silver.sales GROUP BY 1', 'day');
SELECT medallion.run('gold.daily');
});
is(sq(q{SELECT string_agg(day || '=' || amount, ',' ORDER BY day) FROM gold.daily}),
	'2024-03-01=10,2024-03-02=20', 'the model is built by a manual run');

# on_change: both scheduled, one ingest; the silver run's change record wakes the model.
sq(q{SET ROLE gold_owner;
     SELECT medallion.schedule('silver.sales', 'on_change');
     SELECT medallion.schedule('gold.daily', 'on_change');});
sq(q{SET ROLE gold_owner;
     SELECT medallion.ingest('bronze.sales_raw', '[{"id": 2, "amount": 25, "day": "2024-03-02"},
                                                   {"id": 3, "amount": 5, "day": "2024-03-03"}]')});
wait_for(q{SELECT count(*) = 1 FROM gold.daily WHERE day = '2024-03-03' AND amount = 5},
	'on_change: a silver run that changed rows wakes the model, which refreshes by itself');
wait_for(q{SELECT amount = 25 FROM gold.daily WHERE day = '2024-03-02'}, 'with the changed day too');
is( sq(q{SELECT count(*) FROM medallion.runs
	     WHERE pipeline = 'gold.daily' AND worker_pid IS NOT NULL AND status = 'succeeded'
	       AND kind = 'incremental' AND detail->'partitions' = '["2024-03-02", "2024-03-03"]'::jsonb}),
	'1', 'in a run worker, refreshing only the changed days');
is(sq(q{SELECT string_agg(DISTINCT made_by, ',') FROM gold.daily}), 'gold_owner',
	'the scheduled run executed the query as the model\'s NOLOGIN owner');
is(sq(q{SELECT lag FROM medallion.freshness WHERE pipeline = 'gold.daily'}), '00:00:00',
	'freshness covers the model: caught up');

# interval: empty checks start no worker and add no run row
sq(q{SET ROLE gold_owner; SELECT medallion.schedule('gold.daily', '1 second')});
my $runs = sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'gold.daily'});
my $t0 = sq(q{SELECT now()});
wait_for(
	qq{SELECT last_checked_at > '$t0'::timestamptz + interval '2 seconds'
	   FROM medallion.pipelines WHERE name = 'gold.daily'},
	'an interval schedule checks the model');
is(sq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'gold.daily'}), $runs,
	'with no unconsumed change upstream, no run is started');

$node->stop;
done_testing();
