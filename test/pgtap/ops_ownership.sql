-- Who owns a pipeline: alter_pipeline(p, '{"owner": role}') follows ALTER TABLE ... OWNER TO's
-- rules (the owner, a member of the new role; 42704 for an unknown role) and the table, its
-- partitions and tombstone table follow; a pipeline without a table (an HTTP source, an
-- export) leaves no dangling owner: DROP ROLE is refused (2BP01), REASSIGN OWNED gives its
-- pipelines to the new role, DROP OWNED drops them (refused while another role's pipeline
-- reads one, unless CASCADE).
BEGIN;
SELECT plan(22);

CREATE ROLE medallion_tap_own_a NOLOGIN;
CREATE ROLE medallion_tap_own_b NOLOGIN;
CREATE ROLE medallion_tap_own_c NOLOGIN;
GRANT medallion_tap_own_b TO medallion_tap_own_a;   -- a may give its pipelines to b
GRANT CREATE ON SCHEMA bronze, silver TO medallion_tap_own_a, medallion_tap_own_b;   -- c owns no object
SET medallion.http_allowed_hosts = '127.0.0.1';
CREATE FUNCTION pg_temp.error_detail(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE d text;
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN d;
END $$;

SET ROLE medallion_tap_own_a;
SELECT FROM medallion.create_bronze('own_src', 'crm');
SELECT FROM medallion.ingest('bronze.own_src', '[{"id": 1}]');
SELECT FROM medallion.create_silver('own_s', 'bronze.own_src', '{"id": "int"}', ARRAY['id'], NULL,
                                    $${"delete_when": "_raw->>'op' = 'D'"}$$);
RESET ROLE;

-- alter_pipeline owner -----------------------------------------------------------------------
SET ROLE medallion_tap_own_c;
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.own_s', '{"owner": "medallion_tap_own_c"}')$$, '42501', NULL,
                 'a role that does not own the pipeline cannot give it away');
RESET ROLE;
SET ROLE medallion_tap_own_a;
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.own_s', '{"owner": "medallion_tap_own_c"}')$$, '42501', NULL,
                 'the owner cannot give it to a role it is not a member of');
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.own_s', '{"owner": "medallion_tap_no_such_role"}')$$, '42704', NULL,
                 'an unknown role is refused');
SELECT throws_ok($$SELECT medallion.alter_pipeline('silver.own_s', '{"owner": 7}')$$, '22023', NULL,
                 'an owner is a role name');
SELECT lives_ok($$SELECT medallion.alter_pipeline('silver.own_s', '{"owner": "medallion_tap_own_b", "steward": "crm team"}')$$,
                'the owner gives it to a role it is a member of');
RESET ROLE;
SELECT is((SELECT owner || ' ' || steward FROM medallion.pipelines WHERE name = 'silver.own_s'), 'medallion_tap_own_b crm team',
          'the pipeline has its new owner (and the other options apply)');
SELECT is((SELECT options ? 'owner' FROM medallion.pipelines WHERE name = 'silver.own_s'), false,
          'owner is a column, not an option');
SELECT is((SELECT string_agg(DISTINCT relowner::regrole::text, ',') FROM pg_class
           WHERE oid IN ('silver.own_s'::regclass, 'silver._own_s_deleted'::regclass)),
          'medallion_tap_own_b', 'its table and tombstone table follow');
SELECT lives_ok($$SELECT medallion.alter_pipeline('bronze.own_src', '{"owner": "medallion_tap_own_b"}')$$,
                'a superuser gives a pipeline to any role');
SELECT is((SELECT string_agg(DISTINCT c.relowner::regrole::text, ',') FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'bronze.own_src'::regclass), 'medallion_tap_own_b',
          'a bronze table''s partitions follow (ALTER TABLE does not recurse to them)');
SET ROLE medallion_tap_own_b;
SELECT set_config('own.run', medallion.run('silver.own_s')::text, true);
SELECT is((SELECT rows_read FROM medallion.runs WHERE run_id = current_setting('own.run')::bigint), 1::bigint,
          'the new owner runs it');
RESET ROLE;

-- Pipelines without a table --------------------------------------------------------------------
SELECT FROM medallion.create_http_source('bronze.own_src', 'http://127.0.0.1:1/feed', '{}', 'own_feed');
SELECT FROM medallion.create_export('silver.own_s', 'http://127.0.0.1:1/out', '{}', 'own_out');
SELECT FROM medallion.alter_pipeline('source.own_feed', '{"owner": "medallion_tap_own_c"}');
SELECT FROM medallion.alter_pipeline('export.own_out', '{"owner": "medallion_tap_own_c"}');
SELECT is((SELECT string_agg(owner, ',' ORDER BY name) FROM medallion.pipelines WHERE name IN ('source.own_feed', 'export.own_out')),
          'medallion_tap_own_c,medallion_tap_own_c', 'a source and an export have an owner and no table');
SELECT throws_ok('DROP ROLE medallion_tap_own_c', '2BP01', NULL,
                 'DROP ROLE of a role that owns pipelines without a table is refused');
SELECT matches((SELECT pg_temp.error_detail('DROP ROLE medallion_tap_own_c')),
               'owner of pipeline export\.own_out\nowner of pipeline source\.own_feed',
               'the detail lists the pipelines, as PostgreSQL lists owned objects');
SELECT lives_ok('DROP ROLE IF EXISTS medallion_tap_own_nobody', 'DROP ROLE of another role is left alone');

REASSIGN OWNED BY medallion_tap_own_c TO medallion_tap_own_a;
SELECT is((SELECT string_agg(owner, ',' ORDER BY name) FROM medallion.pipelines WHERE name IN ('source.own_feed', 'export.own_out')),
          'medallion_tap_own_a,medallion_tap_own_a', 'REASSIGN OWNED gives them to the new role');
SELECT lives_ok('DROP ROLE medallion_tap_own_c',
                'and the role can be dropped');
SELECT is((SELECT count(*) FROM medallion.pipelines p WHERE NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = p.owner)),
          0::bigint, 'no pipeline is left with a dangling owner');

-- DROP OWNED: b owns bronze.own_src and silver.own_s, which a's export reads
SELECT throws_ok('DROP OWNED BY medallion_tap_own_b', '2BP01', NULL,
                 'DROP OWNED is refused while another role''s pipeline reads one of the role''s');
SELECT ok(EXISTS (SELECT FROM medallion.pipelines WHERE name = 'silver.own_s'), 'and nothing is dropped');
DROP OWNED BY medallion_tap_own_b CASCADE;
SELECT is((SELECT string_agg(name, ',' ORDER BY name) FROM medallion.pipelines WHERE name LIKE '%.own\_%'), 'source.own_feed',
          'DROP OWNED ... CASCADE drops its pipelines and their readers (not the source that fed one)');
SELECT ok(to_regclass('bronze.own_src') IS NULL AND to_regclass('silver.own_s') IS NULL, 'and their tables');

SELECT * FROM finish();
ROLLBACK;
