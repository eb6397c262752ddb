-- medallion.replay_dlq(pipeline, ids): re-attempts a silver pipeline's DLQ rows from their
-- (possibly corrected) payloads, through the same path as a run. Rows that now pass load and
-- are marked reprocessed; rows still bad stay, with the new error; a replayed version older
-- than the stored one never overwrites it. A replay is a run of kind 'replay'.
BEGIN;
SELECT plan(27);

SELECT FROM medallion.create_bronze('crm', 'crm');
SELECT FROM medallion.create_silver('contacts', 'bronze.crm',
    '{"id": "bigint", "v": "int", "score": "int", "tier": {"type": "text", "accepted": ["gold", "silver"]}}',
    ARRAY['id'], 'v');

SELECT FROM medallion.ingest('bronze.crm', $$[
    {"id": 1, "v": 1, "score": "ten"},
    {"id": 2, "v": 1, "score": "x"},
    {"id": 3, "v": 1, "score": "y"},
    {"id": 4, "v": 1, "score": "z"},
    {"id": 5, "v": 1, "score": "w"},
    {"id": 6, "v": 1, "score": 6, "tier": "gold"}
]$$);
SELECT FROM medallion.run('silver.contacts');
SELECT FROM medallion.ingest('bronze.crm', '[{"id": 2, "v": 2, "score": 22}]');
SELECT FROM medallion.run('silver.contacts');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.contacts'), 5, 'five rows in the DLQ');

CREATE TEMP VIEW dlq_c AS
    SELECT d.*, b._raw->>'id' AS key FROM medallion.dlq d JOIN bronze.crm b ON b._seq = d.source_seq
    WHERE d.pipeline = 'silver.contacts';

-- Nothing corrected: nothing loads --------------------------------------------------------------

SELECT is(medallion.replay_dlq('silver.contacts', ARRAY[(SELECT id FROM dlq_c WHERE key = '5')]), 0::bigint,
          'replaying an uncorrected row loads nothing');
SELECT results_eq($$SELECT reprocessed, error_type, field FROM dlq_c WHERE key = '5'$$,
                  $$VALUES (false, 'cast', 'score')$$, 'it stays in the DLQ, unprocessed');

-- Corrections ---------------------------------------------------------------------------------

UPDATE medallion.dlq SET original_payload = '{"id": 1, "v": 1, "score": 10}'
    WHERE id = (SELECT id FROM dlq_c WHERE key = '1');
UPDATE medallion.dlq SET original_payload = '{"id": 2, "v": 1, "score": 2}'
    WHERE id = (SELECT id FROM dlq_c WHERE key = '2');
UPDATE medallion.dlq SET original_payload = '{"id": 3, "v": 1, "score": 3, "tier": "platinum"}'
    WHERE id = (SELECT id FROM dlq_c WHERE key = '3');
UPDATE medallion.dlq SET original_payload = '{"id": 4, "v": 1, "score": 4'
    WHERE id = (SELECT id FROM dlq_c WHERE key = '4');
CREATE TEMP TABLE before_replay AS SELECT id, error_message, pipeline_run_id FROM medallion.dlq;

SELECT is(medallion.replay_dlq('silver.contacts', ARRAY[(SELECT id FROM dlq_c WHERE key = '1'),
                                                        (SELECT id FROM dlq_c WHERE key = '2'),
                                                        (SELECT id FROM dlq_c WHERE key = '3'),
                                                        (SELECT id FROM dlq_c WHERE key = '4')]),
          2::bigint, 'replay_dlq returns the rows that now passed');
SELECT results_eq($$SELECT id, v, score FROM silver.contacts ORDER BY id$$,
                  $$VALUES (1::bigint, 1, 10), (2, 2, 22), (6, 1, 6)$$,
                  'a corrected row loads; a replayed older version does not overwrite the newer one');
SELECT results_eq($$SELECT key, reprocessed, reprocessed_at IS NOT NULL FROM dlq_c ORDER BY key$$,
                  $$VALUES ('1', true, true), ('2', true, true), ('3', false, false), ('4', false, false), ('5', false, false)$$,
                  'rows that passed are marked reprocessed, with the time');
SELECT results_eq($$SELECT error_type, field, sqlstate, error_message FROM dlq_c WHERE key = '3'$$,
                  $$VALUES ('accepted', 'tier', '23514', 'value "platinum" of "tier" is not an accepted value')$$,
                  'a row still bad stays, with its new error');
SELECT results_eq($$SELECT error_type, sqlstate, error_message FROM dlq_c WHERE key = '4'$$,
                  $$VALUES ('parse', '22032', 'payload is not valid JSON')$$,
                  'a payload corrected into invalid JSON is a parse error');
SELECT is((SELECT original_payload FROM dlq_c WHERE key = '4'), '{"id": 4, "v": 1, "score": 4',
          'and keeps the payload as it was written');
