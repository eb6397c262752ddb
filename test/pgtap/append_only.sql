-- Bronze tables are append-only: plain INSERT by any writer works, UPDATE,
-- DELETE and TRUNCATE are refused, except through the superuser's door
-- medallion.allow_bronze_changes.  (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(19);

SELECT FROM medallion.create_bronze('ledger', 'erp');
SELECT FROM medallion.ingest('bronze.ledger', '[{"id": 1}, {"id": 2}, {"id": 3}]', 'b1');
CREATE TEMP TABLE today AS
SELECT format('bronze.%I', 'ledger_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')) AS part;

-- Plain INSERT by another writer ----------------------------------------------------------

CREATE ROLE medallion_tap_writer NOLOGIN;
GRANT INSERT ON bronze.ledger TO medallion_tap_writer;
SET ROLE medallion_tap_writer;
SELECT lives_ok($$INSERT INTO bronze.ledger (_raw) VALUES ('{"id": 4}')$$,
                'a role granted INSERT can write a bronze table with a plain INSERT');
SELECT throws_ok($$INSERT INTO bronze.ledger (_raw, _seq) VALUES ('{"id": 5}', 1)$$, '428C9', NULL,
                 'but cannot choose _seq: arrival order is the table''s');
RESET ROLE;
SELECT results_eq(
    $$SELECT _source_system, _batch_id, _file_name, _ingested_at = now(), _xid = pg_current_xact_id(),
             _seq > (SELECT max(_seq) FROM bronze.ledger WHERE _batch_id = 'b1')
      FROM bronze.ledger WHERE _raw = '{"id": 4}'$$,
    $$VALUES ('erp', NULL::text, NULL::text, true, true, true)$$,
    'defaults fill _source_system, _ingested_at, _xid and the next _seq');
SELECT lives_ok($$COPY bronze.ledger (_raw) FROM PROGRAM 'printf ''{"id": 6}\n'''$$,
                'COPY into a bronze table works too');

-- UPDATE, DELETE, TRUNCATE are refused ------------------------------------------------------

SELECT throws_ok($$UPDATE bronze.ledger SET _raw = '{}' WHERE _raw = '{"id": 1}'$$, '55000', NULL,
                 'UPDATE is refused');
SELECT throws_ok($$DELETE FROM bronze.ledger WHERE _raw = '{"id": 1}'$$, '55000', NULL,
                 'DELETE is refused');
SELECT throws_ok($$TRUNCATE bronze.ledger$$, '55000', NULL, 'TRUNCATE is refused');
SELECT throws_ok(format('UPDATE %s SET _batch_id = %L', (SELECT part FROM today), 'x'), '55000', NULL,
                 'UPDATE of a partition is refused');
SELECT throws_ok(format('DELETE FROM %s', (SELECT part FROM today)), '55000', NULL,
                 'DELETE from a partition is refused');
SELECT throws_ok(format('TRUNCATE %s', (SELECT part FROM today)), '55000', NULL,
                 'TRUNCATE of a partition is refused');
SELECT throws_ok($$MERGE INTO bronze.ledger b USING (VALUES (1)) v(id) ON (b._raw->>'id')::int = v.id
                   WHEN MATCHED THEN DELETE$$, '55000', NULL,
                 'MERGE cannot delete either');

-- The door for erasure requests: superusers only -------------------------------------------

GRANT SELECT, UPDATE, DELETE ON bronze.ledger TO medallion_tap_writer;
SET ROLE medallion_tap_writer;
SELECT throws_ok($$SET medallion.allow_bronze_changes = on$$, '42501', NULL,
                 'a non-superuser cannot open the door');
RESET ROLE;

SET LOCAL medallion.allow_bronze_changes = on;
SET ROLE medallion_tap_writer;
SELECT throws_ok($$DELETE FROM bronze.ledger WHERE _raw = '{"id": 1}'$$, '55000', NULL,
                 'nor walk through it when a superuser opened it');
RESET ROLE;

SELECT lives_ok($$UPDATE bronze.ledger SET _raw = _raw - 'id' || '{"erased": true}' WHERE _raw = '{"id": 2}'$$,
                'with medallion.allow_bronze_changes a superuser can UPDATE');
SELECT lives_ok($$DELETE FROM bronze.ledger WHERE _raw = '{"id": 1}'$$,
                'and DELETE');
SELECT results_eq(
    $$SELECT _raw FROM bronze.ledger WHERE _batch_id = 'b1' ORDER BY _seq$$,
    $$VALUES ('{"erased": true}'::jsonb), ('{"id": 3}')$$,
    'the erasure took effect');
SELECT lives_ok(format('TRUNCATE %s', (SELECT part FROM today)), 'and TRUNCATE');
SELECT is((SELECT count(*)::int FROM bronze.ledger), 0, 'the truncated rows are gone');

RESET medallion.allow_bronze_changes;
INSERT INTO bronze.ledger (_raw) VALUES ('{"id": 7}');
SELECT throws_ok($$DELETE FROM bronze.ledger$$, '55000', NULL,
                 'with the door closed again, DELETE is refused again');

SELECT * FROM finish();
ROLLBACK;
