-- Replays, as unprivileged roles: replay_dlq() of a bronze pipeline's unparseable records
-- (corrected with dlq_correct, parsed again, landed under a new batch, read by silver's next
-- run; still bad: pending with the new error; twice: lands once), and replay_quarantine()
-- after a rule was fixed (rows that pass merged newest-wins and settled with who and when,
-- the others kept; idempotent).  The owner and its operators only.
BEGIN;
SELECT plan(46);

CREATE ROLE medallion_tap_rp_owner NOLOGIN;
CREATE ROLE medallion_tap_rp_oncall NOLOGIN;
CREATE ROLE medallion_tap_rp_stranger NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_rp_owner;

SET ROLE medallion_tap_rp_owner;
SELECT FROM medallion.create_bronze('rp_src', 'app');
SELECT FROM medallion.create_silver('rp', 'bronze.rp_src',
    '{"id": {"type": "int", "required": true}, "v": "int", "n": "int"}', ARRAY['id'], 'v');
SELECT is(medallion.ingest_text('bronze.rp_src',
    E'{"id": 1, "v": 1, "n": 1}\n{"id": 2, "v": 1, "n": 2\n[1, 2]\n{"id": 3, "v": 1, "n": 3}',
    'ndjson', 'b1', 'day1.ndjson'), 2::bigint, 'two of four records land');
RESET ROLE;

CREATE TEMP VIEW letters AS
    SELECT id, line_number, status, reprocessed, error_message, sqlstate, replay_batch_id, replayed_by,
           batch_id, file_name
    FROM medallion.dlq WHERE pipeline = 'bronze.rp_src';
GRANT SELECT ON letters TO PUBLIC;
SELECT results_eq($$SELECT line_number, status, batch_id FROM letters ORDER BY id$$,
                  $$VALUES (2::bigint, 'pending', 'b1'), (3, 'pending', 'b1')$$,
                  'the two unparseable records are bronze dead letters, pending');
SELECT set_config('rp.broken', (SELECT id::text FROM letters WHERE line_number = 2), true);
SELECT set_config('rp.array', (SELECT id::text FROM letters WHERE line_number = 3), true);

-- Who may replay ---------------------------------------------------------------------------
SET ROLE medallion_tap_rp_stranger;
SELECT throws_ok($$SELECT medallion.replay_dlq('bronze.rp_src')$$, '42501', NULL,
                 'another role cannot replay a bronze pipeline''s dead letters');
RESET ROLE;

-- Uncorrected: nothing lands, the new error is kept -----------------------------------------
UPDATE medallion.dlq SET error_message = 'old', failed_at = now() - interval '1 day'
    WHERE id = current_setting('rp.broken')::bigint;
SET ROLE medallion_tap_rp_owner;
SELECT is(medallion.replay_dlq('bronze.rp_src'), 0::bigint, 'replaying uncorrected records lands nothing');
RESET ROLE;
SELECT results_eq($$SELECT status, sqlstate, error_message <> 'old' FROM letters ORDER BY id$$,
                  $$VALUES ('pending', '22032', true), ('pending', '22032', true)$$,
                  'they stay pending, with the error found now');
SELECT is((SELECT error_message FROM letters WHERE id = current_setting('rp.array')::bigint),
          'record is not a JSON object', 'the error says why');
SELECT is((SELECT count(*) FROM bronze.rp_src), 2::bigint, 'bronze is unchanged');

-- Corrected: parsed again and landed under a new batch ---------------------------------------
SET ROLE medallion_tap_rp_owner;
SELECT lives_ok(format($$SELECT medallion.dlq_correct(%s, '{"id": 2, "v": 1, "n": 2}')$$, current_setting('rp.broken')),
                'the owner corrects the broken record');
SELECT lives_ok(format($$SELECT medallion.dlq_correct(%s, '[1, 2, 3]')$$, current_setting('rp.array')),
                'a correction that is still not an object is taken as given');
SELECT is(medallion.replay_dlq('bronze.rp_src'), 1::bigint, 'replay_dlq lands the corrected record');
RESET ROLE;
SELECT results_eq($$SELECT status, replay_batch_id LIKE 'dlq-replay:%', replayed_by FROM letters
                    WHERE id = current_setting('rp.broken')::bigint$$,
                  $$VALUES ('replayed', true, 'medallion_tap_rp_owner'::text)$$,
                  'its dead letter is replayed, with the new batch and who replayed it');
SELECT results_eq($$SELECT b._raw, b._file_name FROM bronze.rp_src b
                    JOIN letters l ON l.replay_batch_id = b._batch_id$$,
                  $$VALUES ('{"id": 2, "v": 1, "n": 2}'::jsonb, 'day1.ndjson'::text)$$,
                  'the record is in bronze under that batch, with its file name');
