-- Keyed pseudonyms: medallion.pseudonymize(value) is the hex HMAC-SHA256 of
-- the value under one secret key per database, kept in
-- medallion.pseudonym_keys: readable by the extension owner only, dumped by
-- pg_dump.  Only roles that may define hashing pipelines may compute one.
-- (SELECT FROM f() runs f and prints nothing.)
BEGIN;
SELECT plan(17);

-- HMAC-SHA256 written out in SQL (RFC 2104), to check the C one against.
CREATE FUNCTION pg_temp.hmac_sha256(msg bytea, key bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    k bytea := key;
    ipad bytea := ''::bytea;
    opad bytea := ''::bytea;
    i int;
    b int;
BEGIN
    IF length(k) > 64 THEN k := sha256(k); END IF;
    k := k || decode(repeat('00', 64 - length(k)), 'hex');
    FOR i IN 0..63 LOOP
        b := get_byte(k, i);
        ipad := ipad || decode(lpad(to_hex(b # 54), 2, '0'), 'hex');
        opad := opad || decode(lpad(to_hex(b # 92), 2, '0'), 'hex');
    END LOOP;
    RETURN encode(sha256(opad || sha256(ipad || msg)), 'hex');
END $$;

SELECT is((SELECT count(*)::int FROM medallion.pseudonym_keys), 1, 'the extension made one key');
SELECT is((SELECT octet_length(key) FROM medallion.pseudonym_keys), 32, 'of 32 bytes');
SELECT is(medallion.pseudonymize('123456789'),
          pg_temp.hmac_sha256(convert_to('123456789', 'UTF8'), (SELECT key FROM medallion.pseudonym_keys)),
          'pseudonymize() is the hex HMAC-SHA256 of the value under the key');
SELECT isnt(medallion.pseudonymize('123456789'), encode(sha256(convert_to('123456789', 'UTF8')), 'hex'),
            'and not the plain SHA-256');
SELECT is(medallion.pseudonymize(NULL), NULL, 'NULL stays NULL');
SELECT ok((SELECT 'medallion.pseudonym_keys'::regclass = ANY (extconfig)
           FROM pg_extension WHERE extname = 'medallion'),
          'the key table is extension configuration: pg_dump keeps its rows');

-- The oldest key is the key: a restore brings the original back next to the younger
-- one CREATE EXTENSION made.
SAVEPOINT k;
INSERT INTO medallion.pseudonym_keys (key, created_at)
VALUES (decode(repeat('ab', 32), 'hex'), '2000-01-01');
SELECT is(medallion.pseudonymize('x'), pg_temp.hmac_sha256('x'::bytea, decode(repeat('ab', 32), 'hex')),
          'the oldest key is used (a restored key wins over the one the new database made)');
ROLLBACK TO SAVEPOINT k;

-- Who may read the key and compute pseudonyms -------------------------------------------------

CREATE ROLE medallion_tap_reader NOLOGIN;
CREATE ROLE medallion_tap_maker NOLOGIN;
GRANT CREATE ON SCHEMA bronze TO medallion_tap_maker;
SET ROLE medallion_tap_reader;
SELECT throws_ok($$SELECT key FROM medallion.pseudonym_keys$$, '42501', NULL,
                 'a role with no grants cannot read the key');
SELECT throws_ok($$SELECT medallion.pseudonymize('123456789')$$, '42501', NULL,
                 'nor compute pseudonyms of candidate values (no brute-force oracle)');
SELECT throws_ok($$SELECT medallion.pseudonym_new_key()$$, '42501', NULL,
                 'nor call the key generator');
RESET ROLE;
SET ROLE medallion_tap_maker;
SELECT throws_ok($$SELECT key FROM medallion.pseudonym_keys$$, '42501', NULL,
                 'a role that may create bronze tables cannot read the key either');
SELECT lives_ok($$SELECT medallion.pseudonymize('123456789')$$,
                'but may compute pseudonyms, as a hashing pipeline of its own would');
RESET ROLE;

-- A key of another size is refused (the table's CHECK).
SELECT throws_ok($$INSERT INTO medallion.pseudonym_keys (key) VALUES ('\x00'::bytea)$$, '23514', NULL,
                 'a key must be 32 bytes');

-- Silver pii "hash" stores the same pseudonym, so hashed keys join across layers.
SELECT is(medallion.pseudonymize('ann@example.com'),
          pg_temp.hmac_sha256(convert_to('ann@example.com', 'UTF8'), (SELECT key FROM medallion.pseudonym_keys)),
          'a text value''s pseudonym is the HMAC of its UTF-8 bytes');

-- Silver pii "hash" (keyed) and "hash_v1" (0.1.0's SHA-256); bronze and silver pseudonyms join.
SELECT FROM medallion.create_bronze('pseud_people', 'hr', redact_keys => '{ssn}',
                                    options => '{"redact_mode": "hash"}');
SELECT FROM medallion.create_bronze('pseud_raw', 'hr');
SELECT FROM medallion.ingest('bronze.pseud_people', '{"id": 1, "ssn": "123456789"}');
SELECT FROM medallion.ingest('bronze.pseud_raw', '{"id": 1, "ssn": "123456789"}');
SELECT FROM medallion.create_silver('pseud_raw', 'bronze.pseud_raw',
    '{"id": "int", "ssn": {"type": "text", "pii": "hash"},
      "ssn_v1": {"path": "ssn", "type": "text", "pii": "hash_v1"}}', '{id}');
SELECT ok(medallion.run('silver.pseud_raw') IS NOT NULL, 'a silver pipeline with pii hash and hash_v1 runs');
SELECT results_eq(
    $$SELECT ssn, ssn_v1 FROM silver.pseud_raw$$,
    $$VALUES (medallion.pseudonymize('123456789'), encode(sha256(convert_to('123456789', 'UTF8')), 'hex'))$$,
    'pii hash stores the keyed pseudonym, pii hash_v1 the unkeyed SHA-256');
SELECT is((SELECT count(*)::int FROM silver.pseud_raw s JOIN bronze.pseud_people b ON b._raw->>'ssn' = s.ssn), 1,
          'a value pseudonymised in bronze and in silver joins');

SELECT * FROM finish();
ROLLBACK;
