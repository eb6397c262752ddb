# ALTER EXTENSION medallion UPDATE from 0.1.0 with pipelines in place (trust §5, §7, §8 for
# operations): pipelines.owner becomes a name (the RLS policies of the DLQ still show each
# owner its rows), duplicate open alerts are closed so that one stays open per kind,
# messages are cut to 1 kB and hidden from other roles, and the pg_cron jobs made by 0.1.0
# as the catalog owner now run as the pipeline's owner.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('ops_upgrade', cron => 'postgres', workers => 16, quiet => 1);
my $db = 'postgres';

sq(q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION medallion VERSION '0.1.0';
CREATE ROLE up_owner LOGIN;
CREATE ROLE up_other NOLOGIN;
CREATE ROLE "Up Mixed" NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO up_owner, "Up Mixed";
SET ROLE "Up Mixed";
SELECT medallion.create_bronze('mx', 'app');
RESET ROLE;
SET ROLE up_owner;
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.ingest_text('bronze.ev', E'{"id": 1}\nnot json', 'ndjson', 'b1');
SELECT medallion.create_silver('ev', 'bronze.ev', '{"id": "int"}', '{id}');
SELECT medallion.schedule('silver.ev', '*/5 * * * *');
RESET ROLE;
INSERT INTO medallion.runs (pipeline, status, error_message) VALUES ('silver.ev', 'failed', repeat('v', 5000));
INSERT INTO medallion.alerts (pipeline, kind, message) VALUES ('silver.ev', 'halted', 'one'), ('silver.ev', 'halted', 'two');
});
# the job as 0.1.0's library made it: as the catalog owner
sq(q{UPDATE cron.job SET username = current_user WHERE jobname = 'medallion:silver.ev'});
is(sq(q{SELECT username FROM cron.job WHERE jobname = 'medallion:silver.ev'}), 'postgres',
	'a pg_cron job made as the catalog owner');

sq(q{ALTER EXTENSION medallion UPDATE TO '0.2.0'});
is(sq(q{SELECT extversion FROM pg_extension WHERE extname = 'medallion'}), '0.2.0', 'updated');
is( sq(q{SELECT format_type(atttypid, atttypmod) FROM pg_attribute
	     WHERE attrelid = 'medallion.pipelines'::regclass AND attname = 'owner'}),
	'name', 'pipelines.owner is a name');
is(sq(q{SELECT string_agg(DISTINCT owner, ',' ORDER BY owner) FROM medallion.pipelines}), 'Up Mixed,up_owner',
	'the owners kept, by their names (unquoted)');
is(sq(q{SET ROLE up_owner; SELECT count(*) FROM medallion.dlq}), '1', 'the owner still reads its DLQ rows');
is(sq(q{SET ROLE up_other; SELECT count(*) FROM medallion.dlq}), '0', 'another role does not');
is(sq(q{SELECT count(*) || '/' || count(resolved_at) FROM medallion.alerts WHERE pipeline = 'silver.ev'}),
	'2/1', 'of two open alerts of one kind, one stays open');
is(sq(q{SELECT octet_length(error_message) <= 1024 FROM medallion.runs WHERE pipeline = 'silver.ev'}), 't',
	'stored messages are cut to 1 kB');
my ($rc, $out, $err) = $node->psql($db, q{SET ROLE up_other; SELECT error_message FROM medallion.runs});
like($err, qr/permission denied/, 'and hidden from other roles');
is(sq(q{SELECT username FROM cron.job WHERE jobname = 'medallion:silver.ev'}), 'up_owner',
	'the pg_cron job now runs as the pipeline\'s owner');
is(sq(q{SET ROLE up_owner; SELECT medallion.run('silver.ev') > 0}), 't', 'and the pipeline runs');

$node->stop;
done_testing();
