-- medallion.expect(pipeline, name, check_sql, on_fail): row-level business rules checked on the
-- typed rows of a run. warn loads the row and counts it, drop leaves it out, quarantine leaves
-- it out with a medallion.quarantine row naming the rule, fail fails the run. A row failing
-- several rules gets the strictest action.
BEGIN;
SELECT plan(26);

SELECT FROM medallion.create_bronze('sales', 'pos');
SELECT FROM medallion.create_silver('sales', 'bronze.sales',
    '{"id": "bigint", "amount": "numeric", "sold_on": "date", "region": {"type": "text", "expr": "lower(region)"}}',
    ARRAY['id']);

SELECT lives_ok($$SELECT medallion.expect('silver.sales', 'non_negative', 'amount >= 0', 'quarantine')$$,
                'a quarantine expectation');
SELECT lives_ok($$SELECT medallion.expect('silver.sales', 'plausible', 'amount < 1000', 'drop')$$,
                'a drop expectation');
SELECT lives_ok($$SELECT medallion.expect('silver.sales', 'recent', 'sold_on >= ''2024-01-01''', 'warn')$$,
                'a warn expectation');
SELECT lives_ok($$SELECT medallion.expect('silver.sales', 'known_region', 'region IN (''eu'', ''us'')')$$,
                'on_fail defaults to quarantine; a rule sees the final value (after expr)');
SELECT results_eq($$SELECT name, on_fail FROM medallion.expectations WHERE pipeline = 'silver.sales' ORDER BY name$$,
                  $$VALUES ('known_region', 'quarantine'), ('non_negative', 'quarantine'), ('plausible', 'drop'), ('recent', 'warn')$$,
                  'the expectations are recorded');

SELECT throws_ok($$SELECT medallion.expect('silver.sales', 'x', 'amount >= 0', 'explode')$$, '22023', NULL,
                 'on_fail must be warn, drop, quarantine or fail');
SELECT throws_ok($$SELECT medallion.expect('silver.sales', 'x', 'nosuch > 0')$$, '42703', NULL,
                 'a rule naming a missing column is refused');
SELECT throws_ok($$SELECT medallion.expect('silver.sales', 'x', 'amount >')$$, '42601', NULL,
                 'a rule that does not parse is refused');
SELECT throws_ok($$SELECT medallion.expect('silver.nosuch', 'x', 'true')$$, '42704', NULL,
                 'an unknown pipeline is refused');
SELECT throws_ok($$SELECT medallion.expect('bronze.sales', 'x', 'true')$$, '42809', NULL,
                 'expectations apply to silver pipelines');
SELECT throws_ok($$SELECT medallion.expect('silver.sales', NULL, 'true')$$, '22004', NULL,
                 'a NULL name is refused');

SELECT FROM medallion.ingest('bronze.sales', $$[
    {"id": 1, "amount": 10,    "sold_on": "2024-05-01", "region": "EU"},
    {"id": 2, "amount": -5,    "sold_on": "2024-05-01", "region": "EU"},
    {"id": 3, "amount": 5000,  "sold_on": "2024-05-01", "region": "US"},
    {"id": 4, "amount": 20,    "sold_on": "2023-05-01", "region": "us"},
    {"id": 5, "amount": -9000, "sold_on": "2024-05-01", "region": "EU"},
    {"id": 6, "amount": 30,    "sold_on": "2024-05-01", "region": "mars"},
    {"id": 7, "amount": "lots", "sold_on": "2024-05-01", "region": "EU"},
    {"id": 8, "amount": 40,    "region": "us"}
]$$);

SELECT results_eq(
    $$SELECT status, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_dlq, rows_quarantined, rows_dropped, rows_warned
      FROM tap.run_row('silver.sales')$$,
    $$VALUES ('succeeded', 8::bigint, 3::bigint, 0::bigint, 0::bigint, 1::bigint, 3::bigint, 1::bigint, 1::bigint)$$,
    'counts: 3 loaded (one with a warning), 1 dropped, 3 quarantined, 1 in the DLQ');
