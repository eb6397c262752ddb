-- Lifecycle and DLQ triage, as unprivileged owners: drop_pipeline (refused while read,
-- cascade, drop_table, a table already dropped by hand frees its name), dlq_correct and
-- dlq_discard by the owner (refused to others), dlq_summary, and the status view.
BEGIN;
SELECT plan(34);

CREATE ROLE medallion_tap_life_owner NOLOGIN;
CREATE ROLE medallion_tap_life_other NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_life_owner, medallion_tap_life_other;

SET ROLE medallion_tap_life_owner;
SELECT FROM medallion.create_bronze('life_src', 'app');
SELECT FROM medallion.create_silver('life_a', 'bronze.life_src', '{"id": {"type": "int", "required": true}, "n": "int"}', ARRAY['id']);
SELECT FROM medallion.create_silver('life_b', 'bronze.life_src', '{"id": {"type": "int", "required": true}}', ARRAY['id']);
SELECT FROM medallion.ingest('bronze.life_src', '[{"id": 1, "n": 1}, {"id": 2, "n": "x"}, {"id": 3, "n": "y"}, {"id": 4, "n": 4}]');
SELECT FROM medallion.run('silver.life_a');
SELECT FROM medallion.schedule('silver.life_a', '10 minutes');

-- DLQ triage ----------------------------------------------------------------------------------
SELECT is((SELECT rows FROM medallion.dlq_summary WHERE pipeline = 'silver.life_a' AND error_type = 'cast'),
          2::bigint, 'dlq_summary counts the owner''s pending dead letters by error');
SELECT ok((SELECT sample_payload FROM medallion.dlq_summary WHERE pipeline = 'silver.life_a') LIKE '%"id": 2%',
          'dlq_summary shows a sample payload (the first)');

RESET ROLE;
SELECT set_config('life.dlq_id', (SELECT min(id)::text FROM medallion.dlq WHERE pipeline = 'silver.life_a'), true);
SET ROLE medallion_tap_life_other;
SELECT is((SELECT count(*) FROM medallion.dlq_summary WHERE pipeline = 'silver.life_a'), 0::bigint,
          'another role sees none of those dead letters in dlq_summary');
SELECT throws_ok(format('SELECT medallion.dlq_correct(%s, %L)', current_setting('life.dlq_id'),
                        '{"id": 2, "n": 2}'),
                 '42501', NULL, 'another role cannot correct them');
SELECT throws_ok($$SELECT medallion.dlq_discard('silver.life_a', NULL, 'not mine')$$,
                 '42501', NULL, 'another role cannot discard them');
RESET ROLE;
SET ROLE medallion_tap_life_owner;

SELECT lives_ok(format('SELECT medallion.dlq_correct(%s, %L)',
                       (SELECT id FROM medallion.dlq WHERE pipeline = 'silver.life_a' AND original_payload LIKE '%"id": 2%'),
                       '{"id": 2, "n": 2}'),
                'the owner corrects a payload');
SELECT throws_ok(format('SELECT medallion.dlq_correct(%s, %L)',
                        (SELECT id FROM medallion.dlq WHERE pipeline = 'silver.life_a' AND original_payload LIKE '%"id": 3%'),
                        '[1, 2]'),
                 '22023', NULL, 'a silver correction must be a JSON object');
SELECT throws_ok($$SELECT medallion.dlq_correct(-1, '{}')$$, '42704', NULL, 'an unknown dead letter');
RESET ROLE;
SELECT is((SELECT first_payload FROM medallion.dlq WHERE pipeline = 'silver.life_a' AND corrected_at IS NOT NULL),
          '{"n": "x", "id": 2}', 'the first payload is kept');
SELECT is((SELECT corrected_by FROM medallion.dlq WHERE pipeline = 'silver.life_a' AND corrected_at IS NOT NULL),
          'medallion_tap_life_owner', 'with who corrected it');
SET ROLE medallion_tap_life_owner;
SELECT is(medallion.replay_dlq('silver.life_a'), 1::bigint, 'the replay loads the corrected row (the other still fails)');
SELECT is((SELECT n FROM silver.life_a WHERE id = 2), 2, 'with the corrected value');

SELECT throws_ok($$SELECT medallion.dlq_discard('silver.life_a', NULL, NULL)$$, '22023', NULL,
                 'a discard needs a reason');
SELECT is(medallion.dlq_discard('silver.life_a', NULL, 'bad export from the CRM'), 1::bigint,
          'the owner discards what is left');
