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

\echo
\echo '== 13. Gold: the guide''s gold_marketing_daily_metrics, from signups and orders'
SELECT medallion.create_bronze('crm_signups', 'crm') IS NOT NULL AS created;
SELECT medallion.create_bronze('shop_orders', 'shop') IS NOT NULL AS created;
SELECT medallion.create_silver('signups', 'bronze.crm_signups',
    columns => '{"contact_id": {"type": "bigint", "required": true},
                 "acquisition_channel": {"path": "channel", "type": "text", "required": true},
                 "created_at": {"type": "timestamptz", "required": true}}',
    unique_key => '{contact_id}') IS NOT NULL AS created;
SELECT medallion.create_silver('orders', 'bronze.shop_orders',
    columns => '{"order_id": {"type": "bigint", "required": true},
                 "contact_id": {"type": "bigint", "required": true},
                 "revenue_usd": {"type": "numeric(12,2)", "required": true},
                 "order_date": {"type": "date", "required": true}}',
    unique_key => '{order_id}') IS NOT NULL AS created;
SELECT medallion.ingest('bronze.crm_signups',
    '[{"contact_id": 1, "channel": "search", "created_at": "2026-11-01T09:00:00Z"},
      {"contact_id": 2, "channel": "social", "created_at": "2026-11-01T10:00:00Z"},
      {"contact_id": 3, "channel": "search", "created_at": "2026-11-01T11:00:00Z"},
      {"contact_id": 4, "channel": "social", "created_at": "2026-11-02T09:30:00Z"},
      {"contact_id": 5, "channel": "email",  "created_at": "2026-11-02T15:00:00Z"}]') AS rows_landed;
SELECT medallion.ingest('bronze.shop_orders',
    '[{"order_id": 100, "contact_id": 1, "revenue_usd": 120.00, "order_date": "2026-11-01"},
      {"order_id": 101, "contact_id": 2, "revenue_usd": 35.50,  "order_date": "2026-11-01"},
      {"order_id": 102, "contact_id": 5, "revenue_usd": 80.00,  "order_date": "2026-11-02"}]') AS rows_landed;
SELECT medallion.run('silver.signups') IS NOT NULL AND medallion.run('silver.orders') IS NOT NULL AS ran;

-- orders join on their day: declared, since the query's partition column comes from signups
SELECT medallion.create_gold('marketing_daily_metrics',
    $$SELECT date(c.created_at)             AS metric_date,
             c.acquisition_channel          AS channel,
             count(DISTINCT c.contact_id)   AS new_contacts,
             count(DISTINCT o.order_id)     AS conversions,
             COALESCE(sum(o.revenue_usd), 0) AS total_revenue,
             round(count(DISTINCT o.order_id)::numeric / count(DISTINCT c.contact_id), 3) AS conversion_rate
      FROM silver.signups c
      LEFT JOIN silver.orders o ON o.contact_id = c.contact_id AND o.order_date = date(c.created_at)
      GROUP BY 1, 2$$,
    partition_by => 'metric_date',
    options => '{"partition_sources": {"silver.orders": "order_date"},
                 "description": "daily marketing metrics per acquisition channel"}');
SELECT upstream, pipeline, kind, partition_column FROM medallion.dependencies
WHERE pipeline = 'gold.marketing_daily_metrics' ORDER BY upstream;

\echo
\echo '== 14. The first run computes every day'
SELECT medallion.run('gold.marketing_daily_metrics') IS NOT NULL AS ran;
SELECT * FROM gold.marketing_daily_metrics ORDER BY metric_date, channel;
SELECT kind, rows_inserted, detail FROM medallion.runs WHERE pipeline = 'gold.marketing_daily_metrics' ORDER BY run_id;

\echo
\echo '== 15. A late order for Nov 2: the silver run records the day, the gold run recomputes only it'
SELECT medallion.ingest('bronze.shop_orders',
    '{"order_id": 103, "contact_id": 4, "revenue_usd": 42.00, "order_date": "2026-11-02"}') AS rows_landed;
SELECT medallion.run('silver.orders') IS NOT NULL AND medallion.run('gold.marketing_daily_metrics') IS NOT NULL AS ran;
SELECT * FROM gold.marketing_daily_metrics ORDER BY metric_date, channel;
SELECT kind, rows_inserted, detail FROM medallion.runs WHERE pipeline = 'gold.marketing_daily_metrics' ORDER BY run_id;
SELECT pipeline, lag, status FROM medallion.freshness ORDER BY pipeline;

\echo
\echo '== 16. Lineage: the graph as Mermaid, and what the DBA looks at first'
\pset format unaligned
\pset tuples_only on
SELECT medallion.lineage_graph('mermaid');
\pset tuples_only off
\pset format aligned
SELECT pipeline, layer, state, last_run_status, last_rows_read, dlq_backlog, freshness
FROM medallion.status ORDER BY pipeline;
SELECT item, ok, hint FROM medallion.checklist('gold.marketing_daily_metrics') WHERE NOT ok;
