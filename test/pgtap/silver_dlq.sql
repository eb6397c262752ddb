-- Bad rows in a silver run: a value that does not cast, a missing required field, a value
-- outside the accepted list, a dangling reference, a domain CHECK failure, an expression that
-- fails; each goes to medallion.dlq with its error type, field, SQLSTATE, bronze row, run and
-- original payload, and the run goes on with the good rows.
BEGIN;
SELECT plan(21);

CREATE DOMAIN public.tap_pct AS integer CHECK (VALUE BETWEEN 0 AND 100);

SELECT FROM medallion.create_bronze('ref_src', 'erp');
SELECT FROM medallion.create_silver('accounts', 'bronze.ref_src', '{"account_id": "bigint"}', ARRAY['account_id']);
SELECT FROM medallion.ingest('bronze.ref_src', '[{"account_id": 1}, {"account_id": 2}]');
SELECT FROM medallion.run('silver.accounts');

SELECT FROM medallion.create_bronze('lines', 'erp');
SELECT FROM medallion.create_silver('lines', 'bronze.lines',
    '{"id":         "bigint",
      "qty":        {"type": "integer", "required": true},
      "pct":        {"type": "tap_pct"},
      "status":     {"type": "text", "accepted": ["open", "closed"]},
      "country":    {"type": "text", "expr": "upper(country)", "accepted": ["FR", "US"]},
      "account_id": {"path": "account.id", "type": "bigint", "references": "silver.accounts.account_id"},
      "ratio":      {"type": "integer", "expr": "100 / ratio"}}',
    ARRAY['id']);

SELECT FROM medallion.ingest('bronze.lines', $$[
    {"id": 1, "qty": 1, "pct": 50, "status": "open", "country": "fr", "account": {"id": 1}, "ratio": 4},
    {"id": 2, "qty": "three"},
    {"id": 3},
    {"id": 4, "qty": 1, "status": "pending"},
    {"id": 5, "qty": 1, "account": {"id": 99}},
    {"id": 6, "qty": 1, "pct": 101},
    {"id": 7, "qty": 1, "ratio": 0},
    {"id": 8, "qty": 1, "country": "de"},
    {"id": 9, "qty": 2, "status": "closed", "country": "us", "account": {"id": 2}},
    {"id": "ten", "qty": 1}
]$$, 'lines-1');

SELECT ok(medallion.run('silver.lines') IS NOT NULL, 'the run goes on past bad rows');
SELECT results_eq(
    $$SELECT status, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_dlq FROM medallion.runs
      WHERE pipeline = 'silver.lines'$$,
    $$VALUES ('succeeded', 10::bigint, 2::bigint, 0::bigint, 0::bigint, 8::bigint)$$,
    'the run succeeded: ten rows read, two loaded, eight sent to the DLQ');
SELECT results_eq($$SELECT id, qty, pct::int, status, country, account_id, ratio FROM silver.lines ORDER BY id$$,
                  $$VALUES (1::bigint, 1, 50, 'open', 'FR', 1::bigint, 25), (9, 2, NULL, 'closed', 'US', 2, NULL)$$,
                  'the good rows are loaded');

CREATE TEMP VIEW dlq_lines AS
    SELECT d.*, (d.original_payload::jsonb)->>'id' AS key
    FROM medallion.dlq d WHERE d.pipeline = 'silver.lines';

SELECT results_eq(
    $$SELECT key, error_type, field, sqlstate FROM dlq_lines ORDER BY source_seq$$,
    $$VALUES ('2', 'cast', 'qty', '22P02'),
             ('3', 'required', 'qty', '23502'),
             ('4', 'accepted', 'status', '23514'),
             ('5', 'references', 'account_id', '23503'),
             ('6', 'cast', 'pct', '23514'),
             ('7', 'expr', 'ratio', '22012'),
             ('8', 'accepted', 'country', '23514'),
             ('ten', 'cast', 'id', '22P02')$$,
    'each bad row has its error type, first failing field and SQLSTATE');
SELECT is((SELECT count(*)::int FROM dlq_lines d JOIN bronze.lines b ON b._seq = d.source_seq
           WHERE d.original_payload::jsonb = b._raw AND d.batch_id = b._batch_id), 8,
          'source_seq names the bronze row, original_payload is its payload, batch_id its batch');
