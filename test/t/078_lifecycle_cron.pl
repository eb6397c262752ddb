# A pipeline's pg_cron job follows it (issue 13, lifecycle): rename_pipeline() renames the job
# 'medallion:<pipeline>' and its command, and the renamed job runs the renamed pipeline;
# alter_pipeline(p, '{"owner": role}') and REASSIGN OWNED make the job run as the new owner.
# (A source or an export without a table: DROP ROLE of its owner is refused, pgTAP ops_ownership.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('lifecycle_cron', cron => 'crondb', workers => 16, quiet => 1);
$node->safe_psql('postgres', 'CREATE DATABASE crondb');

sub cq { return $node->safe_psql('crondb', $_[0]); }

cq(q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION medallion;
CREATE ROLE lc_alice LOGIN;
CREATE ROLE lc_bob LOGIN;
CREATE ROLE lc_carol LOGIN;
GRANT CREATE ON SCHEMA bronze, silver TO lc_alice, lc_bob, lc_carol;
GRANT lc_bob TO lc_alice;
SET ROLE lc_alice;
SELECT medallion.create_bronze('ev', 'app');
SELECT medallion.create_silver('ev', 'bronze.ev', '{"id": "int", "v": "text"}', '{id}');
SELECT medallion.ingest('bronze.ev', '[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]');
-- a silver pipeline's owner reads its bronze table: so may the roles it goes to
GRANT SELECT ON bronze.ev TO lc_bob, lc_carol;
RESET ROLE;
SELECT medallion.schedule('silver.ev', '* * * * *');
});
is(cq(q{SELECT jobname || ' | ' || username FROM cron.job}), 'medallion:silver.ev | lc_alice',
	'the cron schedule made its job, run as the owner');

cq(q{SET ROLE lc_alice; SELECT medallion.rename_pipeline('silver.ev', 'silver.events')});
is( cq(q{SELECT jobname || ' | ' || command || ' | ' || schedule FROM cron.job}),
	q{medallion:silver.events | SELECT medallion.trigger('silver.events') | * * * * *},
	'rename_pipeline() renames the job and its command');
is(cq(q{SELECT status FROM medallion.schedule_job_state('silver.events')}), 'ok',
	'and schedule_job_state() finds it');

cq(q{SET ROLE lc_alice; SELECT medallion.alter_pipeline('silver.events', '{"owner": "lc_bob"}')});
is(cq(q{SELECT username FROM cron.job WHERE jobname = 'medallion:silver.events'}), 'lc_bob',
	'alter_pipeline owner: the job runs as the new owner');

cq(q{REASSIGN OWNED BY lc_bob TO lc_carol});
is(cq(q{SELECT owner || ' | ' || (SELECT username FROM cron.job WHERE jobname = 'medallion:silver.events') FROM medallion.pipelines WHERE name = 'silver.events'}),
	'lc_carol | lc_carol', 'REASSIGN OWNED: the pipeline and its job go to the new role');

# The renamed job runs at the next minute, as the new owner (up to ~70 s).
ok($node->poll_query_until('crondb',
		q{SELECT count(*) > 0 FROM medallion.runs WHERE pipeline = 'silver.events' AND status = 'succeeded'}),
	'the renamed job runs the renamed pipeline');
is(cq(q{SELECT count(*) FROM silver.events}), '2', 'its rows are loaded');
is(cq(q{SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.ev'}), '0', 'nothing runs under the old name');

$node->stop;
done_testing();
