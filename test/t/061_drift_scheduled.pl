# Payload drift halts scheduled runs the same way it halts manual ones: a run worker meets a
# required key missing from a whole window (MD050), the run is recorded failed with class
# schema, the pipeline halted with a schema_change alert and a schema_changes row, nothing
# loaded, no DLQ row; after resume() (with
# max_bad_ratio 1) a worker judges the window again and loads it, its bad rows in the DLQ.
# A strict schema_policy halts a scheduled run on an unread key (MD051).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('drift_scheduled', conf => qq{
max_worker_processes = 16
log_min_messages = warning
});

sq('CREATE EXTENSION medallion');
wait_for(
	q{SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE backend_type = 'medallion scheduler' AND datname = 'postgres'},
	'the scheduler runs');

sq(q{
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.create_silver('ev', 'bronze.ev', '{"id": {"type": "int", "required": true}, "v": "text"}', '{id}');
SELECT medallion.alter_pipeline('silver.ev', '{"drift_min_rows": 3}');
SELECT medallion.schedule('silver.ev', '1 second');
SELECT medallion.ingest('bronze.ev', '[{"id": 1, "v": "a"}]');
});
wait_for(q{SELECT count(*) = 1 FROM silver.ev}, 'a clean window loads');

# the payload renamed its id: every row of the window lacks the required key
sq(q{SELECT medallion.ingest('bronze.ev', '[{"ident": 2}, {"ident": 3}, {"ident": 4}]')});
wait_for(q{SELECT state = 'halted' FROM medallion.pipelines WHERE name = 'silver.ev'},
	'a scheduled run halts the pipeline on a missing required key');
is( sq(q{SELECT status || '/' || error_class || '/' || sqlstate || '/' || (worker_pid IS NOT NULL)
	     FROM medallion.runs WHERE pipeline = 'silver.ev' ORDER BY run_id DESC LIMIT 1}),
	'failed/schema/MD050/true', 'the worker recorded the run failed, class schema, SQLSTATE MD050');
is( sq(q{SELECT path || '/' || change || '/' || classification || '/' || (run_id IS NOT NULL)
	     FROM medallion.schema_changes WHERE pipeline = 'silver.ev'}),
	'id/key_missing/breaking/true', 'recorded in schema_changes with its run');
is(sq(q{SELECT count(*) FROM medallion.alerts WHERE pipeline = 'silver.ev' AND kind = 'schema_change' AND resolved_at IS NULL}),
	'1', 'a schema_change alert is open');
is(sq(q{SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.ev'}), '0', 'no DLQ rows');
is(sq(q{SELECT count(*) FROM silver.ev}), '1', 'nothing loaded');

# max_bad_ratio 1 loads the window with its bad rows in the DLQ; resume() lets it run again
sq(q{SELECT medallion.alter_pipeline('silver.ev', '{"max_bad_ratio": 1}'); SELECT medallion.resume('silver.ev')});
wait_for(q{SELECT count(*) = 3 FROM medallion.dlq WHERE pipeline = 'silver.ev'},
	'after resume() the window is judged again and loads, its bad rows in the DLQ');
is(sq(q{SELECT state FROM medallion.pipelines WHERE name = 'silver.ev'}), 'active', 'the pipeline is active');
is(sq(q{SELECT count(*) FROM medallion.alerts WHERE pipeline = 'silver.ev' AND kind = 'schema_change' AND resolved_at IS NULL}),
	'0', 'the alert was resolved by resume()');

# strict: an unread key halts a scheduled run too
sq(q{
SELECT medallion.create_bronze('st', 'app');
SELECT medallion.create_silver('st', 'bronze.st', '{"id": "int"}', '{id}', options => '{"schema_policy": "strict"}');
SELECT medallion.schedule('silver.st', '1 second');
SELECT medallion.ingest('bronze.st', '[{"id": 1, "surprise": true}]');
});
wait_for(q{SELECT state = 'halted' FROM medallion.pipelines WHERE name = 'silver.st'},
	'strict: a scheduled run halts on an unread key');
is( sq(q{SELECT sqlstate FROM medallion.runs WHERE pipeline = 'silver.st' ORDER BY run_id DESC LIMIT 1}),
	'MD051', 'with SQLSTATE MD051');
is(sq(q{SELECT count(*) FROM silver.st}), '0', 'nothing loaded');

$node->stop;
done_testing();
