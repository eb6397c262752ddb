-- Payload drift against a silver contract, judged at the start of a run before anything is
-- loaded: keys the contract does not read (contract option schema_policy: ignore records them,
-- evolve adds columns and a contract version, strict halts), a required key missing from
-- every row of a window of at least drift_min_rows rows (halts), and more than max_bad_ratio
-- of the window failing to type (halts). A drift halt applies to manual runs too: the run is
-- failed with class schema and its own SQLSTATE (MD050 key missing, MD051 unread key under
-- strict, MD052 bad ratio), nothing is loaded, no DLQ rows, the watermark stays, a
-- schema_changes row and a schema_change alert; resume() judges the window again.
-- See docs/architecture.md, "Payload drift".
BEGIN;
SELECT plan(58);

-- the last run of a pipeline
CREATE FUNCTION pg_temp.last_run(p text) RETURNS SETOF medallion.runs LANGUAGE sql AS $$
    SELECT * FROM medallion.runs WHERE pipeline = p ORDER BY run_id DESC LIMIT 1 $$;

-- ignore (the default): unread keys are recorded once ---------------------------------------------

SELECT FROM medallion.create_bronze('dr_ign', 'shop');
SELECT FROM medallion.create_silver('dr_ign', 'bronze.dr_ign', '{"id": "bigint", "name": "text"}', ARRAY['id']);
SELECT FROM medallion.ingest('bronze.dr_ign', '[{"id": 1, "name": "a", "color": "red", "meta": {"a": 1}}]');
SELECT results_eq($$SELECT status, rows_inserted FROM tap.run_row('silver.dr_ign')$$,
                  $$VALUES ('succeeded', 1::bigint)$$, 'ignore: the run loads the window');
SELECT results_eq(
    $$SELECT relation, path, change, classification, run_id = (SELECT run_id FROM pg_temp.last_run('silver.dr_ign')),
             detail->>'policy'
      FROM medallion.schema_changes WHERE pipeline = 'silver.dr_ign' ORDER BY path$$,
    $$VALUES ('bronze.dr_ign', 'color', 'key_added', 'safe', true, 'ignore'),
             ('bronze.dr_ign', 'meta', 'key_added', 'safe', true, 'ignore')$$,
    'ignore: each key the contract does not read is recorded as a safe key_added (an unread object once, not its keys)');
SELECT FROM medallion.ingest('bronze.dr_ign', '[{"id": 2, "name": "b", "color": "blue"}]');
SELECT FROM medallion.run('silver.dr_ign');
SELECT is((SELECT count(*)::int FROM medallion.schema_changes WHERE pipeline = 'silver.dr_ign'), 2,
          'ignore: a key already recorded is not recorded again');
SELECT hasnt_column('silver', 'dr_ign', 'color', 'ignore: the silver table is unchanged');
SELECT is((SELECT state FROM medallion.pipelines WHERE name = 'silver.dr_ign'), 'active', 'ignore: the pipeline stays active');

-- evolve: a nullable column per new key, a new contract version, then the load -------------------

SELECT FROM medallion.create_bronze('dr_evo', 'shop');
SELECT FROM medallion.create_silver('dr_evo', 'bronze.dr_evo', '{"id": "bigint"}', ARRAY['id'],
                                    options => '{"schema_policy": "evolve"}');
SELECT FROM medallion.ingest('bronze.dr_evo',
    '[{"id": 1, "channel": "web", "score": 1.5, "vip": true, "extra": {"a": 1}, "list": [1], "nothing": null, "mixed": 1},
      {"id": 2, "channel": "app", "mixed": "x"}]');
SELECT results_eq($$SELECT status, rows_read, rows_inserted, rows_dlq FROM tap.run_row('silver.dr_evo')$$,
                  $$VALUES ('succeeded', 2::bigint, 2::bigint, 0::bigint)$$, 'evolve: the run succeeds');
SELECT results_eq(
    $$SELECT attname::text COLLATE "default", format_type(atttypid, atttypmod), NOT attnotnull FROM pg_attribute
      WHERE attrelid = 'silver.dr_evo'::regclass AND NOT attisdropped
        AND attname IN ('channel', 'score', 'vip', 'extra', 'list', 'mixed', 'nothing') ORDER BY 1$$,
    $$VALUES ('channel', 'text', true), ('extra', 'jsonb', true), ('list', 'jsonb', true),
             ('mixed', 'jsonb', true), ('score', 'numeric', true), ('vip', 'boolean', true)$$,
    'evolve: string -> text, number -> numeric, boolean -> boolean, object/array/mixed -> jsonb, nullable; a key seen only as null waits');
