-- Redaction: redact_keys are removed (default) or replaced by the hex SHA-256
-- of their text (redact_mode "hash") before a row is stored, whoever writes
-- it and however.  Dotted keys reach into nested objects.
-- (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(13);

SELECT FROM medallion.create_bronze('people', 'hr', redact_keys => '{email,address.phone,ssn}');
SELECT FROM medallion.create_bronze('people_h', 'hr', redact_keys => '{email,address.phone,ssn}',
                                    options => '{"redact_mode": "hash"}');

-- remove ----------------------------------------------------------------------------------

SELECT is(medallion.ingest('bronze.people',
              '{"id": 1, "email": "ann@example.com", "ssn": 123456789,
                "address": {"city": "Paris", "phone": "+33 1 23"}}', 'r1'),
          1::bigint, 'a record with personal keys lands');
SELECT is((SELECT _raw FROM bronze.people WHERE _batch_id = 'r1'),
          '{"id": 1, "address": {"city": "Paris"}}'::jsonb,
          'remove: top-level and nested redact keys are gone, the rest is kept');
SELECT is(medallion.ingest_text('bronze.people',
              E'{"id": 2, "email": "bob@example.com"}\n{"id": 3, "address": "no object here"}',
              'ndjson', 'r2'),
          2::bigint, 'records through ingest_text (COPY) land');
SELECT results_eq(
    $$SELECT _raw FROM bronze.people WHERE _batch_id = 'r2' ORDER BY _seq$$,
    $$VALUES ('{"id": 2}'::jsonb), ('{"id": 3, "address": "no object here"}')$$,
    'remove: applied on the COPY path; a record without the keys is untouched');
SELECT is(medallion.ingest_text('bronze.people', E'id,email,ssn\n4,dee@example.com,987', 'csv', 'r3'),
          1::bigint, 'a csv record lands');
SELECT is((SELECT _raw FROM bronze.people WHERE _batch_id = 'r3'), '{"id": "4"}'::jsonb,
          'remove: applied to csv records too');

CREATE ROLE medallion_tap_app NOLOGIN;
GRANT INSERT ON bronze.people, bronze.people_h TO medallion_tap_app;
SET ROLE medallion_tap_app;
INSERT INTO bronze.people (_raw) VALUES ('{"id": 5, "email": "eve@example.com", "address": {"phone": "1"}}');
RESET ROLE;
SELECT is((SELECT _raw FROM bronze.people WHERE _raw->>'id' = '5'), '{"id": 5, "address": {}}'::jsonb,
          'remove: a plain INSERT by another writer is redacted too');

-- hash --------------------------------------------------------------------------------------

SELECT is(medallion.ingest('bronze.people_h',
              '{"id": 1, "email": "ann@example.com", "ssn": 123456789,
                "address": {"city": "Paris", "phone": "+33 1 23"}}', 'h1'),
          1::bigint, 'a record with personal keys lands in the hashing table');
SELECT is((SELECT _raw FROM bronze.people_h WHERE _batch_id = 'h1'),
          jsonb_build_object(
              'id', 1,
              'email', encode(sha256(convert_to('ann@example.com', 'UTF8')), 'hex'),
              'ssn', encode(sha256(convert_to('123456789', 'UTF8')), 'hex'),
              'address', jsonb_build_object('city', 'Paris',
                                            'phone', encode(sha256(convert_to('+33 1 23', 'UTF8')), 'hex'))),
          'hash: values become the hex SHA-256 of their text, nested ones included');
SELECT is(medallion.ingest_text('bronze.people_h', '{"id": 2, "email": "ann@example.com"}', 'ndjson', 'h2'),
          1::bigint, 'the same address arrives in another batch');
SELECT is((SELECT count(DISTINCT _raw->>'email')::int FROM bronze.people_h), 1,
          'hash: equal values hash equal, so joins and deduplication still work');
SET ROLE medallion_tap_app;
INSERT INTO bronze.people_h (_raw) VALUES ('{"id": 3, "email": "carl@example.com"}');
RESET ROLE;
SELECT is((SELECT _raw->>'email' FROM bronze.people_h WHERE _raw->>'id' = '3'),
          encode(sha256(convert_to('carl@example.com', 'UTF8')), 'hex'),
          'hash: a plain INSERT by another writer is hashed too');
SELECT ok(NOT EXISTS (SELECT FROM bronze.people_h WHERE _raw::text LIKE '%@example.com%'),
          'no address is stored in clear');

SELECT * FROM finish();
ROLLBACK;
