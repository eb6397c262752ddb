--
-- bronze_ingest: a walk-through of the bronze layer.  Raw data lands in an
-- append-only table, exactly as it came; what cannot be parsed goes to
-- medallion.dlq with the reason, never lost.  Batch ids make re-sends no-ops.
-- (Explicit batch ids and ORDER BY keep this output deterministic.)
--

-- A bronze table per source.
SELECT medallion.create_bronze('crm_contacts', 'crm');

SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull AS not_null
FROM pg_attribute
WHERE attrelid = 'bronze.crm_contacts'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum;

-- Partitioned by UTC day: today and medallion.premake_days (3) days ahead.
SELECT count(*) AS partitions FROM pg_inherits WHERE inhparent = 'bronze.crm_contacts'::regclass;

SELECT name, layer, relname, source_system, retention, state
FROM medallion.pipelines ORDER BY name;

-- 1. ingest(): a jsonb object, or an array of objects.
SELECT medallion.ingest('bronze.crm_contacts', '{"id": 1, "name": "Ann"}', 'api-1');
SELECT medallion.ingest('bronze.crm_contacts',
                        '[{"id": 2, "name": "Bob"}, "oops", {"id": 3, "name": "Cy"}, 42]',
                        'api-2', 'push.json');

-- 2. ingest_text(), ndjson: one object per line.
SELECT medallion.ingest_text('bronze.crm_contacts',
    E'{"id": 4, "name": "Dee"}\n'
    '{"id": 5, "name": "Eve"\n'
    '\n'
    '["not", "an", "object"]\n'
    '{"id": 6, "name": "Fay", "updated_at": "2025-13-45"}\n',
    'ndjson', 'nd-1', 'contacts.ndjson');

-- 3. ingest_text(), json: an array of objects (positions count from 1).
SELECT medallion.ingest_text('bronze.crm_contacts',
    '[{"id": 7, "name": "Gus"}, null, {"id": 8, "tags": ["a", "b"]}]',
    'json', 'js-1', 'contacts.json');

-- 4. ingest_text(), csv: RFC 4180, the header gives the keys, values are text.
SELECT medallion.ingest_text('bronze.crm_contacts',
    E'id,name,note\n'
    '9,"Hal, Jr.","said ""hi"""\n'
    '10,Ida,"two\nlines"\n'
    '11,Joe\n'
    '12,,\n',
    'csv', 'csv-1', 'contacts.csv');

-- 5. A batch id already landed: nothing happens.
SELECT medallion.ingest_text('bronze.crm_contacts', '{"id": 99}', 'ndjson', 'nd-1');

-- What landed, in arrival order.
SELECT _batch_id, _file_name, _source_system, _raw
FROM bronze.crm_contacts ORDER BY _seq;

-- What went to the dead-letter queue: the exact text, where it was, and why.
SELECT batch_id, file_name, line_number, error_type, sqlstate, error_message, original_payload
FROM medallion.dlq ORDER BY id;

-- One row per batch, with its counts.
SELECT batch_id, file_name, rows_landed, rows_dlq
FROM medallion.batches ORDER BY batch_id;

-- Bronze is append-only.
UPDATE bronze.crm_contacts SET _raw = '{}';
DELETE FROM bronze.crm_contacts;

-- Redaction before anything is stored: removed, or hashed (keyed: HMAC-SHA256).
SELECT medallion.create_bronze('hr_people', 'hr', '30 days', '{email,address.phone}',
                               '{"redact_mode": "hash"}');
SELECT medallion.ingest('bronze.hr_people',
    '{"id": 1, "email": "ann@example.com", "address": {"city": "Oslo", "phone": "555"}}', 'hr-1');
SELECT _raw->>'email' = medallion.pseudonymize('ann@example.com') AS email_hashed,
       _raw->'address'->>'city' AS city,
       _raw->'address'->>'phone' = medallion.pseudonymize('555') AS phone_hashed
FROM bronze.hr_people;

-- Change capture of a local table.
CREATE TABLE public.accounts (id int PRIMARY KEY, balance numeric);
SELECT medallion.capture('public.accounts');
INSERT INTO public.accounts VALUES (1, 10), (2, 20);
UPDATE public.accounts SET balance = 15 WHERE id = 1;
DELETE FROM public.accounts WHERE id = 2;
SELECT _raw->>'op' AS op, _raw->'data' AS data, _raw->'old' AS old
FROM bronze.accounts ORDER BY _seq;
TRUNCATE public.accounts;

-- Retention: nothing is old enough yet.
SELECT medallion.apply_retention();

-- Clear errors.
SELECT medallion.ingest_text('bronze.crm_contacts', '<xml/>', 'xml');
SELECT medallion.ingest('public.accounts', '{}');
SELECT medallion.ingest(NULL, '{}');
SELECT medallion.create_bronze('crm_contacts', 'crm');
SELECT medallion.create_bronze('bad', 'crm', '-1 day');
-- A creation that fails in the SQL medallion generates reports the error, not that SQL.
CREATE DOMAIN bronze.clash AS int;
SELECT medallion.create_bronze('clash', 'crm');
DROP DOMAIN bronze.clash;
SELECT medallion.ingest_file('bronze.crm_contacts', '/nonexistent/contacts.ndjson');

DROP TABLE public.accounts;
