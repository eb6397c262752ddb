# pg_dump / pg_restore into another cluster keeps the pseudonymisation key (so values
# hashed after the restore equal those hashed before, and still join) and the capture
# registry (so a captured table's writes keep landing in its bronze table).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode qw(medallion_node);

my $old = medallion_node('old_keys', preload => '');
$old->safe_psql('postgres', 'CREATE DATABASE app');
$old->safe_psql('app', q{
	CREATE EXTENSION medallion;
	SELECT medallion.create_bronze('people', 'hr', redact_keys => '{ssn}', options => '{"redact_mode": "hash"}');
	SELECT medallion.ingest('bronze.people', '{"id": 1, "ssn": "123456789"}', 'b1');
	CREATE TABLE public.acct (id int PRIMARY KEY, bal int);
	SELECT medallion.capture('public.acct');
	INSERT INTO public.acct VALUES (1, 10);
});
my $before = $old->safe_psql('app', q{SELECT medallion.pseudonymize('123456789')});

my $tempdir = PostgreSQL::Test::Utils::tempdir;
my $dump = "$tempdir/app.dump";
$old->command_ok([ 'pg_dump', '-Fc', '-d', $old->connstr('app'), '-f', $dump ], 'pg_dump');

my $new = medallion_node('new_keys', preload => '');
$new->safe_psql('postgres', 'CREATE DATABASE app');
$new->command_ok([ 'pg_restore', '--exit-on-error', '-d', $new->connstr('app'), $dump ],
	'pg_restore into another cluster');

is($new->safe_psql('app', q{SELECT medallion.pseudonymize('123456789')}), $before,
	'the restored database pseudonymises with the original key');
$new->safe_psql('app', q{SELECT medallion.ingest('bronze.people', '{"id": 2, "ssn": "123456789"}', 'b2')});
is($new->safe_psql('app', q{SELECT count(DISTINCT _raw->>'ssn') || '/' || count(*) FROM bronze.people}), '1/2',
	'a value hashed after the restore equals the one hashed before');
is($new->safe_psql('app', q{SELECT source::text || '->' || bronze::text FROM medallion.captures}),
	'acct->bronze.acct', 'the capture registry is restored');
$new->safe_psql('app', q{INSERT INTO public.acct VALUES (2, 20)});
is($new->safe_psql('app', q{SELECT string_agg(_raw->'data'->>'id', ',' ORDER BY _seq) FROM bronze.acct}), '1,2',
	'the captured table\'s writes keep landing after the restore');

$old->stop;
$new->stop;
done_testing();