SELECT is((SELECT count(*)::int FROM dlq_c), 5, 'a replay adds no DLQ row');

SELECT results_eq(
    $$SELECT kind, status, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_dlq FROM medallion.runs
      WHERE pipeline = 'silver.contacts' ORDER BY run_id DESC LIMIT 1$$,
    $$VALUES ('replay', 'succeeded', 4::bigint, 1::bigint, 0::bigint, 1::bigint, 2::bigint)$$,
    'the replay is recorded as a run of kind replay, with its counts');
SELECT is((SELECT pipeline_run_id FROM dlq_c WHERE key = '3'),
          (SELECT max(run_id) FROM medallion.runs WHERE pipeline = 'silver.contacts'),
          'a still-bad row names the replay run');
SELECT is((SELECT count(*)::int FROM dlq_c d JOIN before_replay b USING (id)
           WHERE d.key = '5' AND d.pipeline_run_id = b.pipeline_run_id), 1, 'rows not replayed are untouched');

-- Replay of all, and of processed rows ---------------------------------------------------------

UPDATE medallion.dlq SET original_payload = '{"id": 3, "v": 1, "score": 3, "tier": "silver"}'
    WHERE id = (SELECT id FROM dlq_c WHERE key = '3');
SELECT is(medallion.replay_dlq('silver.contacts'), 1::bigint, 'replay_dlq(p) replays every unprocessed row');
SELECT results_eq($$SELECT id, score, tier FROM silver.contacts WHERE id = 3$$, $$VALUES (3::bigint, 3, 'silver')$$,
                  'the corrected row loaded');
SELECT is((SELECT count(*)::int FROM dlq_c WHERE NOT reprocessed), 2, 'two rows are still bad');
SELECT is(medallion.replay_dlq('silver.contacts', ARRAY[(SELECT id FROM dlq_c WHERE key = '1')]), 0::bigint,
          'a reprocessed row is not replayed again');
SELECT results_eq($$SELECT rows_read FROM medallion.runs WHERE pipeline = 'silver.contacts' ORDER BY run_id DESC LIMIT 1$$,
                  $$VALUES (0::bigint)$$, 'and is not read');

-- A replayed newer version wins ------------------------------------------------------------------

SELECT FROM medallion.ingest('bronze.crm', '[{"id": 6, "v": 5, "score": "bad"}]');
SELECT FROM medallion.run('silver.contacts');
UPDATE medallion.dlq SET original_payload = '{"id": 6, "v": 5, "score": 66}'
    WHERE id = (SELECT id FROM dlq_c WHERE key = '6');
SELECT is(medallion.replay_dlq('silver.contacts'), 1::bigint, 'a replayed newer version loads');
SELECT is((SELECT score FROM silver.contacts WHERE id = 6), 66, 'and overwrites the older one');

-- A corrected row that breaks an expectation is quarantined ------------------------------------

SELECT FROM medallion.expect('silver.contacts', 'positive', 'score > 0', 'quarantine');
UPDATE medallion.dlq SET original_payload = '{"id": 5, "v": 1, "score": -5}'
    WHERE id = (SELECT id FROM dlq_c WHERE key = '5');
SELECT is(medallion.replay_dlq('silver.contacts'), 1::bigint, 'a replayed row quarantined by a rule is processed');
SELECT results_eq($$SELECT q.rule, q.source_seq, q.original_payload::jsonb FROM medallion.quarantine q WHERE q.pipeline = 'silver.contacts'$$,
                  $$SELECT 'positive', b._seq, '{"id": 5, "v": 1, "score": -5}'::jsonb FROM bronze.crm b WHERE b._raw->>'id' = '5'$$,
                  'it is in the quarantine, naming its bronze row and the payload replayed');
SELECT is((SELECT reprocessed FROM dlq_c WHERE key = '5'), true, 'its DLQ row is marked reprocessed');
SELECT is((SELECT count(*)::int FROM silver.contacts WHERE id = 5), 0, 'and it is not loaded');

-- Refusals ----------------------------------------------------------------------------------------

SELECT throws_ok($$SELECT medallion.replay_dlq('silver.nosuch')$$, '42704', NULL, 'an unknown pipeline (42704)');
SELECT throws_ok($$SELECT medallion.replay_dlq(NULL)$$, '22004', NULL, 'a NULL pipeline (22004)');

SELECT is_empty(
    $$SELECT run_id FROM medallion.runs WHERE pipeline = 'silver.contacts'
        AND (status <> 'succeeded'
             OR rows_read <> rows_inserted + rows_updated + rows_unchanged + rows_dlq + rows_quarantined + rows_dropped)$$,
    'every run and replay succeeded, and rows_read = inserted + updated + unchanged + dlq + quarantined + dropped');

SELECT * FROM finish();
ROLLBACK;