SELECT results_eq($$SELECT rows_landed, rows_dlq FROM medallion.batches
                    WHERE batch_id = (SELECT replay_batch_id FROM letters WHERE id = current_setting('rp.broken')::bigint)$$,
                  $$VALUES (1::bigint, 0::bigint)$$, 'the new batch is recorded like any batch');
SELECT results_eq($$SELECT status, error_message, replay_batch_id FROM letters WHERE id = current_setting('rp.array')::bigint$$,
                  $$VALUES ('pending', 'record is not a JSON object', NULL::text)$$,
                  'a correction still unparseable stays pending with the new error');

SET ROLE medallion_tap_rp_owner;
SELECT is(medallion.replay_dlq('bronze.rp_src', ARRAY[current_setting('rp.broken')::bigint]), 0::bigint,
          'replaying the landed dead letter again lands nothing');
RESET ROLE;
SELECT is((SELECT count(*) FROM bronze.rp_src WHERE _raw->>'id' = '2'), 1::bigint, 'it landed once');

-- An operator replays; silver's next run reads what landed ------------------------------------
SET ROLE medallion_tap_rp_owner;
SELECT FROM medallion.grant_operator('bronze.rp_src', 'medallion_tap_rp_oncall');
SELECT lives_ok(format($$SELECT medallion.dlq_correct(%s, '{"id": 4, "v": 1, "n": 4}')$$, current_setting('rp.array')),
                'the owner corrects the other record');
RESET ROLE;
SET ROLE medallion_tap_rp_oncall;
SELECT is(medallion.replay_dlq('bronze.rp_src'), 1::bigint, 'an operator replays it');
SELECT throws_ok($$SELECT count(*) FROM bronze.rp_src$$, '42501', NULL, 'without gaining any table privilege');
RESET ROLE;
SELECT is((SELECT count(*) FROM letters WHERE status = 'pending'), 0::bigint, 'no bronze dead letter is pending');
SET ROLE medallion_tap_rp_owner;
SELECT FROM medallion.run('silver.rp');
SELECT results_eq($$SELECT id, n FROM silver.rp ORDER BY id$$,
                  $$VALUES (1, 1), (2, 2), (3, 3), (4, 4)$$,
                  'silver''s next run reads the records replayed into bronze');
RESET ROLE;

-- replay_quarantine after a rule was fixed -----------------------------------------------------
SET ROLE medallion_tap_rp_owner;
SELECT FROM medallion.expect('silver.rp', 'small', 'n < 10', 'quarantine');
SELECT FROM medallion.ingest('bronze.rp_src', '[{"id": 5, "v": 1, "n": 50}, {"id": 6, "v": 1, "n": 60},
                                              {"id": 7, "v": 1, "n": 700}, {"id": 1, "v": 1, "n": 11}]');
SELECT FROM medallion.run('silver.rp');
-- a newer version of id 6 arrives and passes
SELECT FROM medallion.ingest('bronze.rp_src', '{"id": 6, "v": 2, "n": 6}');
SELECT FROM medallion.run('silver.rp');
RESET ROLE;

CREATE TEMP VIEW held AS
    SELECT q.id, b._raw->>'id' AS key, q.rule, q.reprocessed, q.reprocessed_at, q.replayed_by,
           q.replay_run_id, q.pipeline_run_id, q.error_message
    FROM medallion.quarantine q JOIN bronze.rp_src b ON b._seq = q.source_seq
    WHERE q.pipeline = 'silver.rp';
SELECT results_eq($$SELECT key, reprocessed FROM held ORDER BY key$$,
                  $$VALUES ('1', false), ('5', false), ('6', false), ('7', false)$$,
                  'four rows are quarantined by the rule');

SET ROLE medallion_tap_rp_stranger;
SELECT throws_ok($$SELECT medallion.replay_quarantine('silver.rp')$$, '42501', NULL,
                 'another role cannot replay the quarantine');
RESET ROLE;
SET ROLE medallion_tap_rp_owner;
SELECT is(medallion.replay_quarantine('silver.rp'), 0::bigint, 'under the same rule nothing passes');
RESET ROLE;
SELECT is((SELECT count(*) FROM held WHERE NOT reprocessed), 4::bigint, 'and every row stays quarantined');
SELECT is((SELECT count(*) FROM medallion.quarantine WHERE pipeline = 'silver.rp'), 4::bigint,
          'without being quarantined twice');

-- the rule is fixed
SET ROLE medallion_tap_rp_owner;
SELECT FROM medallion.expect('silver.rp', 'small', 'n < 100', 'quarantine');
SELECT is(medallion.replay_quarantine('silver.rp',
              ARRAY(SELECT id FROM medallion.quarantine WHERE pipeline = 'silver.rp' AND original_payload LIKE '%"id": 5%')),
          1::bigint, 'replay_quarantine with ids replays those only');
