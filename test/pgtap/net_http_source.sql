-- HTTP sources and webhooks without a network: what create_http_source, alter_pipeline,
-- schedule, add_webhook and remove_webhook refuse, with their SQLSTATEs (the scheme, the
-- host allow-list, options, names, privileges), where the secret headers are kept and who
-- can read them, and a run refused by the allow-list (MD061, class infrastructure).
-- Exports: their refusals too.  Transfers against a real server are in
-- test/t/070_http_source.pl and its neighbours.
BEGIN;
SELECT plan(39);

CREATE ROLE medallion_tap_net_owner NOLOGIN;
CREATE ROLE medallion_tap_net_stranger NOLOGIN;
SELECT medallion.create_bronze('net_ev', 'api');
CREATE TABLE public.net_plain (id int);
SET medallion.http_allowed_hosts = '127.0.0.1, *.example.org';

-- ---- URLs ----------------------------------------------------------------------------------
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'file:///etc/passwd')$$,
    'MD065', NULL, 'file:// is refused');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'gopher://127.0.0.1/x')$$,
    'MD065', NULL, 'so is any scheme but http and https');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://example.com/x')$$,
    'MD061', NULL, 'a host outside medallion.http_allowed_hosts is refused');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://10.0.0.1/x')$$,
    'MD061', NULL, 'an address outside it too');
SELECT lives_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'https://api.example.org/x', '{}', 'net_wild')$$,
    'a host under a listed *.domain is allowed');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'https://example.org.evil.com/x')$$,
    'MD061', NULL, 'a host that only contains the domain is not');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'not a url')$$,
    '22023', NULL, 'a text that is no URL is refused');
SET medallion.http_allowed_hosts = '';
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/x')$$,
    'MD061', NULL, 'an empty medallion.http_allowed_hosts allows nothing');
SET medallion.http_allowed_hosts = '127.0.0.1, *.example.org';

-- ---- options and names -----------------------------------------------------------------
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/x', '{"pages": 3}')$$,
    '22023', 'unrecognized option "pages" of an HTTP source', 'an unknown option is refused');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/x', '{"format": "csv"}')$$,
    '22023', NULL, 'format is json or ndjson');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/x', '{"next": "next"}')$$,
    '22023', NULL, 'next is a path, link_header or a parameter');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/x', '{"body": {"a": 1}}')$$,
    '22023', NULL, 'a GET has no body');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/x', '{"max_pages": 0}')$$,
    '22023', NULL, 'max_pages is at least 1');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/x',
                    '{"headers": {"X-A": "a\r\nX-B: b"}}')$$,
    '22023', NULL, 'a header value cannot smuggle another header');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/x', '{}', 'Bad-Name')$$,
    '42602', NULL, 'a source name is lower-case letters, digits and _');
SELECT throws_ok($$SELECT medallion.create_http_source('public.net_plain', 'http://127.0.0.1/x')$$,
    '42809', NULL, 'the target is a bronze table');
SELECT is(medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/a',
              '{"records": "$.data", "next": {"page": "p"}, "headers": {"Authorization": "Bearer k"}}'),
          'source.net_ev_1', 'the default name is <bronze name>_<n>');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/b', '{}', 'net_ev_1')$$,
    '42710', NULL, 'a name is taken once');
SELECT is((SELECT definition ? 'headers' OR options::text LIKE '%Bearer%' FROM medallion.pipelines
           WHERE name = 'source.net_ev_1'), false, 'the headers are not in medallion.pipelines');
SELECT is((SELECT headers->>'Authorization' FROM medallion.http_sources WHERE pipeline = 'source.net_ev_1'),
          'Bearer k', 'they are in medallion.http_sources');

-- ---- alter_pipeline and schedule ----------------------------------------------------------
SELECT throws_ok($$SELECT medallion.alter_pipeline('source.net_ev_1', '{"url": "http://example.com/"}')$$,
    'MD061', NULL, 'alter_pipeline checks a new URL');
SELECT throws_ok($$SELECT medallion.alter_pipeline('source.net_ev_1', '{"next": 5}')$$,
    '22023', NULL, 'and the options as at creation');
