-- The pipeline state machine as a manual run sees it: failures count toward the circuit
-- breaker (breaker_threshold), an open breaker refuses manual runs, a success closes it and
-- resolves its alert, pause() and resume() set the state, resume() forgets the failures.
-- alter_pipeline() checks option names and types against the one table of options. The
-- freshness view computes each pipeline's lag once per row.
BEGIN;
SELECT plan(14);

SELECT FROM medallion.create_bronze('pol', 'app');
SELECT FROM medallion.create_silver('pol', 'bronze.pol', '{"k": "text", "q": "integer"}', ARRAY['k']);
SELECT FROM medallion.ingest('bronze.pol', '[{"k": "a", "q": 1}]');
SELECT FROM medallion.run('silver.pol');

-- Failures open the breaker --------------------------------------------------------------------

SELECT FROM medallion.alter_pipeline('silver.pol', '{"breaker_threshold": 2}');
ALTER TABLE silver.pol ADD CONSTRAINT q_small CHECK (q < 100);
SELECT FROM medallion.ingest('bronze.pol', '[{"k": "b", "q": 500}]');
SELECT FROM medallion.run('silver.pol');
SELECT results_eq($$SELECT state, consecutive_failures FROM medallion.pipelines WHERE name = 'silver.pol'$$,
                  $$VALUES ('active'::text, 1)$$, 'one failure is counted, the pipeline stays active');
SELECT FROM medallion.run('silver.pol');
SELECT results_eq($$SELECT state, consecutive_failures, circuit_opened_at IS NOT NULL
                    FROM medallion.pipelines WHERE name = 'silver.pol'$$,
                  $$VALUES ('circuit_open'::text, 2, true)$$, 'breaker_threshold failures open the breaker');
SELECT is((SELECT count(*)::int FROM medallion.alerts
           WHERE pipeline = 'silver.pol' AND kind = 'circuit_open' AND resolved_at IS NULL), 1,
          'with an open circuit_open alert');
SELECT throws_ok($$SELECT medallion.run('silver.pol')$$, '55000', 'pipeline "silver.pol" is circuit-open',
                 'a manual run of a circuit-open pipeline is refused');

-- resume() and a success -------------------------------------------------------------------------

SELECT FROM medallion.resume('silver.pol');
SELECT results_eq($$SELECT state, consecutive_failures, circuit_opened_at IS NULL
                    FROM medallion.pipelines WHERE name = 'silver.pol'$$,
                  $$VALUES ('active'::text, 0, true)$$, 'resume() makes it active and forgets the failures');
SELECT is((SELECT count(*)::int FROM medallion.alerts
           WHERE pipeline = 'silver.pol' AND resolved_at IS NULL), 0, 'and resolves the alert');
ALTER TABLE silver.pol DROP CONSTRAINT q_small;
SELECT FROM medallion.run('silver.pol');
SELECT results_eq($$SELECT status, rows_read, error_class FROM medallion.runs
                    WHERE pipeline = 'silver.pol' ORDER BY run_id DESC LIMIT 1$$,
                  $$VALUES ('succeeded'::text, 1::bigint, NULL::text)$$,
                  'a success is recorded with its counts');
SELECT results_eq($$SELECT state, consecutive_failures, last_success_at IS NOT NULL
                    FROM medallion.pipelines WHERE name = 'silver.pol'$$,
                  $$VALUES ('active'::text, 0, true)$$, 'and leaves the pipeline active');

-- pause() ----------------------------------------------------------------------------------------

SELECT FROM medallion.pause('silver.pol');
SELECT throws_ok($$SELECT medallion.run('silver.pol')$$, '55000', 'pipeline "silver.pol" is paused',
                 'a paused pipeline is refused');
SELECT FROM medallion.resume('silver.pol');
SELECT is((SELECT state FROM medallion.pipelines WHERE name = 'silver.pol'), 'active', 'resume() undoes it');

-- Options ----------------------------------------------------------------------------------------

SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.pol', '{"breaker_treshold": 2}')$$, '22023',
                 'unrecognized pipeline option "breaker_treshold"', 'an unknown option is refused');
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.pol', '{"retry_cap": "soon"}')$$, '22007', NULL,
                 'a value of the wrong type is refused');

-- The freshness view -------------------------------------------------------------------------------

SET LOCAL track_functions = 'all';
SELECT FROM medallion.alter_pipeline('silver.pol', '{"freshness_sla": "1 hour"}');
SELECT is((SELECT status FROM medallion.freshness WHERE pipeline = 'silver.pol'), 'fresh',
          'a caught-up pipeline is fresh');
SELECT is(pg_stat_get_xact_function_calls('medallion.pipeline_lag(text)'::regprocedure), 1::bigint,
          'the view called pipeline_lag once for its one row');

SELECT * FROM finish();
ROLLBACK;