SELECT results_eq($$SELECT id, channel, score, vip, extra, mixed FROM silver.dr_evo ORDER BY id$$,
                  $$VALUES (1::bigint, 'web', 1.5, true, '{"a": 1}'::jsonb, '1'::jsonb),
                           (2::bigint, 'app', NULL, NULL, NULL, '"x"'::jsonb)$$,
                  'evolve: the window is loaded with the new columns');
SELECT results_eq($$SELECT version, definition->'columns' ? 'channel', forced FROM medallion.contract_versions
                    WHERE pipeline = 'silver.dr_evo' ORDER BY version$$,
                  $$VALUES (1, false, false), (2, true, false)$$,
                  'evolve: the contract gets a new version (the one before is version 1)');
SELECT is((SELECT definition FROM medallion.pipelines WHERE name = 'silver.dr_evo'),
          (SELECT definition FROM medallion.contract_versions WHERE pipeline = 'silver.dr_evo' AND version = 2),
          'evolve: pipelines.definition is the newest version');
SELECT is((SELECT definition->'columns'->'channel' FROM medallion.pipelines WHERE name = 'silver.dr_evo'),
          '{"path": "channel", "type": "text"}'::jsonb, 'evolve: the new column reads its key');
SELECT results_eq(
    $$SELECT relation, path, change, classification, detail->>'column', (detail->>'contract_version')::int
      FROM medallion.schema_changes WHERE pipeline = 'silver.dr_evo' ORDER BY path$$,
    $$VALUES ('silver.dr_evo', 'channel', 'column_added', 'safe', 'channel', 2),
             ('silver.dr_evo', 'extra', 'column_added', 'safe', 'extra', 2),
             ('silver.dr_evo', 'list', 'column_added', 'safe', 'list', 2),
             ('silver.dr_evo', 'mixed', 'column_added', 'safe', 'mixed', 2),
             ('silver.dr_evo', 'score', 'column_added', 'safe', 'score', 2),
             ('silver.dr_evo', 'vip', 'column_added', 'safe', 'vip', 2)$$,
    'evolve: each column added is recorded');
SELECT FROM medallion.ingest('bronze.dr_evo', '[{"id": 3, "nothing": "now a string"}]');
SELECT results_eq($$SELECT status, rows_inserted FROM tap.run_row('silver.dr_evo')$$,
                  $$VALUES ('succeeded', 1::bigint)$$, 'evolve: a later run');
SELECT results_eq($$SELECT nothing FROM silver.dr_evo WHERE id = 3$$, $$VALUES ('now a string')$$,
                  'evolve: adds the key once its type is known');
SELECT is((SELECT max(version) FROM medallion.contract_versions WHERE pipeline = 'silver.dr_evo'), 3,
          'evolve: as version 3');
SELECT FROM medallion.ingest('bronze.dr_evo', '[{"id": 4, "channel": "mail"}]');
SELECT results_eq($$SELECT status, rows_inserted FROM tap.run_row('silver.dr_evo')$$,
                  $$VALUES ('succeeded', 1::bigint)$$, 'evolve: known keys change nothing');
SELECT is((SELECT max(version) FROM medallion.contract_versions WHERE pipeline = 'silver.dr_evo'), 3,
          'evolve: no version for nothing new');

-- strict: a manual run halts ------------------------------------------------------------------

SELECT FROM medallion.create_bronze('dr_str', 'shop');
SELECT FROM medallion.create_silver('dr_str', 'bronze.dr_str', '{"id": "bigint"}', ARRAY['id'],
                                    options => '{"schema_policy": "strict"}');
SELECT FROM medallion.ingest('bronze.dr_str', '[{"id": 1}]');
SELECT results_eq($$SELECT status FROM tap.run_row('silver.dr_str')$$, $$VALUES ('succeeded')$$,
                  'strict: a window the contract reads entirely loads');