SELECT is((SELECT count(*)::int FROM dlq_lines
           WHERE source_table = 'bronze.lines'
             AND pipeline_run_id = (SELECT run_id FROM medallion.runs WHERE pipeline = 'silver.lines')
             AND NOT reprocessed AND reprocessed_at IS NULL AND failed_at IS NOT NULL), 8,
          'each names the source table and the run, and is not reprocessed');
SELECT is((SELECT error_message FROM dlq_lines WHERE key = '2'), 'invalid input syntax for type integer: "three"',
          'a cast error keeps the cast''s message');
SELECT is((SELECT error_message FROM dlq_lines WHERE key = '3'), 'required field "qty" is missing or null',
          'a missing required field says so');
SELECT is((SELECT error_message FROM dlq_lines WHERE key = '5'), 'value "99" of "account_id" has no match in silver.accounts.account_id',
          'a dangling reference names the referenced column');
SELECT is((SELECT error_message FROM dlq_lines WHERE key = '6'), 'value for domain tap_pct violates check constraint "tap_pct_check"',
          'a domain CHECK failure keeps the domain''s message');
SELECT is((SELECT error_message FROM dlq_lines WHERE key = '8'), 'value "DE" of "country" is not an accepted value',
          'accepted applies to the final value, after expr');

-- A rerun does not send them again; a newer good version of a bad row loads ------------------

SELECT FROM medallion.run('silver.lines');
SELECT is((SELECT count(*)::int FROM dlq_lines), 8, 'a rerun sends nothing to the DLQ again');
SELECT FROM medallion.ingest('bronze.lines', '[{"id": 2, "qty": 3}, {"id": 11, "qty": "x"}, {"id": 12, "qty": 12}]');
SELECT is((SELECT rows_dlq FROM tap.run_row('silver.lines')), 1::bigint,
          'the next window has its own bad row');
SELECT is((SELECT qty FROM silver.lines WHERE id = 2), 3, 'a corrected row arriving later loads');
SELECT is((SELECT count(*)::int FROM dlq_lines), 9, 'the DLQ grew by the new bad row only');

-- A bad newest version does not hide the older good one of the same window ------------------

SELECT FROM medallion.ingest('bronze.lines', '[{"id": 13, "qty": 1}, {"id": 13, "qty": "bad"}]');
SELECT results_eq($$SELECT rows_read, rows_inserted, rows_dlq FROM tap.run_row('silver.lines')$$,
                  $$VALUES (2::bigint, 1::bigint, 1::bigint)$$, 'the good version loads, the bad one goes to the DLQ');
SELECT is((SELECT qty FROM silver.lines WHERE id = 13), 1, 'silver holds the last good version');

-- A whole window of bad rows -----------------------------------------------------------------

SELECT FROM medallion.ingest('bronze.lines', '[{"id": "a"}, {"id": "b"}]');
SELECT results_eq($$SELECT status, rows_read, rows_dlq FROM tap.run_row('silver.lines')$$,
                  $$VALUES ('succeeded', 2::bigint, 2::bigint)$$, 'a window of bad rows only is a succeeded run');

-- DLQ rows are private ----------------------------------------------------------------------

CREATE ROLE medallion_tap_dlq_reader NOLOGIN;
SET ROLE medallion_tap_dlq_reader;
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.lines'), 0,
          'a role that does not own the pipeline sees none of its DLQ rows');
RESET ROLE;

SELECT is_empty(
    $$SELECT run_id FROM medallion.runs WHERE pipeline IN ('silver.lines', 'silver.accounts')
        AND rows_read <> rows_inserted + rows_updated + rows_unchanged + rows_dlq + rows_quarantined + rows_dropped$$,
    'rows_read = inserted + updated + unchanged + dlq + quarantined + dropped on every run');
SELECT is((SELECT sum(rows_dlq)::int FROM medallion.runs WHERE pipeline = 'silver.lines'),
          (SELECT count(*)::int FROM dlq_lines), 'rows_dlq counts exactly the DLQ rows');

SELECT * FROM finish();
ROLLBACK;
