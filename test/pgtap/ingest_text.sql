-- medallion.ingest_text(target, payload, format, batch_id, file_name): ndjson,
-- json and csv text; every record that cannot be landed is a DLQ row holding
-- the exact text, with its line (ndjson, csv) or array position (json).
-- (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(49);

SELECT FROM medallion.create_bronze('events', 'app');

-- ndjson --------------------------------------------------------------------------

SELECT is(medallion.ingest_text('bronze.events',
    E'{"n": 1}\r\n'                       -- line 1: CRLF line ends are fine
    '{"n": 2, "tags": ["a", "b"]}\n'      -- line 2
    '\n'                                  -- line 3: blank lines are not records
    '{"n": 3\n'                           -- line 4: malformed
    '[{"n": 4}]\n'                        -- line 5: valid JSON, not an object
    '   \n'                               -- line 6: blank
    '{"n": 5} {"n": 6}\n'                 -- line 7: two values on one line
    '{"n": "\\u0000"}\n'                  -- line 8: jsonb cannot store \u0000
    '{"n": 1e999999}\n'                   -- line 9: valid JSON, beyond numeric
    '{"n": 7}',                           -- line 10: no final newline
    'ndjson', 'nd1', 'events.ndjson'),
    3::bigint, 'ndjson: the good lines land, the bad ones do not stop them');
SELECT results_eq(
    $$SELECT _raw, _batch_id, _file_name FROM bronze.events WHERE _batch_id = 'nd1' ORDER BY _seq$$,
    $$VALUES ('{"n": 1}'::jsonb, 'nd1', 'events.ndjson'),
             ('{"n": 2, "tags": ["a", "b"]}', 'nd1', 'events.ndjson'),
             ('{"n": 7}', 'nd1', 'events.ndjson')$$,
    'ndjson: rows land in input order with the batch id and file name');
SELECT results_eq(
    $$SELECT line_number, original_payload, pipeline, error_type, batch_id, file_name
      FROM medallion.dlq WHERE batch_id = 'nd1' ORDER BY line_number$$,
    $$VALUES (4::bigint, '{"n": 3', 'bronze.events', 'parse', 'nd1', 'events.ndjson'),
             (5, '[{"n": 4}]', 'bronze.events', 'parse', 'nd1', 'events.ndjson'),
             (7, '{"n": 5} {"n": 6}', 'bronze.events', 'parse', 'nd1', 'events.ndjson'),
             (8, '{"n": "\u0000"}', 'bronze.events', 'parse', 'nd1', 'events.ndjson'),
             (9, '{"n": 1e999999}', 'bronze.events', 'parse', 'nd1', 'events.ndjson')$$,
    'ndjson: each bad line is a DLQ row with its exact text and line number');
SELECT results_eq(
    $$SELECT line_number, sqlstate, error_message FROM medallion.dlq
      WHERE batch_id = 'nd1' AND line_number IN (5, 9) ORDER BY line_number$$,
    $$VALUES (5::bigint, '22032', 'record is not a JSON object'),
             (9, '22003', 'value overflows numeric format')$$,
    'ndjson: the DLQ row carries the reason and its SQLSTATE');
SELECT results_eq(
    $$SELECT rows_landed, rows_dlq, file_name FROM medallion.batches WHERE batch_id = 'nd1'$$,
    $$VALUES (3::bigint, 5::bigint, 'events.ndjson')$$,
    'ndjson: the batch counts what landed and what went to the DLQ');

SELECT is(medallion.ingest_text('bronze.events', '{"n": 1}', 'ndjson', 'nd1'), 0::bigint,
          'a batch id already landed lands nothing');
SELECT is(medallion.ingest_text('bronze.events', '', 'ndjson', 'nd2'), 0::bigint,
          'empty text lands nothing');
SELECT is(medallion.ingest_text('bronze.events', '{"alias": true}', 'JSONL', 'nd3'), 1::bigint,
          'format names are case-insensitive and jsonl means ndjson');
SELECT is(medallion.ingest_text('bronze.events', '{"default": true}', batch_id => 'nd4'), 1::bigint,
          'ndjson is the default format');

-- json: an array of objects, or one object -----------------------------------------

SELECT is(medallion.ingest_text('bronze.events',
    E'[\n  {"k": 1},\n  2,\n  {"k": "\\u0000"},\n  {"k": [3, {"deep": true}]},\n  "four",\n  [5]\n]',
    'json', 'js1', 'events.json'),
    2::bigint, 'json: the objects of the array land');
SELECT results_eq(
    $$SELECT _raw FROM bronze.events WHERE _batch_id = 'js1' ORDER BY _seq$$,
    $$VALUES ('{"k": 1}'::jsonb), ('{"k": [3, {"deep": true}]}')$$,
    'json: an element jsonb refuses does not keep the other elements out');
SELECT results_eq(
    $$SELECT line_number, original_payload, error_type, file_name FROM medallion.dlq
      WHERE batch_id = 'js1' ORDER BY line_number$$,
    $$VALUES (2::bigint, '2', 'parse', 'events.json'),
             (3, '{"k": "\u0000"}', 'parse', 'events.json'),
             (5, '"four"', 'parse', 'events.json'),
             (6, '[5]', 'parse', 'events.json')$$,
    'json: each bad element is a DLQ row with its exact text and its position');

SELECT is(medallion.ingest_text('bronze.events', '{"single": 1}', 'json', 'js2'), 1::bigint,
          'json: a single object lands');
SELECT is(medallion.ingest_text('bronze.events', '42', 'json', 'js3'), 0::bigint,
          'json: a scalar document lands nothing');
SELECT results_eq(
    $$SELECT line_number, original_payload FROM medallion.dlq WHERE batch_id = 'js3'$$,
    $$VALUES (1::bigint, '42')$$,
    'json: a scalar document goes to the DLQ');
SELECT is(medallion.ingest_text('bronze.events', '[{"a": 1}, {"b": ', 'json', 'js4'), 0::bigint,
          'json: a truncated document lands nothing');
SELECT results_eq(
    $$SELECT line_number, original_payload, sqlstate FROM medallion.dlq WHERE batch_id = 'js4'$$,
    $$VALUES (1::bigint, '[{"a": 1}, {"b": ', '22032')$$,
    'json: a document that does not parse is kept whole in the DLQ');
SELECT is(medallion.ingest_text('bronze.events', '  []  ', 'json', 'js5'), 0::bigint,
          'json: an empty array lands nothing');
SELECT is((SELECT count(*)::int FROM medallion.dlq WHERE batch_id = 'js5'), 0,
          'json: and is no error');

-- csv: RFC 4180, the header gives the keys ---------------------------------------------

SELECT is(medallion.ingest_text('bronze.events',
    E'id,name,note\r\n'                          -- line 1: header
    '1,"Smith, Jane","she said ""hi"""\r\n'      -- line 2: comma and doubled quotes
    '2,"two\nlines",plain\r\n'                   -- lines 3-4: newline inside quotes
    '3,,""\r\n'                                  -- line 5: empty vs quoted empty
    '4,too few\r\n'                              -- line 6: field count mismatch
    '5,a,b,c\r\n'                                -- line 7: field count mismatch
    '6,"bad"quote,x\r\n'                         -- line 8: text after a closing quote
    '7,ok,"last"',                               -- line 9: no final newline
    'csv', 'csv1', 'people.csv'),
    4::bigint, 'csv: the well-formed records land');
SELECT results_eq(
    $$SELECT _raw FROM bronze.events WHERE _batch_id = 'csv1' ORDER BY _seq$$,
    $$VALUES ('{"id": "1", "name": "Smith, Jane", "note": "she said \"hi\""}'::jsonb),
             ('{"id": "2", "name": "two\nlines", "note": "plain"}'),
             ('{"id": "3", "name": null, "note": ""}'),
             ('{"id": "7", "name": "ok", "note": "last"}')$$,
    'csv: header keys, quoted commas, doubled quotes, embedded newlines; empty is null, "" is empty');
SELECT results_eq(
    $$SELECT line_number, original_payload, sqlstate, error_type FROM medallion.dlq
      WHERE batch_id = 'csv1' ORDER BY line_number$$,
    $$VALUES (6::bigint, '4,too few', '22P04', 'parse'),
             (7, '5,a,b,c', '22P04', 'parse'),
             (8, '6,"bad"quote,x', '22P04', 'parse')$$,
    'csv: malformed records are DLQ rows with their exact text and line');
SELECT is((SELECT error_message FROM medallion.dlq WHERE batch_id = 'csv1' AND line_number = 6),
          'record has 2 fields, the header has 3',
          'csv: a field-count mismatch says so');

SELECT is(medallion.ingest_text('bronze.events', E'a,b\n1,"open\n2,3\n', 'csv', 'csv2'), 0::bigint,
          'csv: an unterminated quote lands nothing after it');
SELECT results_eq(
    $$SELECT line_number, original_payload, error_message FROM medallion.dlq WHERE batch_id = 'csv2'$$,
    $$VALUES (2::bigint, E'1,"open\n2,3', 'unterminated quoted field')$$,
    'csv: the unterminated record goes to the DLQ, nothing is lost');
SELECT is(medallion.ingest_text('bronze.events', E'only,header\n', 'csv', 'csv3'), 0::bigint,
          'csv: a header alone lands nothing');
SELECT throws_ok($$SELECT medallion.ingest_text('bronze.events', E'a,,c\n1,2,3', 'csv', 'csv4')$$,
                 '22P04', NULL, 'csv: a header with an empty column name is refused');
SELECT throws_ok($$SELECT medallion.ingest_text('bronze.events', E'a,"b\n', 'csv', 'csv5')$$,
                 '22P04', NULL, 'csv: a header with broken quoting is refused');

-- Nesting depth: the JSON parsers recurse, so a record nested deeper than 10000 levels
-- goes to the DLQ instead of exhausting the stack and failing the whole ingest --------

SELECT is(medallion.ingest_text('bronze.events',
    E'{"n": 1}\n'                                                         -- line 1
    || repeat('[', 200000) || repeat(']', 200000) || E'\n'                -- line 2: 200000 deep
    || repeat('{"a": ', 200000) || '1' || repeat('}', 200000) || E'\n'    -- line 3: likewise
    || '{"d": ' || repeat('[', 9999) || repeat(']', 9999) || E'}\n'       -- line 4: 10000 deep
    || '{"d": ' || repeat('[', 10000) || repeat(']', 10000) || E'}\n'     -- line 5: 10001 deep
    || '{"n": 2}',                                                        -- line 6
    'ndjson', 'deep1'),
    3::bigint, 'ndjson: records nested too deep do not stop the others');
SELECT results_eq(
    $$SELECT line_number, sqlstate, error_message, length(original_payload) FROM medallion.dlq
      WHERE batch_id = 'deep1' ORDER BY line_number$$,
    $$VALUES (2::bigint, '54000', 'record is nested more than 10000 levels deep', 400000),
             (3, '54000', 'record is nested more than 10000 levels deep', 1400001),
             (5, '54000', 'record is nested more than 10000 levels deep', 20007)$$,
    'ndjson: a record nested more than 10000 levels deep is a DLQ row, kept whole');
SELECT results_eq(
    $$SELECT (SELECT k FROM jsonb_object_keys(_raw) k) FROM bronze.events
      WHERE _batch_id = 'deep1' ORDER BY _seq$$,
    $$VALUES ('n'), ('d'), ('n')$$,
    'ndjson: a record nested exactly 10000 levels deep lands');
SELECT results_eq(
    $$SELECT rows_landed, rows_dlq FROM medallion.batches WHERE batch_id = 'deep1'$$,
    $$VALUES (3::bigint, 3::bigint)$$,
    'ndjson: the batch counts the deep records as DLQ rows');
SELECT is(medallion.ingest_text('bronze.events',
    '[{"n": 1}, ' || repeat('[', 200000) || repeat(']', 200000) || ']', 'json', 'deep2'),
    1::bigint, 'json: an element nested too deep does not keep the other elements out');
SELECT results_eq(
    $$SELECT line_number, sqlstate, error_message, length(original_payload) FROM medallion.dlq
      WHERE batch_id = 'deep2'$$,
    $$VALUES (2::bigint, '54000', 'record is nested more than 10000 levels deep', 400000)$$,
    'json: it is a DLQ row of its own, with its position');

-- medallion.max_record_size ------------------------------------------------------------

SET LOCAL medallion.max_record_size = '1MB';
SELECT is(medallion.ingest_text('bronze.events',
              format(E'{"big": "%s"}\n{"small": 1}', repeat('x', 1100000)), 'ndjson', 'big1'),
          1::bigint, 'ndjson: a record over medallion.max_record_size does not land, the others do');
SELECT is(medallion.ingest_text('bronze.events',
              format('[{"big": "%s"}, {"small": 1}]', repeat('x', 1100000)), 'json', 'big2'),
          1::bigint, 'json: likewise');
SELECT is(medallion.ingest_text('bronze.events',
              format(E'big,small\n%s,1\n,2', repeat('x', 1100000)), 'csv', 'big3'),
          1::bigint, 'csv: likewise');
SELECT results_eq(
    $$SELECT batch_id, line_number, sqlstate, length(original_payload), original_length FROM medallion.dlq
      WHERE batch_id LIKE 'big_' ORDER BY batch_id$$,
    $$VALUES ('big1', 1::bigint, '54000', 65536, 1100011::bigint), ('big2', 1, '54000', 65536, 1100011),
             ('big3', 2, '54000', 65536, 1100002)$$,
    'oversized records go to the DLQ cut to their first 64 kB, with their length');
RESET medallion.max_record_size;

-- Arguments ------------------------------------------------------------------------------

SELECT throws_ok($$SELECT medallion.ingest_text(NULL, '{}')$$, '22004', NULL, 'a NULL target is refused');
SELECT throws_ok($$SELECT medallion.ingest_text('bronze.events', NULL)$$, '22004', NULL,
                 'a NULL payload is refused');
SELECT throws_ok($$SELECT medallion.ingest_text('bronze.events', '{}', NULL)$$, '22004', NULL,
                 'a NULL format is refused');
SELECT throws_ok($$SELECT medallion.ingest_text('bronze.events', '<a/>', 'xml')$$, '22023', NULL,
                 'an unknown format is refused');
SELECT throws_ok($$SELECT medallion.ingest_text('bronze.events', '{}', 'ndjson', '')$$, '22023', NULL,
                 'an empty batch id is refused');
SELECT throws_ok($$SELECT medallion.ingest_text('bronze.nope', '{}')$$, '42P01', NULL,
                 'a table that does not exist is refused');
CREATE TABLE public.not_bronze (_raw jsonb, _batch_id text, _file_name text);
SELECT throws_ok($$SELECT medallion.ingest_text('public.not_bronze', '{}')$$, '42809', NULL,
                 'a table that is not a bronze table is refused');

SELECT is(medallion.ingest_text('bronze.events', E'a,c\n1,3', 'csv', 'csv4'), 1::bigint,
          'after a refused ingest, the corrected batch lands under the same id');

-- An ingest started by a trigger while another ingest's COPY runs: the outer
-- COPY goes on reading its own input afterwards, and a failed ingest leaves
-- nothing behind for the next one.
SELECT FROM medallion.create_bronze('fanout', 'app');
CREATE FUNCTION public.fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM medallion.ingest_text('bronze.fanout', NEW._raw::text, 'ndjson');
  RETURN NEW;
END $$;
CREATE TRIGGER fan_out BEFORE INSERT ON bronze.events
  FOR EACH ROW WHEN (NEW._batch_id = 'nested') EXECUTE FUNCTION public.fan_out();
SELECT is(medallion.ingest_text('bronze.events', E'{"k": 1}\n{"k": 2}\n{"k": 3}', 'ndjson', 'nested'),
          3::bigint, 'an ingest whose rows start other ingests lands all its rows');
SELECT results_eq($$SELECT _raw FROM bronze.fanout ORDER BY _seq$$,
                  $$VALUES ('{"k": 1}'::jsonb), ('{"k": 2}'), ('{"k": 3}')$$,
                  'and each nested ingest landed its row');
DROP TRIGGER fan_out ON bronze.events;
SELECT is(medallion.ingest_text('bronze.events', E'{"k": 4}', 'ndjson', 'after-nested'), 1::bigint,
          'a later ingest is unaffected');

SELECT * FROM finish();
ROLLBACK;