SELECT results_eq($$SELECT id FROM silver.sales ORDER BY id$$, $$VALUES (1::bigint), (4), (8)$$,
                  'warned rows and rows whose rule is unknown (NULL) load; dropped and quarantined do not');
SELECT results_eq(
    $$SELECT (original_payload::jsonb)->>'id', rule, error_message, source_table FROM medallion.quarantine
      WHERE pipeline = 'silver.sales' ORDER BY source_seq$$,
    $$VALUES ('2', 'non_negative', 'expectation "non_negative" failed', 'bronze.sales'),
             ('5', 'non_negative', 'expectation "non_negative" failed', 'bronze.sales'),
             ('6', 'known_region', 'expectation "known_region" failed', 'bronze.sales')$$,
    'each quarantined row names its rule; quarantine wins over drop for a row failing both');
SELECT is((SELECT count(*)::int FROM medallion.quarantine q JOIN bronze.sales b ON b._seq = q.source_seq
           WHERE q.original_payload::jsonb = b._raw
             AND q.pipeline_run_id = (SELECT max(run_id) FROM medallion.runs WHERE pipeline = 'silver.sales')
             AND NOT q.reprocessed), 3,
          'a quarantine row keeps the bronze row, its payload and the run');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.sales'), 1,
          'a row that does not type goes to the DLQ before any rule');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.sales'
           AND (original_payload::jsonb)->>'id' IN ('3', '2')), 0, 'dropped and quarantined rows are not in the DLQ');

-- A newer version failing a rule does not replace the stored one ---------------------------

SELECT FROM medallion.ingest('bronze.sales', '[{"id": 1, "amount": -1, "sold_on": "2024-05-02", "region": "eu"}]');
SELECT results_eq($$SELECT rows_read, rows_updated, rows_quarantined FROM tap.run_row('silver.sales')$$,
                  $$VALUES (1::bigint, 0::bigint, 1::bigint)$$, 'a newer version breaking a rule is quarantined');
SELECT is((SELECT amount FROM silver.sales WHERE id = 1), 10::numeric, 'and the stored version stays');

-- fail ---------------------------------------------------------------------------------------

SELECT lives_ok($$SELECT medallion.expect('silver.sales', 'sane', 'amount < 1000000', 'fail')$$, 'a fail expectation');
SELECT FROM medallion.ingest('bronze.sales', '[{"id": 20, "amount": 1, "sold_on": "2024-05-01", "region": "eu"},
                                              {"id": 21, "amount": 5000000, "sold_on": "2024-05-01", "region": "eu"}]');
SELECT results_eq($$SELECT status, error_class, sqlstate, error_message FROM tap.run_row('silver.sales')$$,
                  $$VALUES ('failed', 'business_rule', 'MD001', 'expectation "sane" failed')$$,
                  'a row failing a fail expectation fails the run (business_rule)');
SELECT is((SELECT count(*)::int FROM silver.sales WHERE id = 20), 0, 'nothing of the failed run is loaded');
SELECT throws_ok($$SELECT medallion.run('silver.sales', strict => true)$$, 'MD001', NULL, 'strict raises it');

-- Replacing an expectation -------------------------------------------------------------------

SELECT lives_ok($$SELECT medallion.expect('silver.sales', 'sane', 'amount < 1000000', 'warn')$$,
                'expect() with an existing name replaces the rule');
SELECT results_eq($$SELECT status, rows_read, rows_inserted, rows_dropped, rows_warned FROM tap.run_row('silver.sales')$$,
                  $$VALUES ('succeeded', 2::bigint, 1::bigint, 1::bigint, 0::bigint)$$,
                  'the retried window: one loads, the other is dropped (plausible wins over sane''s warning)');

SELECT is_empty(
    $$SELECT run_id FROM medallion.runs WHERE pipeline = 'silver.sales'
        AND rows_read <> rows_inserted + rows_updated + rows_unchanged + rows_dlq + rows_quarantined + rows_dropped$$,
    'rows_read = inserted + updated + unchanged + dlq + quarantined + dropped on every run');

SELECT * FROM finish();
ROLLBACK;
