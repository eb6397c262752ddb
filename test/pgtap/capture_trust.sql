-- medallion.capture_change() checks who installed it: it captures only for a
-- trigger named medallion_capture on a table registered by capture() (or a
-- partition of one), into the registered bronze table, while the source's
-- owner may write it; the row becomes JSON as the role that changed it.
-- (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(18);

CREATE ROLE medallion_tap_cdc_owner NOLOGIN;
CREATE ROLE medallion_tap_cdc_nobody NOLOGIN;
CREATE ROLE medallion_tap_cdc_clerk NOLOGIN;
GRANT CREATE ON SCHEMA bronze TO medallion_tap_cdc_owner;
CREATE SCHEMA cdc_tap AUTHORIZATION medallion_tap_cdc_owner;
GRANT USAGE ON SCHEMA cdc_tap TO PUBLIC;
CREATE SCHEMA cdc_nobody AUTHORIZATION medallion_tap_cdc_nobody;

-- Who ran the hostile code, as which role.
CREATE TABLE public.cdc_tap_calls (who name, what text);
GRANT INSERT ON public.cdc_tap_calls TO PUBLIC;

SET ROLE medallion_tap_cdc_owner;
CREATE TABLE cdc_tap.ledger (id int PRIMARY KEY, note text);
SELECT is(medallion.capture('cdc_tap.ledger')::text, 'bronze.ledger', 'a capture of the owner''s table');
SELECT is((SELECT source::text || ' -> ' || bronze::text FROM medallion.captures
           WHERE source = 'cdc_tap.ledger'::regclass),
          'cdc_tap.ledger -> bronze.ledger', 'capture() registers the source and its bronze table');
SELECT throws_ok($$INSERT INTO medallion.captures VALUES ('public.cdc_tap_calls', 'bronze.ledger')$$,
                 '42501', NULL, 'the registry is not writable by others, not even by capturers');
RESET ROLE;

-- A forged trigger by a role with no grants ------------------------------------------------

SET ROLE medallion_tap_cdc_nobody;
CREATE TEMP TABLE forged (id int, note text);
CREATE TRIGGER medallion_capture AFTER INSERT ON forged
    FOR EACH ROW EXECUTE FUNCTION medallion.capture_change('ledger');
SELECT throws_ok($$INSERT INTO forged VALUES (666, 'forged')$$, '42501', NULL,
                 'a medallion_capture trigger on a temp table of a role with no grants fails');
CREATE TABLE cdc_nobody.mine (id int, note text);
CREATE TRIGGER sneaky AFTER INSERT ON cdc_nobody.mine
    FOR EACH ROW EXECUTE FUNCTION medallion.capture_change('ledger');
SELECT throws_ok($$INSERT INTO cdc_nobody.mine VALUES (667, 'forged')$$, '42501', NULL,
                 'so does a trigger of another name on a table of its own');
DROP TRIGGER sneaky ON cdc_nobody.mine;
CREATE TRIGGER medallion_capture AFTER INSERT ON cdc_nobody.mine
    FOR EACH ROW EXECUTE FUNCTION medallion.capture_change('ledger');
SELECT throws_ok($$INSERT INTO cdc_nobody.mine VALUES (668, 'forged')$$, '42501', NULL,
                 'and a trigger named medallion_capture on an unregistered table');

-- (b) a type whose cast to json is hostile: its cast must never run as another role.
CREATE TYPE cdc_nobody.evil AS ENUM ('boo');
CREATE FUNCTION cdc_nobody.evil_json(cdc_nobody.evil) RETURNS json LANGUAGE sql VOLATILE AS
$$ INSERT INTO public.cdc_tap_calls VALUES (current_user, 'cast'); SELECT '"boo"'::json $$;
CREATE CAST (cdc_nobody.evil AS json) WITH FUNCTION cdc_nobody.evil_json(cdc_nobody.evil);
GRANT USAGE ON SCHEMA cdc_nobody TO PUBLIC;
GRANT USAGE ON TYPE cdc_nobody.evil TO PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_nobody.evil_json(cdc_nobody.evil) TO PUBLIC;
CREATE TEMP TABLE forged_evil (id int, mood cdc_nobody.evil);
CREATE TRIGGER medallion_capture AFTER INSERT ON forged_evil
    FOR EACH ROW EXECUTE FUNCTION medallion.capture_change('ledger');
SELECT throws_ok($$INSERT INTO forged_evil VALUES (669, 'boo')$$, '42501', NULL,
                 'a forged trigger on a table with a hostile type fails too');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM bronze.ledger), 0, 'no forged row reached the bronze table');
