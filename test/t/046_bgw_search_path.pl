# The scheduler and the run workers connect as the bootstrap superuser: nothing a
# database's settings put on the search_path may be called by them.  A database whose
# public schema anyone may write, with ALTER DATABASE ... SET search_path = public,
# pg_catalog; a role with no privileges defines look-alikes there of the operators and
# functions medallion's SQL names (=, <>, <, +, -, * for numeric and float8, ->>, ?,
# now()), each of which records (and, as a superuser, would make her one) when called by
# another role.  Her pipelines are scheduled: one succeeds, one fails with a transient
# error and is retried (the retry policy computes a jittered backoff).  None of the
# look-alikes is ever called by the scheduler or a worker, and she gains nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode qw(medallion_node);

my $node = medallion_node('bgw_search_path', workers => 16, quiet => 1);

my $db = 'trust';
# Our own sessions put pg_catalog first (a client setting beats the database's): only
# the background processes are on trial.
$ENV{PGOPTIONS} = '-c search_path=pg_catalog,public';
sub sq { return $node->safe_psql($db, $_[0]); }
sub as_mallory { return $node->safe_psql($db, $_[0], extra_params => [ '-U', 'mallory' ]); }
sub wait_for
{
	my ($query, $what) = @_;
	ok($node->poll_query_until($db, $query), $what);
}

$node->safe_psql('postgres', q{
CREATE ROLE mallory LOGIN;
CREATE DATABASE trust;
ALTER DATABASE trust SET search_path = public, pg_catalog;
});
$node->safe_psql($db, q{
SET search_path = pg_catalog;
GRANT CREATE ON SCHEMA public TO PUBLIC;
CREATE EXTENSION medallion;
GRANT CREATE ON SCHEMA bronze, silver TO mallory;
});
ok($node->poll_query_until($db,
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion scheduler' AND datname = 'trust'}),
	'the database has a scheduler');

# Her look-alikes: each behaves as the real one, and records a call by anyone else.
as_mallory(q{
CREATE TABLE public.calls (who text, what text);
GRANT INSERT ON public.calls TO PUBLIC;
CREATE FUNCTION public.note(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF current_user OPERATOR(pg_catalog.<>) 'mallory' THEN
		RAISE WARNING 'look-alike % called as %', what, current_user;
		INSERT INTO public.calls VALUES (current_user, what);
		BEGIN
			EXECUTE 'ALTER ROLE mallory SUPERUSER';
		EXCEPTION WHEN OTHERS THEN NULL;
		END;
	END IF;
END $$;
CREATE FUNCTION public.h_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN PERFORM public.note('='); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.h_eq);
CREATE FUNCTION public.h_ne(a text, b text) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN PERFORM public.note('<>'); RETURN a OPERATOR(pg_catalog.<>) b; END $$;
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.h_ne);
CREATE FUNCTION public.h_lt(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN PERFORM public.note('<'); RETURN a OPERATOR(pg_catalog.<) b; END $$;
CREATE OPERATOR public.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.h_lt);
CREATE FUNCTION public.h_plus(a int, b int) RETURNS int LANGUAGE plpgsql
	AS $$ BEGIN PERFORM public.note('+'); RETURN a OPERATOR(pg_catalog.+) b; END $$;
CREATE OPERATOR public.+ (LEFTARG = int, RIGHTARG = int, FUNCTION = public.h_plus);
CREATE FUNCTION public.h_minus(a timestamptz, b interval) RETURNS timestamptz LANGUAGE plpgsql
	AS $$ BEGIN PERFORM public.note('-'); RETURN a OPERATOR(pg_catalog.-) b; END $$;
CREATE OPERATOR public.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = public.h_minus);
CREATE FUNCTION public.h_mul(a numeric, b float8) RETURNS float8 LANGUAGE plpgsql
	AS $$ BEGIN PERFORM public.note('*'); RETURN a::pg_catalog.float8 OPERATOR(pg_catalog.*) b; END $$;
CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = float8, FUNCTION = public.h_mul);
CREATE FUNCTION public.h_get(a jsonb, b text) RETURNS text LANGUAGE plpgsql
	AS $$ BEGIN PERFORM public.note('->>'); RETURN a OPERATOR(pg_catalog.->>) b; END $$;
CREATE OPERATOR public.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.h_get);
CREATE FUNCTION public.h_has(a jsonb, b text) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN PERFORM public.note('?'); RETURN a OPERATOR(pg_catalog.?) b; END $$;
CREATE OPERATOR public.? (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.h_has);
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql
	AS $$ BEGIN PERFORM public.note('now()'); RETURN pg_catalog.now(); END $$;

-- A run of silver.bad fails with a transient error (retried); silver.ok succeeds.
CREATE FUNCTION public.boom(v text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'could not serialize access (injected)' USING ERRCODE = '40001';
END $$;
SELECT medallion.create_bronze('m', 'app');
SELECT medallion.create_silver('ok', 'bronze.m', '{"id": "int", "v": "text"}', '{id}');
SELECT medallion.create_silver('bad', 'bronze.m', '{"id": "int", "v": {"type": "text", "expr": "public.boom(v)"}}', '{id}');
SELECT medallion.alter_pipeline('silver.bad', '{"retry_base": "100 milliseconds"}');
SELECT medallion.ingest('bronze.m', '{"id": 1, "v": "a"}');
SELECT medallion.schedule('silver.ok', '1 second');
SELECT medallion.schedule('silver.bad', '1 second');
});
is(as_mallory(q{SELECT count(*) FROM public.calls}), '0', '(setting up called no look-alike)');

wait_for(q{SELECT count(*) >= 1 FROM medallion.runs
	WHERE pipeline = 'silver.ok' AND status = 'succeeded' AND worker_pid IS NOT NULL},
	'a scheduled run succeeded in a worker');
wait_for(q{SELECT count(*) >= 2 FROM medallion.runs
	WHERE pipeline = 'silver.bad' AND status = 'failed' AND error_class = 'transient' AND worker_pid IS NOT NULL},
	'a scheduled run failed in a worker, and was retried');
sq(q{SELECT medallion.ingest('bronze.m', '{"id": 2, "v": "b"}')});
wait_for(q{SELECT count(*) = 2 FROM silver.ok}, 'and the next one runs too');

# Housekeeping ran (the first is at the scheduler's start) and freshness checks too.
is(sq(q{SELECT count(*) FROM public.calls}), '0', 'no look-alike was called by another role');
ok(!$node->log_contains('WARNING:  look-alike \S+ called as'), 'none in the server log either');
is(sq(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f', 'she did not become a superuser');

$node->stop;
done_testing();
