-- A run refuses a REPEATABLE READ (or SERIALIZABLE) transaction: its snapshot would predate
-- the wait for the pipeline's lock, so it could read a stale watermark and process rows twice
-- (docs/architecture.md, "The life of a run"). The refusal is an error (25001), not a recorded run.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT plan(6);

SELECT FROM medallion.create_bronze('rr', 'app');
SELECT FROM medallion.create_silver('rr', 'bronze.rr', '{"id": "bigint"}', ARRAY['id']);
SELECT FROM medallion.ingest('bronze.rr', '[{"id": 1}]');

SELECT throws_ok($$SELECT medallion.run('silver.rr')$$, '25001',
                 'a medallion run cannot execute in a REPEATABLE READ transaction',
                 'run() refuses a REPEATABLE READ transaction (25001)');
SELECT throws_ok($$SELECT medallion.run('silver.rr', strict => true)$$, '25001', NULL, 'strict or not');
SELECT throws_ok($$SELECT * FROM medallion.run_all()$$, '25001', NULL, 'run_all() refuses it too');
SELECT throws_ok($$SELECT medallion.replay_dlq('silver.rr')$$, '25001', NULL, 'and replay_dlq()');
SELECT is((SELECT count(*)::int FROM medallion.runs WHERE pipeline = 'silver.rr'), 0, 'nothing is recorded');
SELECT is((SELECT count(*)::int FROM silver.rr), 0, 'nothing is loaded');

SELECT * FROM finish();
ROLLBACK;
