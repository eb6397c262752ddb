-- Hostile input to ingestion: byte-order marks, duplicate CSV keys, paths that
-- are relative or not regular files, file identity (resolved path, format),
-- broken json documents read as a stream, the DLQ written in batches while
-- COPY runs, and no payload in the DLQ of a table that redacts.
-- Files are written by the server (COPY TO) into its data directory.
-- (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(37);

SELECT FROM medallion.create_bronze('h1_events', 'app');
CREATE TEMP TABLE h1_dir AS SELECT current_setting('data_directory') AS d;

-- A UTF-8 byte-order mark at the start of the input is not data --------------------------

SELECT is(medallion.ingest_text('bronze.h1_events', E'\uFEFF{"id": 1}\n{"id": 2}', 'ndjson', 'bom1'),
          2::bigint, 'ndjson text with a BOM: every line lands');
SELECT is(medallion.ingest_text('bronze.h1_events', E'\uFEFFid,name\n3,Cy', 'csv', 'bom2'),
          1::bigint, 'csv text with a BOM lands');
SELECT is((SELECT _raw FROM bronze.h1_events WHERE _batch_id = 'bom2'), '{"id": "3", "name": "Cy"}'::jsonb,
          'csv: the first header key is "id", not the BOM followed by "id"');
SELECT is(medallion.ingest_text('bronze.h1_events', E'\uFEFF[{"id": 4}]', 'json', 'bom3'),
          1::bigint, 'json text with a BOM lands');
DO $$BEGIN
    EXECUTE format('COPY (VALUES (%L), (%L)) TO %L', E'\uFEFFid,name', '5,Eve',
                   (SELECT d FROM h1_dir) || '/h1_bom.csv');
END$$;
SELECT is(medallion.ingest_file('bronze.h1_events', (SELECT d FROM h1_dir) || '/h1_bom.csv', 'csv'),
          1::bigint, 'a csv file with a BOM lands');
SELECT ok((SELECT _raw ? 'id' FROM bronze.h1_events WHERE _raw->>'name' = 'Eve'),
          'its first key is "id"');

-- Duplicate CSV header names: the last value would win silently ---------------------------

SELECT throws_ok($$SELECT medallion.ingest_text('bronze.h1_events', E'id,name,id\n1,a,2', 'csv', 'dup1')$$,
                 '22P04', 'CSV header has duplicate column name "id"',
                 'csv: a header naming a column twice is refused');
SELECT ok(NOT EXISTS (SELECT FROM medallion.batches WHERE batch_id = 'dup1'),
          'and the batch is not recorded');

-- Paths: absolute, regular files only -----------------------------------------------------

SELECT throws_like($$SELECT medallion.ingest_file('bronze.h1_events', 'h1_bom.csv', 'csv')$$,
                   '%is not absolute%', 'a relative path is refused, saying paths are absolute');
SELECT throws_ok($$SELECT medallion.ingest_file('bronze.h1_events', 'h1_bom.csv', 'csv')$$,
                 '22023', NULL, 'with SQLSTATE 22023');
SELECT throws_ok($$SELECT medallion.ingest_file('bronze.h1_events', '/dev/zero')$$,
                 '42809', '"/dev/zero" is not a regular file', '/dev/zero is refused');
SELECT throws_ok($$SELECT medallion.ingest_file('bronze.h1_events', '/dev/null')$$,
                 '42809', NULL, 'other devices are refused');

-- File identity: the resolved path, and the format ----------------------------------------

DO $$BEGIN
    EXECUTE format('COPY (VALUES (%L), (%L)) TO %L', '{"k": 1}', '{"k": 2}',
                   (SELECT d FROM h1_dir) || '/h1_two.ndjson');
END$$;
SELECT is(medallion.ingest_file('bronze.h1_events', (SELECT d FROM h1_dir) || '/h1_two.ndjson', 'json'),
          0::bigint, 'an ndjson file read as json lands nothing');
SELECT is(medallion.ingest_file('bronze.h1_events', (SELECT d FROM h1_dir) || '/h1_two.ndjson', 'ndjson'),
          2::bigint, 'retried with the right format, it lands: the format is part of its identity');
SELECT is(medallion.ingest_file('bronze.h1_events',
              (SELECT d FROM h1_dir) || '/global/../h1_two.ndjson', 'ndjson'),
          0::bigint, 'the same file by another path is the same batch: already landed');
SELECT is(medallion.ingest_file('bronze.h1_events',
              (SELECT d FROM h1_dir) || '/./global/../h1_two.ndjson', 'jsonl'),
          0::bigint, 'jsonl is ndjson: already landed too');
SELECT is((SELECT count(*)::int FROM bronze.h1_events WHERE _raw ? 'k'), 2, 'the file landed once');
SELECT is((SELECT DISTINCT _file_name FROM bronze.h1_events WHERE _raw ? 'k'),
          (SELECT d FROM h1_dir) || '/h1_two.ndjson', 'the file name stored is the resolved path');

-- A file landed by 0.1.0 is named by its path as given, its size and mtime: still landed
DO $$BEGIN
    EXECUTE format('COPY (VALUES (%L)) TO %L', '{"legacy": 1}', (SELECT d FROM h1_dir) || '/h1_legacy.ndjson');
END$$;
INSERT INTO medallion.batches (pipeline, batch_id, file_name)
SELECT 'bronze.h1_events', format('file:%s:%s:%s', f, (pg_stat_file(f)).size,
                                  extract(epoch FROM (pg_stat_file(f)).modification)::bigint), f
FROM (SELECT d || '/h1_legacy.ndjson' AS f FROM h1_dir) x;
SELECT is(medallion.ingest_file('bronze.h1_events', (SELECT d FROM h1_dir) || '/h1_legacy.ndjson'),
          0::bigint, 'a file whose 0.1.0 batch id is recorded is already landed');
SELECT ok(NOT EXISTS (SELECT FROM bronze.h1_events WHERE _raw ? 'legacy'), 'nothing of it lands again');

-- json, read as a stream: the document must still be one ---------------------------------

SELECT is(medallion.ingest_text('bronze.h1_events', '[{"a": 1}, {"a": 2}] {"a": 3}', 'json', 'js-tail'),
          0::bigint, 'json: text after the array lands nothing');
SELECT is(medallion.ingest_text('bronze.h1_events', '[{"a": 1}, {"a": 2},]', 'json', 'js-empty'),
          0::bigint, 'json: an empty element lands nothing');
SELECT is(medallion.ingest_text('bronze.h1_events', '[{"a": 1}, {"a": "2"', 'json', 'js-open'),
          0::bigint, 'json: an array that is not terminated lands nothing');
SELECT results_eq(
    $$SELECT batch_id, line_number, sqlstate, original_payload FROM medallion.dlq
      WHERE batch_id LIKE 'js-%' ORDER BY batch_id$$,
    $$VALUES ('js-empty', 1::bigint, '22032', '[{"a": 1}, {"a": 2},]'),
             ('js-open', 1, '22032', '[{"a": 1}, {"a": "2"'),
             ('js-tail', 1, '22032', '[{"a": 1}, {"a": 2}] {"a": 3}')$$,
    'json: each broken document is one DLQ row holding it whole');
SELECT is(medallion.ingest_text('bronze.h1_events', E'[\n {"s": "],[{"}, {"s": "\\"]"} , 1 ]  ', 'json', 'js-str'),
          2::bigint, 'json: brackets and commas inside strings do not cut elements');
SELECT results_eq(
    $$SELECT line_number, original_payload FROM medallion.dlq WHERE batch_id = 'js-str'$$,
    $$VALUES (3::bigint, '1')$$,
    'json: the non-object element is a DLQ row with its position');

-- The DLQ is written in batches, while COPY runs -------------------------------------------

CREATE TABLE public.h1_dlq_log (seq serial, n int, landed_so_far int);
CREATE TABLE public.h1_landed (n int);
INSERT INTO public.h1_landed VALUES (0);
CREATE FUNCTION public.h1_count_landed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE public.h1_landed SET n = n OPERATOR(pg_catalog.+) 1;
    RETURN NEW;
END$$;
CREATE FUNCTION public.h1_log_dlq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.h1_dlq_log (n, landed_so_far)
    SELECT pg_catalog.count(*), (SELECT n FROM public.h1_landed) FROM new_rows;
    RETURN NULL;
END$$;
SELECT FROM medallion.create_bronze('h1_many', 'app');
CREATE TRIGGER h1_count BEFORE INSERT ON bronze.h1_many FOR EACH ROW EXECUTE FUNCTION public.h1_count_landed();
CREATE TRIGGER h1_log AFTER INSERT ON medallion.dlq REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION public.h1_log_dlq();

SELECT is(medallion.ingest_text('bronze.h1_many',
              (SELECT string_agg(format(E'{"i": %s}\nbroken %s', i, i), E'\n') FROM generate_series(1, 2500) i),
              'ndjson', 'many'),
          2500::bigint, '2500 good lines land among 2500 bad ones');
SELECT results_eq($$SELECT n FROM public.h1_dlq_log ORDER BY seq$$, $$VALUES (1000), (1000), (500)$$,
                  'the 2500 bad lines are written in three statements of at most 1000 rows');
SELECT ok((SELECT landed_so_far < 2500 FROM public.h1_dlq_log ORDER BY seq LIMIT 1),
          'the first batch is written while COPY is still landing rows, not when it ends');
SELECT is((SELECT rows_dlq FROM medallion.batches WHERE batch_id = 'many'), 2500::bigint,
          'the batch counts every bad line');
DROP TRIGGER h1_log ON medallion.dlq;

-- A table that redacts keeps no payload in the DLQ -----------------------------------------

SELECT FROM medallion.create_bronze('h1_people', 'hr', redact_keys => '{ssn}');
SELECT is(medallion.ingest_text('bronze.h1_people',
              E'{"id": 1, "ssn": "123-45-6789"}\n{"id": 2, "ssn": "987-65-4321"\n{"id": 3, "ssn": 987-65-4321}',
              'ndjson', 'red1'),
          1::bigint, 'redacting table: the valid record lands');
SELECT results_eq(
    $$SELECT line_number, original_payload IS NULL, original_length, sqlstate, batch_id FROM medallion.dlq
      WHERE pipeline = 'bronze.h1_people' ORDER BY line_number$$,
    $$VALUES (2::bigint, true, 30::bigint, '22032', 'red1'), (3, true, 29, '22032', 'red1')$$,
    'an unparseable record keeps its line, length, error and batch, and no payload');
SELECT ok(NOT EXISTS (SELECT FROM medallion.dlq WHERE pipeline = 'bronze.h1_people'
                      AND (error_message LIKE '%987%' OR error_message LIKE '%65%')),
          'the error message quotes nothing of the record either');
SELECT is(medallion.ingest('bronze.h1_people', '[{"id": 4}, ["987-65-4321"]]', 'red2'), 1::bigint,
          'ingest(): the object lands');
SELECT ok((SELECT original_payload IS NULL AND original_length > 0 FROM medallion.dlq WHERE batch_id = 'red2'),
          'ingest(): the element that is not an object keeps no payload either');
SELECT is(medallion.ingest_text('bronze.h1_events', E'{"id": 1, "ssn": "987-65-4321"', 'ndjson', 'red3'),
          0::bigint, 'a table without redaction');
SELECT is((SELECT original_payload FROM medallion.dlq WHERE batch_id = 'red3'), '{"id": 1, "ssn": "987-65-4321"',
          'keeps the payload as it came');

SELECT * FROM finish();
ROLLBACK;
