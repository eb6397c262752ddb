# test/t/MedallionNode.pm -- the node setup and helpers the TAP tests share.
#
#   use lib 'test/t';            # or prove -I test/t, as test/run does
#   use MedallionNode;
#   my $node = medallion_node('scheduler', workers => 16, quiet => 1);
#   sq(q{CREATE EXTENSION medallion});
#   wait_for(q{SELECT count(*) = 1 FROM silver.ev}, 'the pipeline ran');
#
# medallion_node() makes a started PostgreSQL::Test::Cluster node with a UTF-8 database
# cluster (C.UTF-8 locale) and medallion in shared_preload_libraries; it becomes the node
# that sq() and wait_for() talk to, in database 'postgres' unless db => names another.
package MedallionNode;

use strict;
use warnings;
use Exporter 'import';
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(medallion_node sq wait_for sql_error start_httpd);

my ($current_node, $current_db);

# medallion_node(NAME, OPTIONS): a new, started node.  OPTIONS:
#   preload          shared_preload_libraries ('medallion' by default; '' for none)
#   cron             a database name: pg_cron preloaded too, its jobs kept in that
#                    database and run by background workers
#   workers          max_worker_processes (schedulers, run workers, pg_cron's)
#   quiet            1: log_min_messages = warning (the processes' LOG lines left out)
#   conf             more postgresql.conf lines, appended after those settings
#   allows_streaming 1 to let the node have a standby
#   db               the database of sq() and wait_for() ('postgres' by default)
sub medallion_node
{
	my ($name, %opt) = @_;
	my $preload = exists $opt{preload} ? $opt{preload} : 'medallion';
	my $conf = '';
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init(($opt{allows_streaming} ? (allows_streaming => 1) : ()),
		extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
	$preload = join(',', grep { $_ ne '' } $preload, 'pg_cron') if defined $opt{cron};
	$conf .= "shared_preload_libraries = '$preload'\n" if $preload ne '';
	$conf .= "cron.database_name = '$opt{cron}'\ncron.use_background_workers = on\n"
	  if defined $opt{cron};
	$conf .= "max_worker_processes = $opt{workers}\n" if defined $opt{workers};
	$conf .= "log_min_messages = warning\n" if $opt{quiet};
	$conf .= $opt{conf} if defined $opt{conf};
	$node->append_conf('postgresql.conf', $conf) if $conf ne '';
	$node->start;
	($current_node, $current_db) = ($node, $opt{db} // 'postgres');
	return $node;
}

# sq(SQL): the output of SQL run on the current node; dies on an error.
sub sq
{
	return $current_node->safe_psql($current_db, $_[0]);
}

# wait_for(QUERY, WHAT, EXPECTED): one test, passing once QUERY returns EXPECTED ('t' by
# default) on the current node, failing if it does not within the framework's timeout.
sub wait_for
{
	my ($query, $what, $expected) = @_;
	ok($current_node->poll_query_until($current_db, $query, $expected // 't'), $what);
}

# sql_error(SQL): the error text of a statement expected to fail on the current node ('' when
# it succeeds).
sub sql_error
{
	my ($rc, $out, $err) = $current_node->psql($current_db, $_[0], extended_stderr => 1);
	return $rc == 0 ? '' : $err;
}

# start_httpd(): starts the scripted test server (test/net/httpd.py) on 127.0.0.1, stopped
# when the test ends; returns its base URL and port.
my $httpd_pid;
END { kill 'TERM', $httpd_pid if $httpd_pid; }

sub start_httpd
{
	my $portfile = PostgreSQL::Test::Utils::tempdir() . '/httpd.port';

	$httpd_pid = fork();
	die "fork: $!" unless defined $httpd_pid;
	if ($httpd_pid == 0)
	{
		exec('python3', "$FindBin::Bin/../net/httpd.py", $portfile) or die "exec: $!";
	}
	for (1 .. 100) { last if -e $portfile; usleep(100_000); }
	my $port = PostgreSQL::Test::Utils::slurp_file($portfile);
	return ("http://127.0.0.1:$port", $port);
}

1;
