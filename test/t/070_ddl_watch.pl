# The DDL event triggers never break unrelated DDL: a broad DDL workload (tables,
# partitions, types, views, functions, triggers, another extension, temporary tables,
# rolled-back transactions, failing commands, an unprivileged role's DDL in its own
# schema; test/bench/ddl_workload.sql) gives the same output and leaves the same catalog in
# a database with medallion and pipelines as in one without medallion, and medallion
# records nothing about it.  Then a tracked table's breaking change halts its pipeline
# there, so the watch was live during the workload.  And after a dump and restore, the
# snapshots of tracked relations are rebuilt from the restored catalog (they are not
# dumped: they are keyed by OID).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Basename qw(dirname);
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('ddl_watch');
$node->init(extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
$node->start;

my $workload = dirname(__FILE__) . '/../bench/ddl_workload.sql';
$node->safe_psql('postgres', q{
	CREATE ROLE ddl_user LOGIN;
	CREATE DATABASE plain;
	CREATE DATABASE watched;
	GRANT CREATE ON DATABASE plain, watched TO ddl_user;
});
$node->safe_psql('watched', q{
	CREATE EXTENSION medallion;
	CREATE TABLE public.customers (customer_id bigint PRIMARY KEY, name text);
	CREATE TABLE public.accounts (id int PRIMARY KEY, holder text);
	SELECT medallion.create_bronze('orders', 'shop');
	SELECT medallion.create_silver('orders', 'bronze.orders',
		'{"id": "int", "qty": "int", "customer_id": {"type": "bigint", "references": "public.customers.customer_id"}}',
		'{id}', NULL, $${"delete_when": "_raw->>'op' = 'D'"}$$);
	SELECT medallion.capture('public.accounts');
	SELECT medallion.ingest('bronze.orders', '[{"id": 1, "qty": 2}]');
	SELECT medallion.run('silver.orders');
});
my $tracked = $node->safe_psql('watched', 'SELECT count(*) FROM medallion.column_snapshots');
is($tracked, '6', 'the pipelines track six relations (two bronze, silver, tombstone, referenced, captured)')
	or diag $tracked;

# psql -a: every statement echoed with its result or error
sub workload
{
	my ($db) = @_;
	my ($stdout, $stderr);
	$node->psql($db, undef, extra_params => [ '-a', '-f', $workload ],
		stdout => \$stdout, stderr => \$stderr);
	$stderr =~ s/psql:[^:]*:(\d+): //g;
	return "$stdout\n---\n$stderr";
}
my $plain = workload('plain');
my $watched = workload('watched');
like($plain, qr/column "kept" of relation "t1" already exists/, 'the workload ran, with its failing commands');
is($watched, $plain, 'the workload gives the same output with medallion installed as without');

my $dump_cmd = sub {
	my ($db) = @_;
	my ($stdout, $stderr);
	IPC::Run::run([ 'pg_dump', '--schema-only', '--no-owner', '-n', 'w', '-n', 'wu',
			'-d', $node->connstr($db) ], '>', \$stdout, '2>', \$stderr)
	  or die "pg_dump $db: $stderr";
	$stdout =~ s/^\\(un)?restrict .*$//mg;    # a random key per dump
	return $stdout;
};
is($dump_cmd->('watched'), $dump_cmd->('plain'), 'and leaves the same catalog');
is($node->safe_psql('watched', 'SELECT count(*) FROM medallion.schema_changes'), '0',
	'medallion recorded nothing about it');
is($node->safe_psql('watched', q{SELECT string_agg(state, ',' ORDER BY name) FROM medallion.pipelines}),
	'active,active,active', 'and its pipelines are active');

# the watch was on: a breaking change to a tracked table is seen
my ($rc, $out, $err) = $node->psql('watched', 'ALTER TABLE silver.orders DROP COLUMN qty');
is($rc, 0, 'a breaking change to a tracked table succeeds');
like($err, qr/WARNING:  ALTER TABLE on "silver.orders" breaks pipeline "silver.orders"/, 'with a warning');
is($node->safe_psql('watched', q{SELECT state FROM medallion.pipelines WHERE name = 'silver.orders'}),
	'halted', 'and halts the pipeline');
($rc, $out, $err) = $node->psql('watched', q{SET ROLE ddl_user; ALTER TABLE public.customers ADD COLUMN x int});
like($err, qr/must be owner of table customers/,
	"a role that may not alter a tracked table gets PostgreSQL's own error, nothing from medallion");

# dump and restore: the snapshots are rebuilt, keyed by the new OIDs
$node->safe_psql('postgres', 'CREATE DATABASE restored');
my $dumpfile = $node->basedir . '/watched.dump';
command_ok([ 'pg_dump', '-Fc', '-f', $dumpfile, '-d', $node->connstr('watched') ], 'pg_dump of the watched database');
command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dumpfile ], 'pg_restore');
is($node->safe_psql('restored', q{
	SELECT count(*) FROM medallion.column_snapshots s
	WHERE s.columns = medallion.column_snapshot(s.relid)
	  AND s.relation = (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
	                    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = s.relid)}),
	'6', 'after a restore every tracked relation has a snapshot of its restored columns');
($rc, $out, $err) = $node->psql('restored', 'ALTER TABLE silver.orders ADD COLUMN later text');
is($node->safe_psql('restored', q{SELECT string_agg(change || ' ' || path || ' ' || classification, ',')
	FROM medallion.schema_changes WHERE id > (SELECT max(id) - 1 FROM medallion.schema_changes)}),
	'column_added later safe', 'and DDL there is classified against them');

$node->stop;
done_testing();