SELECT is((SELECT count(*)::int FROM public.cdc_tap_calls WHERE who <> 'medallion_tap_cdc_nobody'), 0,
          'the hostile cast never ran as another role');

-- A legitimate capture converts the row as the role that changed it --------------------------

SET ROLE medallion_tap_cdc_owner;
CREATE TABLE cdc_tap.moods (id int, mood cdc_nobody.evil);
SELECT FROM medallion.capture('cdc_tap.moods');
GRANT INSERT ON cdc_tap.moods TO medallion_tap_cdc_clerk;
RESET ROLE;
SET ROLE medallion_tap_cdc_clerk;
INSERT INTO cdc_tap.moods VALUES (1, 'boo');
RESET ROLE;
SELECT is((SELECT _raw->'data' FROM bronze.moods), '{"id": 1, "mood": "boo"}'::jsonb,
          'a change by a role without rights on the bronze table is captured');
SELECT is((SELECT string_agg(who::text, ',') FROM public.cdc_tap_calls WHERE what = 'cast'),
          'medallion_tap_cdc_clerk',
          'the row became JSON as that role, not as the bronze table''s owner');

-- The source's owner must be able to write the bronze table ----------------------------------

SET ROLE medallion_tap_cdc_owner;
INSERT INTO cdc_tap.ledger VALUES (1, 'legit');
SELECT is((SELECT _raw->'data'->>'note' FROM bronze.ledger), 'legit', 'the legitimate capture works');
REVOKE INSERT ON bronze.ledger FROM medallion_tap_cdc_owner;
SELECT throws_ok($$INSERT INTO cdc_tap.ledger VALUES (2, 'after revoke')$$, '42501', NULL,
                 'once the source''s owner may not write the bronze table, changes are refused');
GRANT INSERT ON bronze.ledger TO medallion_tap_cdc_owner;
SELECT lives_ok($$INSERT INTO cdc_tap.ledger VALUES (3, 'granted again')$$, 'and accepted once it may again');
RESET ROLE;

-- A partitioned source, and a partition made after capture() ---------------------------------

SET ROLE medallion_tap_cdc_owner;
CREATE TABLE cdc_tap.orders (id int, region text) PARTITION BY LIST (region);
CREATE TABLE cdc_tap.orders_eu PARTITION OF cdc_tap.orders FOR VALUES IN ('eu');
SELECT throws_ok($$SELECT medallion.capture('cdc_tap.orders_eu')$$, '42809', NULL,
                 'a partition is not captured on its own');
SELECT is(medallion.capture('cdc_tap.orders')::text, 'bronze.orders', 'a partitioned table is captured');
CREATE TABLE cdc_tap.orders_us PARTITION OF cdc_tap.orders FOR VALUES IN ('us');
INSERT INTO cdc_tap.orders VALUES (1, 'eu'), (2, 'us');
UPDATE cdc_tap.orders SET region = 'us' WHERE id = 1;
RESET ROLE;
SELECT results_eq(
    $$SELECT _raw->>'op', _raw->>'table', _raw->'data' FROM bronze.orders ORDER BY _seq$$,
    $$VALUES ('I', 'cdc_tap.orders', '{"id": 1, "region": "eu"}'::jsonb),
             ('I', 'cdc_tap.orders', '{"id": 2, "region": "us"}'),
             ('D', 'cdc_tap.orders', '{"id": 1, "region": "eu"}'),
             ('I', 'cdc_tap.orders', '{"id": 1, "region": "us"}')$$,
    'changes of every partition, one made after capture() included, land naming the captured table');

-- A partition attached from elsewhere keeps feeding the capture (its trigger is a clone).
SET ROLE medallion_tap_cdc_owner;
CREATE TABLE cdc_tap.orders_ap (id int, region text);
ALTER TABLE cdc_tap.orders ATTACH PARTITION cdc_tap.orders_ap FOR VALUES IN ('ap');
INSERT INTO cdc_tap.orders_ap VALUES (3, 'ap');
RESET ROLE;
SELECT is((SELECT _raw->'data' FROM bronze.orders ORDER BY _seq DESC LIMIT 1), '{"id": 3, "region": "ap"}'::jsonb,
          'an attached partition is captured too, even written directly');

SELECT * FROM finish();
ROLLBACK;
