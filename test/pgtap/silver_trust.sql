-- Silver under hostile input and callers: a contract expression's error is classified by its
-- structured fields (never parsed from its text, which once crashed the backend); the functions
-- a run's SQL calls work only inside a run of the caller's own pipeline; the run's SQL names
-- pg_catalog's operators, not look-alikes; options.settings takes an allow-list; the same
-- value gets the same outcome on the fast and the slow path (lengths are checked, not cut;
-- date/time words naming the current time are refused); required columns are NOT NULL; the
-- columns array keeps its order; a bounded run of exactly its cap drains its window.
BEGIN;
SELECT plan(49);

CREATE ROLE medallion_h2_owner NOLOGIN;
CREATE ROLE medallion_h2_stranger NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO medallion_h2_owner;

SELECT FROM medallion.create_bronze('h2_src', 'app');

-- §6: an expression raising errors that look like contract checks ----------------------------
CREATE FUNCTION public.h2_boom(x int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF x = 2 THEN
        RAISE EXCEPTION 'boom two' USING ERRCODE = '22023', DETAIL = 'medallion contract check without quotes';
    ELSIF x = 3 THEN
        RAISE EXCEPTION 'boom three' USING ERRCODE = '23514', COLUMN = 'no_such_column', CONSTRAINT = 'required';
    ELSIF x = 4 THEN
        RAISE EXCEPTION 'boom four' USING ERRCODE = '23514', COLUMN = 'id', CONSTRAINT = 'bogus';
    ELSIF x = 5 THEN
        RAISE EXCEPTION 'boom five' USING ERRCODE = '23514', COLUMN = 'id', CONSTRAINT = 'accepted';
    END IF;
    RETURN x;
END $$;
SELECT FROM medallion.create_silver('h2_expr', 'bronze.h2_src',
    '{"id": "int", "v": {"path": "id", "type": "int", "expr": "h2_boom(v)"}}', ARRAY['id']);
SELECT FROM medallion.ingest('bronze.h2_src', '[{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}, {"id": 6}]');
SELECT results_eq($$SELECT status, rows_inserted, rows_dlq FROM tap.run_row('silver.h2_expr')$$,
                  $$VALUES ('succeeded', 2::bigint, 4::bigint)$$,
                  'a run over expressions raising look-alike errors succeeds (no crash)');
SELECT results_eq($$SELECT source_seq::int, error_type, field, sqlstate FROM medallion.dlq
                    WHERE pipeline = 'silver.h2_expr' ORDER BY source_seq$$,
                  $$VALUES (2, 'expr', 'v', '22023'), (3, 'expr', 'v', '23514'), (4, 'expr', 'v', '23514'),
                           (5, 'accepted', 'id', '23514')$$,
                  'an error''s fields count only for a known check of a contract column; else expr, with the failing column');

-- §4: the functions of a run's SQL, outside a run -------------------------------------------
SELECT throws_ok($$SELECT medallion.count_insert(1)$$, '55000', NULL,
                 'count_insert() outside a run raises 55000');
SELECT throws_ok($$SELECT medallion.count_read()$$, '55000', NULL, 'so does count_read()');
SELECT throws_ok($$SELECT medallion.silver_keep(1, '{}', NULL, NULL)$$, '55000', NULL, 'and silver_keep()');
SELECT throws_ok($$SELECT medallion.silver_check('{}', '{}', false)$$, '55000', NULL, 'and silver_check()');
SELECT throws_ok($$SELECT medallion.check_required(1, false, 'f', 'f')$$, '55000', NULL, 'and check_required()');
SELECT throws_ok($$SELECT medallion.check_accepted(1, ARRAY[2], 'f')$$, '55000', NULL, 'and check_accepted()');
SELECT throws_ok($$SELECT medallion.check_reference(1, true, 'f', 'r')$$, '55000', NULL, 'and check_reference()');
SELECT throws_ok($$SELECT medallion.contract_violation('required', 'f', 'm')$$, '55000', NULL,
                 'and contract_violation()');
SET LOCAL ROLE medallion_h2_stranger;
SELECT throws_ok($$SELECT medallion.count_insert(1)$$, '55000', NULL,
                 'count_insert() from a role with no pipeline raises 55000');
RESET ROLE;

-- inside a run of the owner's pipeline, whoever starts it, they work
SET LOCAL ROLE medallion_h2_owner;
SELECT FROM medallion.create_bronze('h2_own', 'app');
SELECT FROM medallion.create_silver('h2_own', 'bronze.h2_own', '{"id": "int"}', ARRAY['id']);
SELECT FROM medallion.ingest('bronze.h2_own', '[{"id": 1}]');
RESET ROLE;
SELECT results_eq($$SELECT status, rows_inserted FROM tap.run_row('silver.h2_own')$$,
                  $$VALUES ('succeeded', 1::bigint)$$, 'the guarded functions work inside a run of the owner');

-- §1: a look-alike = for (varchar, varchar) earlier than pg_catalog's text = ----------------
CREATE FUNCTION public.h2_hostile_eq(a varchar, b varchar) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'hostile operator called by %', current_user;
END $$;
CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.h2_hostile_eq);
SELECT FROM medallion.create_silver('h2_vc', 'bronze.h2_src', '{"id": "varchar", "w": "varchar"}', ARRAY['id']);
SELECT results_eq($$SELECT status FROM tap.run_row('silver.h2_vc')$$, $$VALUES ('succeeded')$$,
                  'a run does not pick a public = for (varchar, varchar)');