RESET ROLE;
SELECT is((SELECT discard_reason || ' / ' || discarded_by FROM medallion.dlq WHERE pipeline = 'silver.life_a' AND discarded_at IS NOT NULL),
          'bad export from the CRM / medallion_tap_life_owner', 'kept with why and who');
SET ROLE medallion_tap_life_owner;
SELECT is(medallion.replay_dlq('silver.life_a'), 0::bigint, 'a replay skips discarded rows');
SELECT is((SELECT count(*) FROM medallion.dlq_summary WHERE pipeline = 'silver.life_a'), 0::bigint,
          'and dlq_summary no longer counts them');
SELECT throws_ok(format('SELECT medallion.dlq_correct(%s, %L)',
                        (SELECT id FROM medallion.dlq WHERE pipeline = 'silver.life_a' AND discarded_at IS NOT NULL), '{"id": 3}'),
                 '55000', NULL, 'a settled dead letter cannot be corrected');

-- Status -------------------------------------------------------------------------------------
SELECT is((SELECT last_run_id || ':' || last_run_status || ':' || last_rows_read FROM medallion.status WHERE pipeline = 'silver.life_a'),
          (SELECT max(run_id) || ':succeeded:0' FROM medallion.runs WHERE pipeline = 'silver.life_a'),
          'status shows the last run (the empty replay)');
SELECT ok((SELECT next_run_due > now() FROM medallion.status WHERE pipeline = 'silver.life_a'),
          'status shows when the interval schedule is due next');
SELECT is((SELECT dlq_backlog FROM medallion.status WHERE pipeline = 'silver.life_a'), 0::bigint,
          'status counts the DLQ backlog');
SELECT is((SELECT count(*) FROM medallion.status WHERE pipeline LIKE '%life%'), 3::bigint,
          'one status row per pipeline');

-- drop_pipeline ------------------------------------------------------------------------------
SELECT throws_ok($$SELECT medallion.drop_pipeline('bronze.life_src')$$, '2BP01', NULL,
                 'a pipeline others read is not dropped without cascade');
RESET ROLE;
SET ROLE medallion_tap_life_other;
SELECT throws_ok($$SELECT medallion.drop_pipeline('silver.life_b')$$, '42501', NULL,
                 'a role that does not own a pipeline cannot drop it');
RESET ROLE;
SET ROLE medallion_tap_life_owner;
SELECT throws_ok($$SELECT medallion.drop_pipeline('silver.nope')$$, '42704', NULL, 'an unknown pipeline');

SELECT is(medallion.drop_pipeline('silver.life_a'), ARRAY['silver.life_a'], 'drop_pipeline returns what it dropped');
SELECT ok(to_regclass('silver.life_a') IS NOT NULL, 'without drop_table the table stays');
SELECT ok(NOT EXISTS (SELECT FROM medallion.watermarks WHERE pipeline = 'silver.life_a')
          AND NOT EXISTS (SELECT FROM medallion.pipelines WHERE name = 'silver.life_a')
          AND NOT EXISTS (SELECT FROM medallion.dependencies WHERE pipeline = 'silver.life_a'),
          'its catalog rows are gone');
RESET ROLE;
SELECT is((SELECT count(*) FROM medallion.dlq WHERE pipeline = 'silver.life_a'), 0::bigint, 'and its dead letters');
SET ROLE medallion_tap_life_owner;

-- a table dropped by hand: the name is free again after drop_pipeline
DROP TABLE silver.life_a;
SELECT lives_ok($$SELECT medallion.create_silver('life_a', 'bronze.life_src', '{"id": "int"}', ARRAY['id'])$$,
                'the name can be used again');
DROP TABLE silver.life_a;
SELECT is(medallion.drop_pipeline('silver.life_a'), ARRAY['silver.life_a'], 'a pipeline whose table is gone is dropped');

SELECT is(medallion.drop_pipeline('bronze.life_src', drop_table => true, "cascade" => true),
          ARRAY['silver.life_b', 'bronze.life_src'], 'cascade drops the readers first');
SELECT ok(to_regclass('bronze.life_src') IS NULL AND to_regclass('silver.life_b') IS NULL,
          'drop_table drops their tables');
SELECT is((SELECT count(*) FROM medallion.pipelines WHERE name LIKE '%life%'), 0::bigint, 'no pipeline is left');

SELECT * FROM finish();
ROLLBACK;
