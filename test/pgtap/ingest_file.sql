-- medallion.ingest_file(target, path, format, batch_id): server-side files in
-- the three formats, the file's identity as its batch id, and the refusals.
-- Fixtures: test/fixtures, whose server-readable copy is named by the setting
-- medallion_test.fixtures.  (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(30);

SELECT FROM medallion.create_bronze('crm_contacts', 'crm');
CREATE TEMP TABLE fx AS
SELECT current_setting('medallion_test.fixtures') || '/crm_contacts.ndjson' AS ndjson,
       current_setting('medallion_test.fixtures') || '/contacts.csv' AS csv,
       current_setting('medallion_test.fixtures') || '/orders.json' AS json;

-- ndjson: 7 lines, a duplicate, a bad date (bronze keeps it), one malformed line ------------

SELECT is(medallion.ingest_file('bronze.crm_contacts', (SELECT ndjson FROM fx)), 6::bigint,
          'ndjson file: every well-formed line lands, duplicates and bad dates included');
SELECT results_eq(
    $$SELECT _raw->>'id', _raw->>'updated_at' FROM bronze.crm_contacts ORDER BY _seq$$,
    $$VALUES ('1', '2025-01-10T10:00:00Z'), ('2', '2025-01-10T11:00:00Z'),
             ('1', '2025-01-11T09:00:00Z'), ('3', '2025-13-45T25:00:00Z'),
             ('2', '2025-01-10T11:00:00Z'), ('5', '2025-01-12T08:00:00Z')$$,
    'the rows land in file order, raw: bronze does not judge content');
SELECT is((SELECT _raw->'address'->>'city' FROM bronze.crm_contacts WHERE _raw->>'id' = '5'), 'Paris',
          'nested objects are kept');
SELECT ok((SELECT bool_and(_file_name = ndjson AND
                           _batch_id LIKE format('file:%s:ndjson:%%:%%:%s:%s', ndjson, (pg_stat_file(ndjson)).size,
                                                 extract(epoch FROM (pg_stat_file(ndjson)).modification)::bigint))
           FROM bronze.crm_contacts, fx),
          'the file name is the path; the batch id is the file''s identity (path, format, device, inode, size, mtime)');
SELECT results_eq(
    $$SELECT pipeline, error_type, sqlstate, line_number, original_payload, file_name, batch_id
      FROM medallion.dlq$$,
    $$SELECT 'bronze.crm_contacts', 'parse', '22032', 5::bigint,
             '{"id": 4, "email": "dee@example.com", "name": "Dee"', ndjson,
             (SELECT DISTINCT _batch_id FROM bronze.crm_contacts)
      FROM fx$$,
    'the malformed line is a DLQ row: exact text, line number, file name, batch id');

SELECT is(medallion.ingest_file('bronze.crm_contacts', (SELECT ndjson FROM fx)), 0::bigint,
          'loading the same file again without a batch id is a no-op');
SELECT is((SELECT count(*)::int FROM bronze.crm_contacts), 6, 'no row was duplicated');
SELECT is((SELECT count(*)::int FROM medallion.dlq), 1, 'no dead letter was duplicated');
SELECT is(medallion.ingest_file('bronze.crm_contacts', (SELECT ndjson FROM fx), 'ndjson', 'resend-1'),
          6::bigint, 'with a new batch id the same file lands again');
SELECT is(medallion.ingest_file('bronze.crm_contacts', (SELECT ndjson FROM fx), 'ndjson', 'resend-1'),
          0::bigint, 'and that batch id, once landed, is a no-op too');

-- csv --------------------------------------------------------------------------------

SELECT FROM medallion.create_bronze('contacts_csv', 'crm');
SELECT is(medallion.ingest_file('bronze.contacts_csv', (SELECT csv FROM fx), 'csv'), 4::bigint,
          'csv file: the well-formed records land');
SELECT results_eq(
    $$SELECT _raw FROM bronze.contacts_csv ORDER BY _seq$$,
    $$VALUES ('{"id": "1", "name": "Ann", "email": "ann@example.com", "note": "likes \"quotes\", and commas"}'::jsonb),
             ('{"id": "2", "name": "Bob", "email": "bob@example.com", "note": "two\nlines"}'),
             ('{"id": "4", "name": "Dee", "email": null, "note": null}'),
             ('{"id": "5", "name": "Eve", "email": "eve@example.com", "note": "plain"}')$$,
    'csv file (CRLF): header keys, RFC 4180 quoting, a quoted line break');
SELECT results_eq(
    $$SELECT line_number, original_payload, error_message FROM medallion.dlq
      WHERE pipeline = 'bronze.contacts_csv'$$,
    $$VALUES (5::bigint, '3,Cy,cy@example.com', 'record has 3 fields, the header has 4')$$,
    'csv file: the short record is a DLQ row (line 5: the quoted line break counts)');

-- json ---------------------------------------------------------------------------------

SELECT FROM medallion.create_bronze('orders', 'shop');
SELECT is(medallion.ingest_file('bronze.orders', (SELECT json FROM fx), 'json'), 3::bigint,
          'json file: the objects of the array land');
SELECT results_eq(
    $$SELECT (_raw->>'order_id')::int FROM bronze.orders ORDER BY _seq$$,
    $$VALUES (100), (101), (102)$$,
    'json file: in array order');
SELECT results_eq(
    $$SELECT line_number, original_payload FROM medallion.dlq WHERE pipeline = 'bronze.orders'
      ORDER BY line_number$$,
    $$VALUES (3::bigint, '"not an object"'), (5, '42')$$,
    'json file: non-object elements are DLQ rows with their position');

-- Refusals ---------------------------------------------------------------------------------

SELECT throws_ok($$SELECT medallion.ingest_file('bronze.orders', '/nonexistent/medallion/file.ndjson')$$,
                 '58P01', NULL, 'a file that does not exist is refused');
SELECT throws_ok(format('SELECT medallion.ingest_file(%L, %L)', 'bronze.orders',
                        current_setting('medallion_test.fixtures')),
                 '42809', NULL, 'a directory is refused');
SELECT throws_ok($$SELECT medallion.ingest_file(NULL, '/tmp/x')$$, '22004', NULL,
                 'a NULL target is refused');
SELECT throws_ok($$SELECT medallion.ingest_file('bronze.orders', NULL)$$, '22004', NULL,
                 'a NULL path is refused');
SELECT throws_ok(format('SELECT medallion.ingest_file(%L, %L, NULL)', 'bronze.orders', (SELECT json FROM fx)),
                 '22004', NULL, 'a NULL format is refused');
SELECT throws_ok(format('SELECT medallion.ingest_file(%L, %L, %L)', 'bronze.orders', (SELECT json FROM fx), 'parquet'),
                 '22023', NULL, 'an unknown format is refused');
SELECT throws_ok(format('SELECT medallion.ingest_file(%L, %L)', 'bronze.no_such', (SELECT json FROM fx)),
                 '42P01', NULL, 'a table that does not exist is refused');
SELECT throws_ok(format('SELECT medallion.ingest_file(%L, %L)', 'medallion.runs', (SELECT ndjson FROM fx)),
                 '42809', NULL, 'a table that is not a bronze table is refused');
SELECT throws_ok(format('SELECT medallion.ingest_file(%L, %L, %L, %L)', 'bronze.orders', (SELECT json FROM fx), 'json', ''),
                 '22023', NULL, 'an empty batch id is refused');

-- Reading server files is a privilege -----------------------------------------------------

CREATE ROLE medallion_tap_loader NOLOGIN;
GRANT INSERT ON bronze.orders TO medallion_tap_loader;
GRANT SELECT ON fx TO medallion_tap_loader;
SET ROLE medallion_tap_loader;
SELECT throws_ok(format('SELECT medallion.ingest_file(%L, %L, %L, %L)', 'bronze.orders', (SELECT json FROM fx), 'json', 'by-loader'),
                 '42501', NULL, 'without pg_read_server_files a role cannot ingest a file');
SELECT is(medallion.ingest_text('bronze.orders', '{"order_id": 103}', 'ndjson', 'by-loader'), 1::bigint,
          'though it may ingest the same data as text');
RESET ROLE;
GRANT pg_read_server_files TO medallion_tap_loader;
SET ROLE medallion_tap_loader;
SELECT is(medallion.ingest_file('bronze.orders', (SELECT json FROM fx), 'json', 'by-loader-2'), 3::bigint,
          'with pg_read_server_files it can');
RESET ROLE;
REVOKE INSERT ON bronze.orders FROM medallion_tap_loader;
SET ROLE medallion_tap_loader;
SELECT throws_ok(format('SELECT medallion.ingest_file(%L, %L, %L, %L)', 'bronze.orders', (SELECT json FROM fx), 'json', 'by-loader-3'),
                 '42501', NULL, 'reading files does not replace the INSERT privilege on the target');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM bronze.orders), 7, 'bronze.orders holds exactly what was allowed in');

SELECT * FROM finish();
ROLLBACK;
