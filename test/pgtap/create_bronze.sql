-- medallion.create_bronze(): the bronze table, its catalog row, and every
-- way a call can be refused.  (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(37);

SET LOCAL TimeZone = 'UTC';
SET LOCAL medallion.premake_days = 3;

-- The table ----------------------------------------------------------------

SELECT is(medallion.create_bronze('contacts', 'crm')::text, 'bronze.contacts',
          'create_bronze returns the new table');

SELECT is((SELECT relkind::text FROM pg_class WHERE oid = 'bronze.contacts'::regclass), 'p',
          'a bronze table is partitioned');

SELECT is(pg_get_partkeydef('bronze.contacts'::regclass), 'RANGE (_ingested_at)',
          'it is range-partitioned on _ingested_at');

SELECT results_eq(
    $$SELECT attname::text COLLATE "default", format_type(atttypid, atttypmod), attnotnull
      FROM pg_attribute
      WHERE attrelid = 'bronze.contacts'::regclass AND attnum > 0 AND NOT attisdropped
      ORDER BY attnum$$,
    $$VALUES ('_raw', 'jsonb', true),
             ('_ingested_at', 'timestamp with time zone', true),
             ('_source_system', 'text', true),
             ('_batch_id', 'text', false),
             ('_file_name', 'text', false),
             ('_seq', 'bigint', true),
             ('_xid', 'xid8', true)$$,
    'bronze columns: raw payload, landing metadata, sequence and transaction id');

SELECT is(pg_get_expr(d.adbin, d.adrelid), '''crm''::text',
          '_source_system defaults to the source system')
FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
WHERE d.adrelid = 'bronze.contacts'::regclass AND a.attname = '_source_system';

SELECT is(obj_description('bronze.contacts'::regclass, 'pg_class'),
          'medallion bronze table: raw data from crm, append-only',
          'the table is commented with its source');

SELECT is((SELECT count(*)::int FROM pg_inherits WHERE inhparent = 'bronze.contacts'::regclass), 4,
          'today''s partition and medallion.premake_days (3) more exist');

SELECT is(
    (SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c
     WHERE c.relnamespace = 'bronze'::regnamespace
       AND c.relname = 'contacts_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')),
    format('FOR VALUES FROM (''%s 00:00:00+00'') TO (''%s 00:00:00+00'')',
           (now() AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date + 1),
    'today''s partition is named after the UTC day and covers it');

-- The catalog row ------------------------------------------------------------

SELECT results_eq(
    $$SELECT name, layer, relname, state, owner::text, source_system, retention, options
      FROM medallion.pipelines WHERE name = 'bronze.contacts'$$,
    $$VALUES ('bronze.contacts', 'bronze', 'contacts', 'active', current_user::text COLLATE "default",
              'crm', '90 days'::interval, '{}'::jsonb)$$,
    'the pipeline is recorded: name, layer, owner, source, default retention of 90 days');

SELECT FROM medallion.create_bronze('forever', 'erp', NULL);
SELECT ok((SELECT retention IS NULL FROM medallion.pipelines WHERE name = 'bronze.forever'),
          'a NULL retention keeps rows forever');

SELECT FROM medallion.create_bronze('described', 'erp', '7 days',
                               options => '{"description": "ERP nightly export", "redact_mode": "hash"}');
SELECT results_eq(
    $$SELECT description, retention, options FROM medallion.pipelines WHERE name = 'bronze.described'$$,
    $$VALUES ('ERP nightly export', '7 days'::interval,
              '{"description": "ERP nightly export", "redact_mode": "hash"}'::jsonb)$$,
    'retention, options and the description option are recorded');

SET LOCAL medallion.premake_days = 0;
SELECT FROM medallion.create_bronze('today_only', 'erp');
SELECT is((SELECT count(*)::int FROM pg_inherits WHERE inhparent = 'bronze.today_only'::regclass), 1,
          'with medallion.premake_days = 0 only today''s partition exists');
SET LOCAL medallion.premake_days = 3;

-- Names: used as given, quoted, never pasted -------------------------------------

CREATE TABLE public.y (id int);
CREATE TEMP TABLE rels_before AS SELECT oid FROM pg_class;
SELECT is(medallion.create_bronze('x"; DROP TABLE y; --', 'evil')::text,
          'bronze."x""; DROP TABLE y; --"',
          'a hostile name becomes exactly that quoted identifier');
SELECT has_table('public', 'y', 'the hostile name did not drop public.y');
SELECT is((SELECT count(*)::int FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
           WHERE i.inhparent = 'bronze."x""; DROP TABLE y; --"'::regclass), 4,
          'the hostile-named table got its 4 partitions');
SELECT is((SELECT count(*)::int FROM pg_class c
           WHERE c.oid NOT IN (SELECT oid FROM rels_before)
             AND c.relnamespace <> 'pg_toast'::regnamespace AND c.relname <> 'rels_before'
             AND left(c.relname, 20) <> 'x"; DROP TABLE y; --'), 0,
          'and nothing else: every new relation carries the hostile name');
SELECT ok(EXISTS (SELECT FROM medallion.pipelines WHERE name = 'bronze.x"; DROP TABLE y; --'),
          'the hostile-named pipeline is recorded under its exact name');

SELECT FROM medallion.create_bronze('MixedCase', 'crm');
SELECT ok(to_regclass('bronze."MixedCase"') IS NOT NULL AND to_regclass('bronze.mixedcase') IS NULL,
          'case is kept: bronze."MixedCase", not bronze.mixedcase');

SELECT is(medallion.create_bronze(repeat('n', 53), 'crm')::text, 'bronze.' || repeat('n', 53),
          'a name of 53 bytes (63 minus the partition suffix) is accepted');
SELECT throws_ok($$SELECT medallion.create_bronze(repeat('n', 54), 'crm')$$, '42622', NULL,
                 'a name of 54 bytes is too long (its partitions would be truncated)');
SELECT throws_ok($$SELECT medallion.create_bronze('', 'crm')$$, '42602', NULL,
                 'an empty name is refused');
SELECT throws_ok($$SELECT medallion.create_bronze('contacts', 'crm')$$, '42P07', NULL,
                 'an existing bronze table is not created twice');

-- NULL and invalid arguments ------------------------------------------------------

SELECT throws_ok($$SELECT medallion.create_bronze(NULL, 'crm')$$, '22004', NULL,
                 'a NULL name is refused');
SELECT throws_ok($$SELECT medallion.create_bronze('n1', NULL)$$, '22004', NULL,
                 'a NULL source_system is refused');
SELECT throws_ok($$SELECT medallion.create_bronze('n1', '')$$, '22023', NULL,
                 'an empty source_system is refused');
SELECT throws_ok($$SELECT medallion.create_bronze('n1', 'crm', '-1 day')$$, '22023', NULL,
                 'a negative retention is refused');
SELECT throws_ok($$SELECT medallion.create_bronze('n1', 'crm', '0 days')$$, '22023', NULL,
                 'a zero retention is refused');
SELECT throws_ok($$SELECT medallion.create_bronze('n1', 'crm', redact_keys => ARRAY['email', NULL])$$,
                 '22004', NULL, 'redact_keys containing NULL is refused');
SELECT throws_ok($$SELECT medallion.create_bronze('n1', 'crm', redact_keys => ARRAY['email', ''])$$,
                 '22004', NULL, 'redact_keys containing an empty key is refused');
SELECT throws_ok($$SELECT medallion.create_bronze('n1', 'crm', redact_keys => '{{a},{b}}')$$,
                 '2202E', NULL, 'a two-dimensional redact_keys is refused');
SELECT throws_ok($$SELECT medallion.create_bronze('n1', 'crm', options => '[]')$$, '22023', NULL,
                 'options that are not a JSON object are refused');
SELECT throws_ok($$SELECT medallion.create_bronze('n1', 'crm', options => '{"retention": 3}')$$,
                 '22023', NULL, 'an unrecognized option is refused');
SELECT throws_ok($$SELECT medallion.create_bronze('n1', 'crm', options => '{"redact_mode": "mask"}')$$,
                 '22023', NULL, 'a redact_mode other than remove or hash is refused');
SELECT throws_ok($$SELECT medallion.create_bronze('n1', 'crm', options => '{"description": 42}')$$,
                 '22023', NULL, 'a description that is not a string is refused');

-- Defaults (and NULL for defaulted arguments) behave like the documented defaults.
SELECT FROM medallion.create_bronze('nulls', 'crm', '1 day', NULL, NULL);
SELECT results_eq(
    $$SELECT options, retention FROM medallion.pipelines WHERE name = 'bronze.nulls'$$,
    $$VALUES ('{}'::jsonb, '1 day'::interval)$$,
    'NULL redact_keys and options mean none');
SELECT hasnt_trigger('bronze', 'nulls', 'medallion_redact',
                     'no redaction trigger without redact_keys');
SELECT FROM medallion.create_bronze('redacted', 'crm', redact_keys => '{email}');
SELECT has_trigger('bronze', 'redacted', 'medallion_redact',
                   'redact_keys install the redaction trigger');

SELECT * FROM finish();
ROLLBACK;