SELECT results_eq($$SELECT id, n FROM silver.rp WHERE id IN (1, 5, 6) ORDER BY id$$,
                  $$VALUES (1, 1), (5, 50), (6, 6)$$, 'the row that passes now is merged');
SELECT is(medallion.replay_quarantine('silver.rp'), 2::bigint, 'then all the others: two pass');
RESET ROLE;
SELECT results_eq($$SELECT id, v, n FROM silver.rp WHERE id IN (1, 6, 7) ORDER BY id$$,
                  $$VALUES (1, 1, 11), (6, 2, 6)$$,
                  'merged newest-wins: a newer version of the key is not overwritten; the same version is');
SELECT results_eq($$SELECT key, reprocessed, reprocessed_at IS NOT NULL, replayed_by FROM held ORDER BY key$$,
                  $$VALUES ('1', true, true, 'medallion_tap_rp_owner'::text), ('5', true, true, 'medallion_tap_rp_owner'),
                           ('6', true, true, 'medallion_tap_rp_owner'), ('7', false, false, NULL)$$,
                  'the rows that passed are settled, with who and when; the one that fails stays');
SELECT is((SELECT kind FROM medallion.runs WHERE run_id = (SELECT max(replay_run_id) FROM held)), 'replay',
          'the settling run is a replay');
SELECT is((SELECT pipeline_run_id FROM held WHERE key = '7'), (SELECT max(replay_run_id) FROM held),
          'the row that still fails names the replay that tried it');
SELECT is((SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.rp'), 0::bigint,
          'nothing of the quarantine goes to the DLQ');

SET ROLE medallion_tap_rp_owner;
SELECT is(medallion.replay_quarantine('silver.rp'), 0::bigint, 'replaying again loads nothing');
RESET ROLE;
SELECT results_eq($$SELECT id, v, n FROM silver.rp ORDER BY id$$,
                  $$VALUES (1, 1, 11), (2, 1, 2), (3, 1, 3), (4, 1, 4), (5, 1, 50), (6, 2, 6)$$,
                  'and silver is unchanged');

-- a rule that drops or an incompatible type keeps the row quarantined, with the reason
SET ROLE medallion_tap_rp_owner;
SELECT FROM medallion.expect('silver.rp', 'small', 'n < 1000', 'quarantine');
SELECT FROM medallion.expect('silver.rp', 'no_sevens', 'id <> 7', 'drop');
SELECT is(medallion.replay_quarantine('silver.rp'), 0::bigint, 'a row a drop rule refuses does not load');
RESET ROLE;
SELECT results_eq($$SELECT rule, reprocessed FROM held WHERE key = '7'$$, $$VALUES ('no_sevens', false)$$,
                  'it stays quarantined, under the rule that refuses it now');

-- the rules pass it now, but the contract no longer does: still quarantined, nothing in the DLQ
SET ROLE medallion_tap_rp_owner;
SELECT FROM medallion.expect('silver.rp', 'no_sevens', 'id <> 7', 'warn');
SELECT lives_ok($$SELECT medallion.alter_contract('silver.rp',
                    '{"n": {"type": "int", "accepted": [1, 2, 3, 4, 6, 11, 50]}}', NULL, true)$$,
                'the contract is narrowed (forced)');
SELECT is(medallion.replay_quarantine('silver.rp'), 0::bigint, 'a row the contract refuses does not load');
RESET ROLE;
SELECT results_eq($$SELECT reprocessed, error_message LIKE '%accepted%' OR error_message LIKE '%700%'
                    FROM held WHERE key = '7'$$, $$VALUES (false, true)$$,
                  'it stays quarantined, with the contract''s reason');
SELECT is((SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.rp'), 0::bigint,
          'and nothing of it goes to the DLQ');

-- an operator may replay the quarantine; a bronze pipeline has none
SET ROLE medallion_tap_rp_owner;
SELECT FROM medallion.grant_operator('silver.rp', 'medallion_tap_rp_oncall');
RESET ROLE;
SET ROLE medallion_tap_rp_oncall;
SELECT lives_ok($$SELECT medallion.replay_quarantine('silver.rp')$$, 'an operator replays the quarantine');
RESET ROLE;
SELECT throws_ok($$SELECT medallion.replay_quarantine('bronze.rp_src')$$, '0A000', NULL,
                 'a bronze pipeline has no quarantine to replay');
SELECT throws_ok($$SELECT medallion.replay_quarantine('silver.nope')$$, '42704', NULL, 'an unknown pipeline');
SELECT throws_ok($$SELECT medallion.replay_quarantine(NULL)$$, '22004', NULL, 'pipeline must not be NULL');

SELECT * FROM finish();
ROLLBACK;
