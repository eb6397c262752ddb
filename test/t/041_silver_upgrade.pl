# ALTER EXTENSION medallion UPDATE from 0.1.0: the required columns of existing silver tables
# become NOT NULL, unless they hold NULLs (a WARNING says so); the quarantine guard's index
# is added; settings outside options.settings' allow-list (search_path) are removed, with a
# WARNING.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('silver_upgrade', preload => '');
my $db = 'postgres';

sq(q{CREATE EXTENSION medallion VERSION '0.1.0'});
sq(q{SELECT medallion.create_bronze('up', 'app');
     SELECT medallion.create_silver('up_clean', 'bronze.up',
         '{"id": "int", "v": "int", "r": {"type": "text", "required": true}, "o": "text"}', '{id}', 'v');
     SELECT medallion.create_silver('up_nulls', 'bronze.up',
         '{"id": "int", "r": {"type": "text", "required": true}}', '{id}', NULL,
         '{"settings": {"TimeZone": "UTC", "work_mem": "8MB"}}');
     SELECT medallion.ingest('bronze.up', '[{"id": 1, "v": 1, "r": "a"}]');
     SELECT medallion.run('silver.up_clean');
     SELECT medallion.run('silver.up_nulls');
     -- as 0.1.0 made them (the 0.2.0 library makes them NOT NULL already)
     ALTER TABLE silver.up_clean ALTER COLUMN r DROP NOT NULL, ALTER COLUMN v DROP NOT NULL;
     ALTER TABLE silver.up_nulls ALTER COLUMN r DROP NOT NULL;
     INSERT INTO silver.up_nulls (id, r, _source_seq) VALUES (2, NULL, 0);
     -- as 0.1.0 allowed: a search_path in settings
     UPDATE medallion.pipelines
        SET definition = jsonb_set(definition, '{options,settings,search_path}', '"public"'),
            options = jsonb_set(options, '{settings,search_path}', '"public"')
      WHERE name = 'silver.up_nulls';});
is(sq(q{SELECT attnotnull FROM pg_attribute WHERE attrelid = 'silver.up_clean'::regclass AND attname = 'r'}),
	'f', '0.1.0: a required column is nullable');

my ($ret, $out, $err) = $node->psql($db, q{ALTER EXTENSION medallion UPDATE TO '0.2.0'});
is($ret, 0, 'ALTER EXTENSION medallion UPDATE succeeds');
like($err, qr/required column "r" of silver.up_nulls holds NULLs/, 'a WARNING names a column left nullable');
like($err, qr/settings search_path of pipeline "silver.up_nulls" are no longer allowed/,
	'a WARNING names a setting no longer allowed');
is(sq(q{SELECT (definition #> '{options,settings}')::text || ' ' || (options -> 'settings')::text
        FROM medallion.pipelines WHERE name = 'silver.up_nulls'}),
	'{"TimeZone": "UTC", "work_mem": "8MB"} {"TimeZone": "UTC", "work_mem": "8MB"}',
	'it is removed, the allowed ones stay');
is(sq(q{SELECT string_agg(attname || '=' || attnotnull, ',' ORDER BY attnum) FROM pg_attribute
        WHERE attrelid = 'silver.up_clean'::regclass AND attname IN ('id', 'v', 'r', 'o')}),
	'o=false,r=true,v=true,id=true', 'required columns (and order_by) are NOT NULL after the update');
is(sq(q{SELECT attnotnull FROM pg_attribute WHERE attrelid = 'silver.up_nulls'::regclass AND attname = 'r'}),
	'f', 'a column holding NULLs is left as it was');
is(sq(q{SELECT count(*) FROM pg_indexes WHERE schemaname = 'medallion' AND tablename = 'quarantine'
        AND indexdef LIKE '%(pipeline, source_seq)%'}), '1', 'the quarantine guard has its index');
sq(q{SELECT medallion.ingest('bronze.up', '[{"id": 3, "v": 1, "r": "c"}]')});
sq(q{SELECT medallion.run('silver.up_clean')});
is(sq(q{SELECT status || '/' || rows_inserted FROM medallion.runs WHERE pipeline = 'silver.up_clean'
        ORDER BY run_id DESC LIMIT 1}), 'succeeded/1', 'the updated pipeline runs');

$node->stop;
done_testing();