SELECT FROM medallion.ingest('bronze.dr_str', '[{"id": 2, "extra": 1}]');
SELECT results_eq($$SELECT status, error_class, sqlstate, rows_read, rows_inserted FROM tap.run_row('silver.dr_str')$$,
                  $$VALUES ('failed', 'schema', 'MD051', 0::bigint, 0::bigint)$$,
                  'strict: an unread key fails the manual run, class schema, SQLSTATE MD051');
SELECT is((SELECT state FROM medallion.pipelines WHERE name = 'silver.dr_str'), 'halted',
          'strict: the manual run halts the pipeline');
SELECT is((SELECT count(*)::int FROM medallion.alerts WHERE pipeline = 'silver.dr_str'
           AND kind = 'schema_change' AND resolved_at IS NULL), 1, 'strict: a schema_change alert is open');
SELECT results_eq(
    $$SELECT relation, path, change, classification, detail->>'halted', detail->>'sqlstate',
             run_id = (SELECT run_id FROM pg_temp.last_run('silver.dr_str'))
      FROM medallion.schema_changes WHERE pipeline = 'silver.dr_str'$$,
    $$VALUES ('bronze.dr_str', 'extra', 'key_added', 'safe', 'true', 'MD051', true)$$,
    'strict: the halt is recorded in schema_changes with its run');
SELECT results_eq($$SELECT id FROM silver.dr_str ORDER BY id$$, $$VALUES (1::bigint)$$, 'strict: nothing is loaded');
SELECT throws_ok($$SELECT medallion.run('silver.dr_str')$$, '55000', 'pipeline "silver.dr_str" is halted',
                 'strict: a halted pipeline refuses manual runs');
SELECT lives_ok($$SELECT medallion.resume('silver.dr_str')$$, 'resume()');
SELECT is((SELECT count(*)::int FROM medallion.alerts WHERE pipeline = 'silver.dr_str'
           AND kind = 'schema_change' AND resolved_at IS NULL), 0, 'resume() resolves the schema_change alert');
SELECT throws_ok($$SELECT medallion.run('silver.dr_str', strict => true)$$, 'MD051', NULL,
                 'strict: run(strict => true) raises MD051');
SELECT results_eq($$SELECT status, sqlstate FROM tap.run_row('silver.dr_str')$$, $$VALUES ('failed', 'MD051')$$,
                  'strict: after resume() the window is judged again');
-- the contract changed (as alter_contract would): keys not read are now ignored
SELECT FROM medallion.resume('silver.dr_str');
UPDATE medallion.pipelines SET definition = jsonb_set(definition, '{options,schema_policy}', '"ignore"')
WHERE name = 'silver.dr_str';
SELECT results_eq($$SELECT status, rows_read, rows_inserted FROM tap.run_row('silver.dr_str')$$,
                  $$VALUES ('succeeded', 1::bigint, 1::bigint)$$,
                  'strict: the watermark had not moved: after the fix the same row is read and loads');

-- a required key missing from every row of a window: drift_min_rows --------------------------------

SELECT FROM medallion.create_bronze('dr_req', 'shop');
SELECT FROM medallion.create_silver('dr_req', 'bronze.dr_req', '{"id": {"type": "bigint", "required": true}, "v": "text"}',
                                    ARRAY['id']);
SELECT FROM medallion.ingest('bronze.dr_req', (SELECT jsonb_agg(jsonb_build_object('ident', g)) FROM generate_series(1, 9) g));
SELECT results_eq($$SELECT status, rows_dlq FROM tap.run_row('silver.dr_req')$$, $$VALUES ('succeeded', 9::bigint)$$,
                  'missing key: a window of 9 rows (below drift_min_rows, 10 by default) sends them to the DLQ');
SELECT FROM medallion.ingest('bronze.dr_req',
    (SELECT jsonb_agg(CASE WHEN g = 7 THEN jsonb_build_object('id', g) ELSE jsonb_build_object('ident', g) END)
     FROM generate_series(1, 10) g));
SELECT results_eq($$SELECT status, rows_inserted, rows_dlq FROM tap.run_row('silver.dr_req')$$,
                  $$VALUES ('succeeded', 1::bigint, 9::bigint)$$,
                  'missing key: a key present in one row of the window is not drift (bad rows go to the DLQ)');
