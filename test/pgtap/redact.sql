-- Redaction: redact_keys are removed (default) or replaced by the keyed
-- pseudonym of their text (redact_mode "hash": hex HMAC-SHA256 under the
-- database's key, medallion.pseudonymize) before a row is stored, whoever
-- writes it and however; "hash_v1" keeps 0.1.0's unkeyed SHA-256.  Dotted
-- keys reach into nested objects.
-- (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(17);

SELECT FROM medallion.create_bronze('people', 'hr', redact_keys => '{email,address.phone,ssn}');
SELECT FROM medallion.create_bronze('people_h', 'hr', redact_keys => '{email,address.phone,ssn}',
                                    options => '{"redact_mode": "hash"}');
SELECT FROM medallion.create_bronze('people_v1', 'hr', redact_keys => '{email,address.phone,ssn}',
                                    options => '{"redact_mode": "hash_v1"}');

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
              'email', medallion.pseudonymize('ann@example.com'),
              'ssn', medallion.pseudonymize('123456789'),
              'address', jsonb_build_object('city', 'Paris',
                                            'phone', medallion.pseudonymize('+33 1 23'))),
          'hash: values become the keyed pseudonym of their text, nested ones included');
SELECT isnt((SELECT _raw->>'ssn' FROM bronze.people_h WHERE _batch_id = 'h1'),
            encode(sha256(convert_to('123456789', 'UTF8')), 'hex'),
            'hash: not the plain SHA-256, which anyone can compute for every 9-digit number');
SELECT is(medallion.ingest_text('bronze.people_h', '{"id": 2, "email": "ann@example.com"}', 'ndjson', 'h2'),
          1::bigint, 'the same address arrives in another batch');
SELECT is((SELECT count(DISTINCT _raw->>'email')::int FROM bronze.people_h), 1,
          'hash: equal values hash equal, so joins and deduplication still work');
SET ROLE medallion_tap_app;
INSERT INTO bronze.people_h (_raw) VALUES ('{"id": 3, "email": "carl@example.com"}');
RESET ROLE;
SELECT is((SELECT _raw->>'email' FROM bronze.people_h WHERE _raw->>'id' = '3'),
          medallion.pseudonymize('carl@example.com'),
          'hash: a plain INSERT by another writer (who cannot read the key) is hashed too');
SELECT ok(NOT EXISTS (SELECT FROM bronze.people_h WHERE _raw::text LIKE '%@example.com%'),
          'no address is stored in clear');

-- hash_v1: 0.1.0's unkeyed SHA-256 --------------------------------------------------------------

SELECT is(medallion.ingest('bronze.people_v1',
              '{"id": 1, "email": "ann@example.com", "address": {"phone": "+33 1 23"}}', 'v1'),
          1::bigint, 'a record lands in a hash_v1 table');
SELECT is((SELECT _raw FROM bronze.people_v1 WHERE _batch_id = 'v1'),
          jsonb_build_object(
              'id', 1,
              'email', encode(sha256(convert_to('ann@example.com', 'UTF8')), 'hex'),
              'address', jsonb_build_object('phone', encode(sha256(convert_to('+33 1 23', 'UTF8')), 'hex'))),
          'hash_v1: values become the hex SHA-256 of their text, as under 0.1.0');
SELECT throws_ok($$SELECT medallion.create_bronze('people_x', 'hr', redact_keys => '{ssn}',
                                                options => '{"redact_mode": "hash_v2"}')$$,
                 '22023', NULL, 'an unknown redact_mode is refused');

SELECT * FROM finish();
ROLLBACK;
