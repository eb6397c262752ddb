-- medallion.checklist(): each item judged from the catalog, turning ok when the pipeline is
-- given what the item asks for; an unknown pipeline is an error.
BEGIN;
SELECT plan(14);

SELECT FROM medallion.create_bronze('chk_src', 'crm', retention => '30 days');
SELECT FROM medallion.create_silver('chk', 'bronze.chk_src', '{"id": "int", "email": "text"}', ARRAY['id']);

SELECT throws_ok($$SELECT * FROM medallion.checklist('silver.nope')$$, '42704', NULL, 'an unknown pipeline');
SELECT is((SELECT array_agg(item ORDER BY item COLLATE "C") FROM medallion.checklist('silver.chk')),
          ARRAY['backfill-able', 'cost budget', 'documented', 'error handling and DLQ', 'freshness SLA',
                'idempotent', 'lineage known', 'medallion layers', 'scheduled', 'schema-change policy',
                'tests at the layer boundary'],
          'every item of the checklist is evaluated');
SELECT ok((SELECT ok FROM medallion.checklist('silver.chk') WHERE item = 'idempotent'), 'a silver MERGE on its key is idempotent');
SELECT ok((SELECT ok FROM medallion.checklist('silver.chk') WHERE item = 'medallion layers'), 'silver reads bronze: layers in order');
SELECT ok(NOT (SELECT ok FROM medallion.checklist('silver.chk') WHERE item = 'tests at the layer boundary'),
          'no check at the boundary yet');
SELECT ok(NOT (SELECT ok FROM medallion.checklist('silver.chk') WHERE item = 'documented'), 'not documented yet');
SELECT ok(NOT (SELECT ok FROM medallion.checklist('silver.chk') WHERE item = 'freshness SLA'), 'no SLA yet');
SELECT ok(NOT (SELECT ok FROM medallion.checklist('silver.chk') WHERE item = 'scheduled'), 'not scheduled yet');
SELECT ok((SELECT hint FROM medallion.checklist('silver.chk') WHERE item = 'freshness SLA') LIKE '%freshness_sla%',
          'a failed item says what to do');

SELECT FROM medallion.expect('silver.chk', 'has_email', 'email IS NOT NULL');
SELECT FROM medallion.alter_pipeline('silver.chk', '{"steward": "crm team", "description": "contacts", "freshness_sla": "1 hour"}');
SELECT FROM medallion.schedule('silver.chk', '10 minutes');
SELECT ok((SELECT bool_and(ok) FROM medallion.checklist('silver.chk')
           WHERE item IN ('tests at the layer boundary', 'documented', 'freshness SLA', 'scheduled')),
          'each of those turns ok once given');

SELECT FROM medallion.ingest('bronze.chk_src', '[{"id": "x"}]');
SELECT FROM medallion.run('silver.chk');
SELECT ok(NOT (SELECT ok FROM medallion.checklist('silver.chk') WHERE item = 'error handling and DLQ'),
          'a pending dead letter shows');
SELECT ok((SELECT detail FROM medallion.checklist('silver.chk') WHERE item = 'error handling and DLQ') LIKE '1 pending%',
          'with its count');

-- the source keeps 30 days: a pipeline older than that can no longer be rebuilt from bronze
UPDATE medallion.pipelines SET created_at = now() - interval '60 days' WHERE name = 'silver.chk';
SELECT ok(NOT (SELECT ok FROM medallion.checklist('silver.chk') WHERE item = 'backfill-able'),
          'bronze retention shorter than the pipeline''s history is flagged');
SELECT ok((SELECT ok FROM medallion.checklist('bronze.chk_src') WHERE item = 'lineage known'),
          'a bronze table''s lineage is its source system');

SELECT * FROM finish();
ROLLBACK;