SELECT FROM medallion.ingest('bronze.dr_req', (SELECT jsonb_agg(jsonb_build_object('ident', g)) FROM generate_series(1, 10) g));
SELECT results_eq($$SELECT status, error_class, sqlstate, rows_dlq FROM tap.run_row('silver.dr_req')$$,
                  $$VALUES ('failed', 'schema', 'MD050', 0::bigint)$$,
                  'missing key: a window of 10 rows without the required key halts, SQLSTATE MD050');
SELECT is((SELECT state FROM medallion.pipelines WHERE name = 'silver.dr_req'), 'halted', 'missing key: halted');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.dr_req'), 18,
          'missing key: the halted run wrote no DLQ row');
SELECT results_eq(
    $$SELECT relation, path, change, classification FROM medallion.schema_changes
      WHERE pipeline = 'silver.dr_req' AND change = 'key_missing'$$,
    $$VALUES ('bronze.dr_req', 'id', 'key_missing', 'breaking')$$, 'missing key: recorded as breaking');
SELECT FROM medallion.resume('silver.dr_req');
SELECT results_eq($$SELECT status, sqlstate FROM tap.run_row('silver.dr_req')$$, $$VALUES ('failed', 'MD050')$$,
                  'missing key: after resume() the window is judged again');
SELECT FROM medallion.resume('silver.dr_req');
SELECT FROM medallion.alter_pipeline('silver.dr_req', '{"max_bad_ratio": 1}');
SELECT results_eq($$SELECT status, rows_read, rows_dlq FROM tap.run_row('silver.dr_req')$$,
                  $$VALUES ('succeeded', 10::bigint, 10::bigint)$$,
                  'missing key: with max_bad_ratio 1 the same window loads, its bad rows going to the DLQ');
SELECT FROM medallion.alter_pipeline('silver.dr_req', '{"max_bad_ratio": null, "drift_min_rows": 3}');
SELECT FROM medallion.ingest('bronze.dr_req', '[{"ident": 1}, {"ident": 2}]');
SELECT results_eq($$SELECT status, rows_dlq FROM tap.run_row('silver.dr_req')$$, $$VALUES ('succeeded', 2::bigint)$$,
                  'drift_min_rows 3: a window of 2 rows is not judged');
SELECT FROM medallion.ingest('bronze.dr_req', '[{"ident": 1}, {"ident": 2}, {"ident": 3}]');
SELECT results_eq($$SELECT status, sqlstate FROM tap.run_row('silver.dr_req')$$, $$VALUES ('failed', 'MD050')$$,
                  'drift_min_rows 3: a window of exactly 3 rows halts');

-- max_bad_ratio ------------------------------------------------------------------------------

SELECT FROM medallion.create_bronze('dr_bad', 'shop');
SELECT FROM medallion.create_silver('dr_bad', 'bronze.dr_bad', '{"id": "bigint", "qty": "integer"}', ARRAY['id']);
SELECT FROM medallion.alter_pipeline('silver.dr_bad', '{"max_bad_ratio": 0.5}');
SELECT FROM medallion.ingest('bronze.dr_bad', '[{"id": 1, "qty": 1}, {"id": 2, "qty": "x"}, {"id": 3, "qty": 3}, {"id": 4, "qty": "y"}]');
SELECT results_eq($$SELECT status, rows_inserted, rows_dlq FROM tap.run_row('silver.dr_bad')$$,
                  $$VALUES ('succeeded', 2::bigint, 2::bigint)$$,
                  'max_bad_ratio 0.5: half the window failing to type is not above it: DLQ as usual');
SELECT FROM medallion.ingest('bronze.dr_bad', '[{"id": 5, "qty": 5}, {"id": 6, "qty": "x"}, {"id": 7, "qty": "y"}, {"id": 8, "qty": "z"}]');
SELECT results_eq($$SELECT status, error_class, sqlstate, rows_dlq FROM tap.run_row('silver.dr_bad')$$,
                  $$VALUES ('failed', 'schema', 'MD052', 0::bigint)$$,
                  'max_bad_ratio 0.5: 3 of 4 rows failing halts the run, SQLSTATE MD052');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.dr_bad'), 2,
          'max_bad_ratio: the halted run did not flood the DLQ');
SELECT is((SELECT count(*)::int FROM silver.dr_bad), 2, 'max_bad_ratio: nothing was loaded (not even the good row)');
SELECT results_eq(
    $$SELECT path, change, classification FROM medallion.schema_changes WHERE pipeline = 'silver.dr_bad'$$,
    $$VALUES ('qty', 'type_changed', 'breaking')$$, 'max_bad_ratio: recorded with the failing field');
