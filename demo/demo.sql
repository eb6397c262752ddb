-- medallion demo: the CRM-contacts example of the pipeline-design guide.
-- Run by demo/run against a scratch server; :fixtures is where this folder sits.
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = notice;

\echo
\echo '== 1. A bronze table for raw CRM contacts (SSNs never stored)'
SELECT medallion.create_bronze('crm_contacts', 'crm',
                               retention   => '90 days',
                               redact_keys => '{ssn}',
                               options     => '{"description": "raw CRM contact exports"}');

\echo
\echo '== 2. Land the export file: duplicates, a bad date and a malformed line in it'
SELECT medallion.ingest_file('bronze.crm_contacts', :'fixtures' || '/crm_contacts.ndjson') AS rows_landed;

\echo
\echo '== 3. Loading the same file again is a no-op'
SELECT medallion.ingest_file('bronze.crm_contacts', :'fixtures' || '/crm_contacts.ndjson') AS rows_landed;

\echo
\echo '== 4. What landed in bronze (append-only, every version kept, ssn removed)'
SELECT _seq, _raw->>'id' AS id, _raw->>'email' AS email, _raw->>'updated_at' AS updated_at,
       _raw ? 'ssn' AS has_ssn, _source_system
FROM bronze.crm_contacts ORDER BY _seq;

\echo
\echo '== 5. What went to the dead-letter queue, exactly as it came'
SELECT pipeline, line_number, error_type, sqlstate, error_message, original_payload
FROM medallion.dlq ORDER BY id;

\echo
\echo '== 6. An API push of two more contacts, with a batch id; the retry lands nothing'
SELECT medallion.ingest('bronze.crm_contacts',
    '[{"id": 6, "email": "fay@example.com", "country": "de", "updated_at": "2026-11-05T10:00:00Z"},
      {"id": 7, "email": "gus@example.com", "country": "us", "updated_at": "2026-11-05T11:00:00Z"}]',
    batch_id => 'api-2026-11-05-001') AS rows_landed;
SELECT medallion.ingest('bronze.crm_contacts',
    '[{"id": 6, "email": "fay@example.com", "country": "de", "updated_at": "2026-11-05T10:00:00Z"}]',
    batch_id => 'api-2026-11-05-001') AS rows_landed;

\echo
\echo '== 7. Batches and pipelines'
SELECT pipeline, batch_id ~ '^file:' AS from_file, rows_landed, rows_dlq
FROM medallion.batches ORDER BY landed_at, batch_id;
SELECT name, layer, state, source_system, retention, description FROM medallion.pipelines ORDER BY name;

\echo
\echo '== 8. Silver: a typed, deduplicated contacts table under a contract'
SELECT medallion.create_silver('contacts', 'bronze.crm_contacts',
    columns => '{"contact_id":   {"path": "id", "type": "bigint", "required": true},
                 "email":        {"type": "text", "pii": "mask"},
                 "country_code": {"path": "country", "type": "text", "expr": "upper(country_code)",
                                  "accepted": ["US", "FR", "DE"]},
                 "updated_at":   {"type": "timestamptz", "required": true}}',
    unique_key => '{contact_id}',
    order_by   => 'updated_at');

\echo
\echo '== 9. One incremental run: duplicates merged (latest wins), the bad date to the DLQ'
SELECT medallion.run('silver.contacts') IS NOT NULL AS ran;
SELECT contact_id, email, country_code, updated_at FROM silver.contacts ORDER BY contact_id;
SELECT kind, status, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_dlq
FROM medallion.runs WHERE pipeline = 'silver.contacts' ORDER BY run_id;
SELECT pipeline, error_type, field, sqlstate, error_message FROM medallion.dlq
WHERE pipeline = 'silver.contacts' ORDER BY id;

\echo
\echo '== 10. A late, older version of contact 1 arrives: it never overwrites the newer one'
SELECT medallion.ingest('bronze.crm_contacts',
    '{"id": 1, "email": "ada.old@example.com", "country": "fr", "updated_at": "2026-10-01T00:00:00Z"}',
    batch_id => 'late-001') AS rows_landed;
SELECT medallion.run('silver.contacts') IS NOT NULL AS ran;
SELECT contact_id, email, updated_at FROM silver.contacts WHERE contact_id = 1;

\echo
\echo '== 11. Fix the bad date in the DLQ and replay it'
UPDATE medallion.dlq SET original_payload = replace(original_payload, 'not-a-date', '2026-11-02T12:00:00Z')
WHERE pipeline = 'silver.contacts' AND field = 'updated_at';
SELECT medallion.replay_dlq('silver.contacts') AS rows_now_loaded;
SELECT contact_id, email, country_code, updated_at FROM silver.contacts ORDER BY contact_id;
SELECT error_type, reprocessed FROM medallion.dlq WHERE pipeline = 'silver.contacts' ORDER BY id;

\echo
\echo '== 12. Bronze is append-only'
\set ON_ERROR_STOP off
DELETE FROM bronze.crm_contacts WHERE _raw->>'id' = '1';
\set ON_ERROR_STOP on