SELECT FROM medallion.ingest('bronze.h2_src', '[{"id": 1, "w": "again"}]');
SELECT results_eq($$SELECT status, rows_updated FROM tap.run_row('silver.h2_vc')$$,
                  $$VALUES ('succeeded', 1::bigint)$$, 'nor does its MERGE matching a key');
DROP OPERATOR public.= (varchar, varchar);

-- §1: options.settings allow-list -----------------------------------------------------------
SELECT throws_ok($$SELECT medallion.create_silver('h2_sp', 'bronze.h2_src', '{"id": "int"}', ARRAY['id'], NULL,
                   '{"settings": {"search_path": "public"}}')$$, '22023', NULL,
                 'options.settings refuses search_path');
SELECT throws_ok($$SELECT medallion.create_silver('h2_sp', 'bronze.h2_src', '{"id": "int"}', ARRAY['id'], NULL,
                   '{"settings": {"session_replication_role": "replica"}}')$$, '22023', NULL,
                 'and settings outside the list');
SELECT lives_ok($$SELECT medallion.create_silver('h2_sp', 'bronze.h2_src', '{"id": "int"}', ARRAY['id'], NULL,
                   '{"settings": {"work_mem": "8MB", "lc_numeric": "C", "timezone": "UTC", "JIT": "off"}}')$$,
                'and takes work_mem, lc_*, TimeZone and jit, in any case');

UPDATE medallion.pipelines SET definition = jsonb_set(definition, '{options,settings}', '{"search_path": "public"}')
 WHERE name = 'silver.h2_sp';
SELECT results_eq($$SELECT status, sqlstate FROM tap.run_row('silver.h2_sp')$$, $$VALUES ('failed', '22023')$$,
                  'a run refuses a definition whose settings name search_path');

-- §6: lengths are checked, not cut, on both paths --------------------------------------------
SELECT FROM medallion.create_bronze('h2_len', 'app');
SELECT FROM medallion.create_silver('h2_len', 'bronze.h2_len',
    '{"id": "int", "code": "varchar(3)", "fix": "char(3)"}', ARRAY['id']);
SELECT FROM medallion.ingest('bronze.h2_len', '[{"id": 1, "code": "ABCD", "fix": "AB"}]');
SELECT results_eq($$SELECT status, rows_inserted, rows_dlq FROM tap.run_row('silver.h2_len')$$,
                  $$VALUES ('succeeded', 0::bigint, 1::bigint)$$,
                  'a varchar(3) value of 4 characters alone (fast path) goes to the DLQ');
SELECT results_eq($$SELECT sqlstate, field FROM medallion.dlq WHERE pipeline = 'silver.h2_len'$$,
                  $$VALUES ('22001', 'code')$$, 'with 22001 (a cast would have cut it)');
SELECT FROM medallion.ingest('bronze.h2_len', '[{"id": 2, "code": "ABC", "fix": "ABCD"}]');
SELECT results_eq($$SELECT rows_inserted, rows_dlq FROM tap.run_row('silver.h2_len')$$,
                  $$VALUES (0::bigint, 1::bigint)$$, 'so does a char(3) value of 4 characters');
SELECT FROM medallion.ingest('bronze.h2_len',
    '[{"id": 3, "code": "ABCD"}, {"id": "x"}, {"id": 4, "code": "AB ", "fix": "A"}, {"id": 5, "code": "ABC   "}]');
SELECT results_eq($$SELECT rows_inserted, rows_dlq FROM tap.run_row('silver.h2_len')$$,
                  $$VALUES (2::bigint, 2::bigint)$$, 'with another bad row (slow path): the same outcome');