SELECT throws_ok($$SELECT medallion.schedule('source.net_ev_1', 'on_change')$$,
    '0A000', NULL, 'a source is not scheduled on_change');

-- ---- a run the allow-list refuses -----------------------------------------------------------
SET medallion.http_allowed_hosts = '';
SELECT throws_ok($$SELECT medallion.run('source.net_ev_1', strict => true)$$,
    'MD061', NULL, 'a request is checked against the allow-list in force when it is made');
SELECT medallion.run('source.net_ev_1');
SELECT is((SELECT status || ' ' || error_class || ' ' || sqlstate FROM medallion.runs
           WHERE pipeline = 'source.net_ev_1' ORDER BY run_id DESC LIMIT 1),
          'failed infrastructure MD061', 'the refused run is recorded, of class infrastructure');
-- A host allowed by name may reach public addresses only: "localhost" resolves to loopback,
-- which the list must name as an address (checked when the socket is opened).
SET medallion.http_allowed_hosts = 'localhost';
SELECT lives_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://localhost:9/x', '{}', 'net_local')$$,
    'a host listed by name is accepted at creation');
SELECT throws_like($$SELECT medallion.run('source.net_local', strict => true)$$,
    'address % of "http://localhost:9/x" is not allowed',
    'but the loopback address it resolves to is refused when connecting');
SET medallion.http_allowed_hosts = '127.0.0.1, *.example.org';

-- ---- privileges ------------------------------------------------------------------------------
SET ROLE medallion_tap_net_stranger;
SELECT is((SELECT count(*)::int FROM medallion.http_sources), 0, 'another role reads no source secrets');
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/x')$$,
    '42501', NULL, 'EXECUTE on create_http_source is not granted to PUBLIC');
SELECT throws_ok($$SELECT medallion.add_webhook('http://127.0.0.1/hook')$$,
    '42501', NULL, 'nor on add_webhook');
SELECT throws_ok($$SELECT * FROM medallion.webhooks$$, '42501', NULL, 'PUBLIC reads no webhooks');
RESET ROLE;
GRANT EXECUTE ON FUNCTION medallion.create_http_source(regclass, text, jsonb, text) TO medallion_tap_net_owner;
SET ROLE medallion_tap_net_owner;
SELECT throws_ok($$SELECT medallion.create_http_source('bronze.net_ev', 'http://127.0.0.1/x')$$,
    '42501', NULL, 'INSERT on the bronze table is needed too');
RESET ROLE;

-- ---- webhooks ------------------------------------------------------------------------------
SELECT throws_ok($$SELECT medallion.add_webhook('http://127.0.0.1/hook', '{"retries": 3}')$$,
    '22023', NULL, 'an unknown webhook option is refused');
SELECT throws_ok($$SELECT medallion.remove_webhook(-1)$$, '42704', NULL, 'removing a webhook that is not there');

-- ---- exports ---------------------------------------------------------------------------------
SELECT medallion.create_silver('net_ev', 'bronze.net_ev', '{"id": "int"}', '{id}');
SELECT throws_ok($$SELECT medallion.create_export('bronze.net_ev', 'http://127.0.0.1/x')$$,
    '42809', NULL, 'an export reads a silver table');
SELECT throws_ok($$SELECT medallion.create_export('silver.net_ev', 'ftp://127.0.0.1/x')$$,
    'MD065', NULL, 'over http or https');
SELECT throws_ok($$SELECT medallion.create_export('silver.net_ev', 'http://127.0.0.1/x', '{"batch_size": 0}')$$,
    '22023', NULL, 'batch_size is at least 1');
SELECT is(medallion.create_export('silver.net_ev', 'http://127.0.0.1/x'), 'export.net_ev',
    'an export is named after its table by default');
SET ROLE medallion_tap_net_stranger;
SELECT throws_ok($$SELECT medallion.create_export('silver.net_ev', 'http://127.0.0.1/y', '{}', 'other')$$,
    '42501', NULL, 'EXECUTE on create_export is not granted to PUBLIC');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