SELECT is((SELECT state FROM medallion.pipelines WHERE name = 'silver.dr_bad'), 'halted', 'max_bad_ratio: halted');
SELECT FROM medallion.resume('silver.dr_bad');
SELECT FROM medallion.alter_pipeline('silver.dr_bad', '{"max_bad_ratio": 1}');
SELECT results_eq($$SELECT status, rows_read, rows_inserted, rows_dlq FROM tap.run_row('silver.dr_bad')$$,
                  $$VALUES ('succeeded', 4::bigint, 1::bigint, 3::bigint)$$,
                  'max_bad_ratio 1: the same window loads, its bad rows in the DLQ');
SELECT FROM medallion.alter_pipeline('silver.dr_bad', '{"max_bad_ratio": 0}');
SELECT FROM medallion.ingest('bronze.dr_bad', '[{"id": 9, "qty": 9}, {"id": 10, "qty": 10}]');
SELECT results_eq($$SELECT status FROM tap.run_row('silver.dr_bad')$$, $$VALUES ('succeeded')$$,
                  'max_bad_ratio 0: a clean window loads');
SELECT FROM medallion.ingest('bronze.dr_bad', '[{"id": 11, "qty": 11}, {"id": 12, "qty": "x"}]');
SELECT results_eq($$SELECT status, sqlstate FROM tap.run_row('silver.dr_bad')$$, $$VALUES ('failed', 'MD052')$$,
                  'max_bad_ratio 0: one bad row halts');

-- as the owner: an unprivileged owner's pipeline evolves with the owner's rights ----------------------

CREATE ROLE medallion_tap_drifter NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_drifter;
SET ROLE medallion_tap_drifter;
SELECT FROM medallion.create_bronze('dr_own', 'app');
SELECT FROM medallion.create_silver('dr_own', 'bronze.dr_own', '{"id": "bigint"}', ARRAY['id'],
                                    options => '{"schema_policy": "evolve"}');
SELECT FROM medallion.ingest('bronze.dr_own', '[{"id": 1, "label": "x"}]');
SELECT FROM medallion.run('silver.dr_own');
SELECT results_eq($$SELECT status, rows_inserted FROM medallion.runs WHERE pipeline = 'silver.dr_own'$$,
                  $$VALUES ('succeeded', 1::bigint)$$, 'owner: an unprivileged owner''s run evolves its pipeline');
SELECT results_eq($$SELECT id, label FROM silver.dr_own$$, $$VALUES (1::bigint, 'x')$$,
                  'owner: the new column is loaded');
SELECT is((SELECT count(*)::int FROM medallion.schema_changes WHERE pipeline = 'silver.dr_own'), 1,
          'owner: the owner reads its schema changes');
SELECT throws_ok($$INSERT INTO medallion.payload_keys (pipeline, path, json_type) VALUES ('bronze.dr_own', 'x', 'string')$$,
                 '42501', NULL, 'owner: the registry is written by medallion only');
RESET ROLE;
SELECT is((SELECT tableowner::text FROM pg_tables WHERE schemaname = 'silver' AND tablename = 'dr_own'),
          'medallion_tap_drifter', 'owner: the silver table still belongs to its owner');

-- options are checked -------------------------------------------------------------------------

SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.dr_bad', '{"max_bad_ratio": 1.5}')$$, '22023', NULL,
                 'max_bad_ratio above 1 is refused');
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.dr_bad', '{"max_bad_ratio": -0.1}')$$, '22023', NULL,
                 'a negative max_bad_ratio is refused');
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.dr_bad', '{"max_bad_ratio": "lots"}')$$, '22P02', NULL,
                 'max_bad_ratio must be a number');
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.dr_bad', '{"drift_min_rows": 0}')$$, '22023', NULL,
                 'drift_min_rows must be positive');
SELECT throws_ok($$SELECT medallion.create_silver('dr_bad2', 'bronze.dr_bad', '{"id": "bigint"}', ARRAY['id'],
                                                   options => '{"schema_policy": "sometimes"}')$$,
                 '22023', NULL, 'an unknown schema_policy is refused');

SELECT * FROM finish();
ROLLBACK;
