# The lean run path.  A run that finds nothing to do sends two statements to medallion's
# catalog: the lookup (which also records the run row and reads the watermark and the
# expectations) and the success record; counted here with pg_stat_statements, nested
# statements included.  The gateway keeps the plans of those statements: they stay right
# when what they name is dropped and made again in the same session (DROP EXTENSION,
# CREATE EXTENSION), and a run sees expectations added since the last one.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

# medallion not preloaded: no scheduler, whose checks would be counted too
my $node = medallion_node('lean_run', preload => 'pg_stat_statements',
	conf => "pg_stat_statements.track = all\n");

my $pipeline = q{DO $$ BEGIN
	PERFORM medallion.create_bronze('ev', 'app');
	PERFORM medallion.create_silver('ev', 'bronze.ev', '{"id": "int", "v": "int"}', '{id}', 'v');
	PERFORM medallion.ingest('bronze.ev', '[{"id": 1, "v": 1}, {"id": 2, "v": 1}]');
END $$;
};
sq(qq{CREATE EXTENSION medallion; CREATE EXTENSION pg_stat_statements; $pipeline});
is(sq(q{SELECT medallion.run('silver.ev') > 0; SELECT count(*) FROM silver.ev}), "t\n2",
	'the first run loads the rows');

# Ten runs with nothing new, each its own transaction (one session: the plans are kept).
sq(q{SELECT pg_stat_statements_reset()});
sq(join("\n", map { q{SELECT medallion.run('silver.ev');} } 1 .. 10));
my $catalog_calls = q{
	SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
	WHERE NOT toplevel
	AND query ~ 'medallion\.(pipelines|runs|watermarks|expectations|pause_requests|dlq|quarantine|alerts|batches)\M'};
is(sq($catalog_calls), '20', 'an empty run sends two statements to the catalog');
note sq(q{SELECT calls || ' x ' || left(regexp_replace(query, '\s+', ' ', 'g'), 100)
	FROM pg_stat_statements WHERE NOT toplevel ORDER BY calls DESC, query});
is( sq(q{SELECT count(*) FILTER (WHERE status = 'succeeded' AND rows_read = 0 AND finished_at IS NOT NULL)
	FROM medallion.runs WHERE pipeline = 'silver.ev'}),
	'10', 'and each is recorded as a succeeded run that read nothing');

# One session: plans saved, then everything they name dropped and made again.
is( sq(qq{
	SELECT medallion.run('silver.ev') > 0;
	DROP TABLE silver.ev, bronze.ev;
	DROP EXTENSION medallion;
	CREATE EXTENSION medallion;
	$pipeline
	SELECT medallion.run('silver.ev') > 0;
	SELECT count(*) FROM silver.ev;
	SELECT count(*) FROM medallion.runs WHERE status = 'succeeded';}),
	"t\nt\n2\n1",
	'after DROP EXTENSION and CREATE EXTENSION in the same session, a run works on the new catalog');

# A run reads the expectations as they are now (the lookup reads them with the pipeline).
is( sq(q{
	SELECT medallion.run('silver.ev') > 0;
	DO $$ BEGIN
		PERFORM medallion.expect('silver.ev', 'small_id', 'id < 10', 'drop');
		PERFORM medallion.ingest('bronze.ev', '[{"id": 11, "v": 1}, {"id": 3, "v": 1}]');
	END $$;
	SELECT medallion.run('silver.ev') > 0;
	SELECT rows_dropped || ' ' || rows_inserted FROM medallion.runs ORDER BY run_id DESC LIMIT 1;}),
	"t\nt\n1 1",
	'an expectation added after a run applies to the next one, in the same session');

$node->stop;
done_testing();