SELECT results_eq($$SELECT source_seq::int, sqlstate FROM medallion.dlq WHERE pipeline = 'silver.h2_len' ORDER BY source_seq$$,
                  $$VALUES (1, '22001'), (2, '22001'), (3, '22001'), (4, '22P02')$$,
                  'each too long value is a 22001 in the DLQ');
SELECT results_eq($$SELECT id, code::text, fix FROM silver.h2_len ORDER BY id$$,
                  $$VALUES (4, 'AB ', 'A'::char(3)), (5, 'ABC', NULL)$$,
                  'trailing spaces past the length are dropped, as the type does');

-- §6: date/time words naming the current time -----------------------------------------------
SELECT FROM medallion.create_bronze('h2_dt', 'app');
SELECT FROM medallion.create_silver('h2_dt', 'bronze.h2_dt',
    '{"id": "int", "at": "timestamptz", "d": "date", "t": "time"}', ARRAY['id']);
SELECT FROM medallion.ingest('bronze.h2_dt', '[{"id": 1, "at": "NOW"}]');
SELECT results_eq($$SELECT rows_inserted, rows_dlq FROM tap.run_row('silver.h2_dt')$$,
                  $$VALUES (0::bigint, 1::bigint)$$, '''NOW'' alone (fast path) goes to the DLQ');
SELECT FROM medallion.ingest('bronze.h2_dt', '[{"id": 2, "d": " Today "}]');
SELECT results_eq($$SELECT rows_inserted, rows_dlq FROM tap.run_row('silver.h2_dt')$$,
                  $$VALUES (0::bigint, 1::bigint)$$, ''' Today '' alone too');
SELECT FROM medallion.ingest('bronze.h2_dt', '[{"id": 3, "at": "yesterday 10:00"}, {"id": 4, "t": "now"},
    {"id": 5, "d": "tomorrow"}, {"id": 6, "at": "epoch", "d": "infinity"}, {"id": 7, "at": "2025-01-02 03:04:05+00"}]');
SELECT results_eq($$SELECT rows_inserted, rows_dlq FROM tap.run_row('silver.h2_dt')$$,
                  $$VALUES (2::bigint, 3::bigint)$$, 'in a batch with other bad rows (slow path): the same');
SELECT results_eq($$SELECT source_seq::int, error_type, field, sqlstate FROM medallion.dlq
                    WHERE pipeline = 'silver.h2_dt' ORDER BY source_seq$$,
                  $$VALUES (1, 'cast', 'at', '22007'), (2, 'cast', 'd', '22007'), (3, 'cast', 'at', '22007'),
                           (4, 'cast', 't', '22007'), (5, 'cast', 'd', '22007')$$,
                  'each is a cast error (22007) of its column');
SELECT results_eq($$SELECT id, extract(epoch FROM at)::bigint, d::text FROM silver.h2_dt ORDER BY id$$,
                  $$VALUES (6, 0::bigint, 'infinity'), (7, 1735787045, NULL)$$,
                  'epoch and infinity stay, and load');
SELECT throws_ok($$SELECT medallion.create_silver('h2_dt2', 'bronze.h2_dt',
                   '{"id": "int", "at": {"type": "timestamptz", "default": "now"}}', ARRAY['id'])$$, '22007', NULL,
                 'a date/time default naming the current time is refused');

-- §6: required columns are NOT NULL; the array form keeps its order --------------------------
SELECT FROM medallion.create_silver('h2_req', 'bronze.h2_src',
    '[{"name": "z", "type": "int", "path": "id"}, {"name": "b", "type": "text", "required": true},
      {"name": "a", "type": "text"}]', ARRAY['z']);
SELECT results_eq($$SELECT attname, attnotnull FROM pg_attribute
                    WHERE attrelid = 'silver.h2_req'::regclass AND attnum > 0 AND attnum < 4 ORDER BY attnum$$,
                  $$VALUES ('z'::name, true), ('b'::name, true), ('a'::name, false)$$,
                  'columns in the written order; required ones NOT NULL');
SELECT is((SELECT jsonb_typeof(definition -> 'columns') FROM medallion.pipelines WHERE name = 'silver.h2_req'),
          'array', 'the definition keeps the array, so the order');
SELECT throws_ok($$SELECT medallion.create_silver('h2_req2', 'bronze.h2_src',
                   '[{"name": "a", "type": "int"}, {"name": "a", "type": "text"}]', ARRAY['a'])$$, '22023', NULL,
                 'a column named twice is refused');
SELECT throws_ok($$SELECT medallion.create_silver('h2_req2', 'bronze.h2_src',
                   '[{"type": "int"}]', ARRAY['a'])$$, '22023', NULL,
                 'an element without name is refused');
SELECT throws_ok($$SELECT medallion.create_silver('h2_req2', 'bronze.h2_src',
                   '{"a": {"name": "b", "type": "int"}}', ARRAY['a'])$$, '22023', NULL,
                 'name is a key of the array form only');
SELECT FROM medallion.ingest('bronze.h2_src', '[{"id": 10, "b": "x"}, {"id": 11}]');
SELECT results_eq($$SELECT status, rows_dlq FROM tap.run_row('silver.h2_req')$$, $$VALUES ('succeeded', 8::bigint)$$,
                  'rows missing a required value still go to the DLQ, the run succeeds');
SELECT results_eq($$SELECT z, b FROM silver.h2_req$$, $$VALUES (10, 'x')$$, 'the others load');

-- §9: a bounded run of exactly its cap drains its window ---------------------------------------
SELECT FROM medallion.create_bronze('h2_cap', 'app');
SELECT FROM medallion.create_silver('h2_cap', 'bronze.h2_cap', '{"id": "int"}', ARRAY['id'], NULL,
    '{"max_rows_per_run": 10}');
SELECT FROM medallion.ingest('bronze.h2_cap', (SELECT jsonb_agg(jsonb_build_object('id', i)) FROM generate_series(1, 10) i));
SELECT results_eq($$SELECT rows_read FROM tap.run_row('silver.h2_cap')$$, $$VALUES (10::bigint)$$,
                  'cap 10, 10 rows: one run reads them');
SELECT ok((SELECT target_snapshot IS NULL FROM medallion.watermarks WHERE pipeline = 'silver.h2_cap'),
          'and knows its window is drained (no window left to drain)');
SELECT FROM medallion.ingest('bronze.h2_cap', (SELECT jsonb_agg(jsonb_build_object('id', i)) FROM generate_series(11, 15) i));
SELECT results_eq($$SELECT rows_read FROM tap.run_row('silver.h2_cap')$$, $$VALUES (5::bigint)$$,
                  'then 5 more rows: the next run reads them');
SELECT FROM medallion.ingest('bronze.h2_cap', (SELECT jsonb_agg(jsonb_build_object('id', i)) FROM generate_series(16, 24) i));
SELECT results_eq($$SELECT rows_read FROM tap.run_row('silver.h2_cap')$$, $$VALUES (9::bigint)$$,
                  'cap - 1 rows: one run');
SELECT ok((SELECT target_snapshot IS NULL FROM medallion.watermarks WHERE pipeline = 'silver.h2_cap'),
          'drained');
SELECT FROM medallion.ingest('bronze.h2_cap', (SELECT jsonb_agg(jsonb_build_object('id', i)) FROM generate_series(25, 35) i));
SELECT results_eq($$SELECT rows_read FROM tap.run_row('silver.h2_cap')$$, $$VALUES (10::bigint)$$,
                  'cap + 1 rows: a run of the cap');
SELECT results_eq($$SELECT rows_read FROM tap.run_row('silver.h2_cap')$$, $$VALUES (1::bigint)$$,
                  'then one of the last row');
SELECT is((SELECT count(*)::int FROM silver.h2_cap), 35, 'every row loaded');

-- §7: after a restore into another cluster the re-based run reads every row again: the
-- quarantine, like the DLQ, takes a source row once ------------------------------------------
SELECT FROM medallion.create_bronze('h2_q', 'app');
SELECT FROM medallion.create_silver('h2_q', 'bronze.h2_q', '{"id": "int", "n": "int"}', ARRAY['id']);
SELECT FROM medallion.expect('silver.h2_q', 'small', 'n < 10', 'quarantine');
SELECT FROM medallion.ingest('bronze.h2_q', '[{"id": 1, "n": 1}, {"id": 2, "n": 20}, {"id": 3, "n": "x"}]');
SELECT results_eq($$SELECT rows_quarantined, rows_dlq FROM tap.run_row('silver.h2_q')$$,
                  $$VALUES (1::bigint, 1::bigint)$$, 'one row quarantined, one in the DLQ');
UPDATE medallion.watermarks SET system_identifier = system_identifier + 1 WHERE pipeline = 'silver.h2_q';
SELECT FROM tap.run_row('silver.h2_q');
SELECT is((SELECT count(*)::int FROM medallion.quarantine WHERE pipeline = 'silver.h2_q'), 1,
          'a watermark from another cluster: the re-based run adds no second quarantine row');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE pipeline = 'silver.h2_q'), 1, 'nor a second DLQ row');
SELECT ok(EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'medallion' AND tablename = 'quarantine'
                  AND indexdef LIKE '%(pipeline, source_seq) WHERE (NOT reprocessed)%'),
          'the quarantine guard has its index');

SELECT * FROM finish();
ROLLBACK;
