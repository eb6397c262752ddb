-- medallion.capture(source, name): every INSERT, UPDATE and DELETE of a local
-- table lands, in the same transaction, as a bronze row {op, table, data, old,
-- xid}; TRUNCATE is refused.  (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(23);

CREATE TABLE public.accounts (id int PRIMARY KEY, owner text, balance numeric);
INSERT INTO public.accounts VALUES (1, 'ann', 10);   -- before the capture: not captured

SELECT is(medallion.capture('public.accounts')::text, 'bronze.accounts',
          'capture creates bronze.<source name> by default');
SELECT results_eq(
    $$SELECT layer, source_system, retention, owner::text FROM medallion.pipelines WHERE name = 'bronze.accounts'$$,
    $$VALUES ('bronze', 'capture:public.accounts', '90 days'::interval, current_user::text COLLATE "default")$$,
    'the capture is a bronze pipeline whose source system names the table');
SELECT is((SELECT count(*)::int FROM bronze.accounts), 0, 'rows present before the capture are not captured');

INSERT INTO public.accounts VALUES (2, 'bob', 20), (3, 'cy', 30);
UPDATE public.accounts SET balance = balance + 5 WHERE id = 2;
DELETE FROM public.accounts WHERE id = 3;

SELECT results_eq(
    $$SELECT _raw->>'op', _raw->>'table', _raw->'data', _raw->'old' FROM bronze.accounts ORDER BY _seq$$,
    $$VALUES ('I', 'public.accounts', '{"id": 2, "owner": "bob", "balance": 20}'::jsonb, 'null'::jsonb),
             ('I', 'public.accounts', '{"id": 3, "owner": "cy", "balance": 30}', 'null'),
             ('U', 'public.accounts', '{"id": 2, "owner": "bob", "balance": 25}', '{"id": 2, "owner": "bob", "balance": 20}'),
             ('D', 'public.accounts', '{"id": 3, "owner": "cy", "balance": 30}', 'null')$$,
    'I, U and D rows in change order: data is the new image (the deleted one for D), old the previous image of U');
SELECT ok((SELECT bool_and((_raw->>'xid')::xid8 = pg_current_xact_id() AND _xid = pg_current_xact_id())
           FROM bronze.accounts),
          'each change carries the source transaction id');
SELECT is((SELECT DISTINCT _source_system FROM bronze.accounts), 'capture:public.accounts',
          'the captured rows name their source');

SAVEPOINT s;
INSERT INTO public.accounts VALUES (9, 'ghost', 0);
ROLLBACK TO SAVEPOINT s;
SELECT ok(NOT EXISTS (SELECT FROM bronze.accounts WHERE _raw->'data'->>'id' = '9'),
          'a change rolled back leaves no captured row: capture is transactional');

SELECT throws_ok($$TRUNCATE public.accounts$$, '0A000', NULL,
                 'TRUNCATE of a captured table is refused: it would lose the deletes');

-- Another role changing the source: captured with the capture owner's rights -------------------

CREATE ROLE medallion_tap_clerk NOLOGIN;
GRANT SELECT, INSERT, UPDATE ON public.accounts TO medallion_tap_clerk;
SET ROLE medallion_tap_clerk;
SELECT lives_ok($$INSERT INTO public.accounts VALUES (4, 'dee', 40)$$,
                'a role with no privilege on the bronze table changes the captured table');
SELECT throws_ok($$SELECT count(*) FROM bronze.accounts$$, '42501', NULL,
                 'it cannot read the bronze table');
RESET ROLE;
SELECT is((SELECT _raw->'data'->>'owner' FROM bronze.accounts ORDER BY _seq DESC LIMIT 1), 'dee',
          'its change is captured all the same');

-- A named capture, and a second table -------------------------------------------------------

CREATE TABLE public.payments (id int, amount numeric);
SELECT is(medallion.capture('public.payments', 'payments_cdc')::text, 'bronze.payments_cdc',
          'capture into a bronze table of another name');
INSERT INTO public.payments VALUES (1, 9.99);
SELECT is((SELECT _raw->'data' FROM bronze.payments_cdc), '{"id": 1, "amount": 9.99}'::jsonb,
          'the named capture receives the changes');
SELECT is((SELECT count(*)::int FROM bronze.accounts WHERE _raw->>'table' = 'public.payments'), 0,
          'and only its own table''s');

-- Hostile names are quoted, never pasted.
CREATE SCHEMA "Odd schema";
CREATE TABLE "Odd schema"."we""ird'); DROP TABLE public.accounts; --" (id int);
SELECT is(medallion.capture('"Odd schema"."we""ird''); DROP TABLE public.accounts; --"')::text,
          'bronze."we""ird''); DROP TABLE public.accounts; --"',
          'a hostile table name is captured into the bronze table of that exact name');
INSERT INTO "Odd schema"."we""ird'); DROP TABLE public.accounts; --" VALUES (1);
SELECT results_eq(
    $$SELECT _raw->>'table', _raw->'data' FROM bronze."we""ird'); DROP TABLE public.accounts; --"$$,
    $$VALUES ('"Odd schema"."we""ird''); DROP TABLE public.accounts; --"', '{"id": 1}'::jsonb)$$,
    'its changes land there, naming the source exactly');

-- Refusals -------------------------------------------------------------------------------

SELECT throws_ok($$SELECT medallion.capture(NULL)$$, '22004', NULL, 'a NULL source is refused');
SELECT throws_ok($$SELECT medallion.capture('public.no_such_table')$$, '42P01', NULL,
                 'a table that does not exist is refused');
CREATE VIEW public.rich AS SELECT * FROM public.accounts WHERE balance > 20;
SELECT throws_ok($$SELECT medallion.capture('public.rich')$$, '42809', NULL, 'a view cannot be captured');
SELECT throws_ok($$SELECT medallion.capture('bronze.accounts')$$, '42809', NULL,
                 'a bronze table cannot be captured');
SELECT throws_ok($$SELECT medallion.capture('public.payments')$$, '42710', NULL,
                 'a table already captured is not captured twice');
CREATE TABLE public.refunds (id int);
SELECT throws_ok($$SELECT medallion.capture('public.refunds', 'accounts')$$, '42P07', NULL,
                 'a capture into an existing bronze table is refused');

CREATE TABLE public.not_mine (id int);
GRANT CREATE ON SCHEMA bronze TO medallion_tap_clerk;
GRANT ALL ON public.not_mine TO medallion_tap_clerk;
SET ROLE medallion_tap_clerk;
SELECT throws_ok($$SELECT medallion.capture('public.not_mine')$$, '42501', NULL,
                 'capturing a table requires owning it, not just privileges on it');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
