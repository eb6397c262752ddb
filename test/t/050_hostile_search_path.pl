# Hostile environment (trust §1): every statement medallion runs as another role than the
# caller -- the catalog owner, a pipeline owner, the superuser of a worker -- is immune to
# the caller's objects.  mallory, an unprivileged pipeline owner, puts look-alikes of every
# operator, type and function that medallion's own SQL names (listed from the source by
# tools/sql-names, not by hand) in a schema `evil` and in `public`, both on the database's
# search_path before pg_catalog, and types named like the real ones in pg_temp.  Every
# look-alike records who called it (evil.calls, and the server log, which a rollback does
# not undo) and otherwise behaves like the real one, so an attack would pass unnoticed.
# mallory and eve (a role with no grants) then call every public function: bronze, ingest,
# silver, expectations, a succeeding and a failing run, replay, schedules (interval, cron,
# trigger), pause/resume, alter_pipeline, retention, capture, and the wave's surfaces (gold,
# alter_contract, backfills and rollback, HTTP sources, exports, webhooks, checklist,
# lineage, the status views, DLQ triage, drop_pipeline, and eve running mallory's pipelines
# as an operator); scheduled runs and alert deliveries happen in workers.  At the end no look-alike was ever called as another role, and neither role
# gained a privilege.
use strict;
use warnings;
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode qw(medallion_node start_httpd);

# the HTTP server of the network surfaces (sources, exports, webhooks)
my ($base) = start_httpd();
my $node = medallion_node('hostile', cron => 'hostile', workers => 20, quiet => 1,
	conf => "medallion.http_allowed_hosts = '127.0.0.1'\n");

my $db = 'hostile';
# Our own statements as the superuser never see the look-alikes.
my $PIN = 'SET search_path = pg_catalog, pg_temp; ';
sub sq { return $node->safe_psql($db, $PIN . $_[0]); }
# poll(SQL): true once SQL (run pinned) returns t, within 60 s
sub poll
{
	my ($sql) = @_;
	for (1 .. 300)
	{
		return 1 if sq($sql) eq 't';
		select(undef, undef, undef, 0.2);
	}
	return 0;
}

# ---- what medallion's SQL names, from the source ----------------------------------------
my $tools = dirname(__FILE__) . '/../../tools';
my $names = `python3 $tools/sql-names`;
die "tools/sql-names failed" if $? != 0;
my (%ops, %types, %funcs);
for my $l (split /\n/, $names)
{
	my @f = split /\t/, $l;
	$ops{ $f[1] } = 1 if $f[0] eq 'operator';
	$types{ $f[1] } = 1 if $f[0] eq 'type';
	$funcs{ $f[1] } = 1 if $f[0] eq 'function';
}
# keyword types (bigint, interval, ...) always mean pg_catalog's: no look-alike possible
my %keyword_type = map { $_ => 1 }
  qw(int integer bigint smallint numeric decimal dec boolean real float double varchar char
  character timestamp time interval bit);
my @types = grep { !$keyword_type{$_} } sort keys %types;
# plus the types every pipeline's own SQL works with
push @types, grep { my $t = $_; !grep { $_ eq $t } @types } qw(text jsonb timestamptz xid8 int8 int4 bool date);
my @ops = sort keys %ops;
my @funcs = sort keys %funcs;
ok(@ops && @types && @funcs, 'tools/sql-names lists operators, types and functions');
note('look-alike operators: ' . join(' ', @ops));
note('look-alike types: ' . join(' ', @types));
note('look-alike functions: ' . join(' ', @funcs));

# ---- the database, the roles -----------------------------------------------------------
$node->safe_psql('postgres', q{
CREATE DATABASE hostile;
ALTER DATABASE hostile SET search_path = evil, public, pg_catalog;
CREATE ROLE mallory LOGIN;
CREATE ROLE eve LOGIN;
});
sq(q{
CREATE EXTENSION medallion;
CREATE EXTENSION pg_cron;
GRANT CREATE ON SCHEMA bronze, silver, gold TO mallory;
-- the network functions, which an administrator grants
GRANT EXECUTE ON FUNCTION medallion.create_http_source(regclass, text, pg_catalog.jsonb, text),
  medallion.create_export(regclass, text, pg_catalog.jsonb, text), medallion.add_webhook(text, pg_catalog.jsonb),
  medallion.remove_webhook(bigint) TO mallory;
GRANT CREATE ON SCHEMA public TO PUBLIC;
CREATE SCHEMA evil AUTHORIZATION mallory;
});
ok(poll(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'medallion scheduler' AND datname = 'hostile'}),
	'the scheduler runs (started under the hostile database search_path)');

# as ROLE: run SQL in a session of that role; returns (ok, stdout, stderr)
sub as_role
{
	my ($role, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql, extra_params => [ '-U', $role, '-v', 'ON_ERROR_STOP=1' ]);
	return ($rc == 0, $out, $err);
}

# mallory's recorder and look-alikes (made with pg_catalog alone on the path).
my ($ok, $out, $err) = as_role('mallory', $PIN . q{
CREATE TABLE evil.calls (at timestamptz DEFAULT pg_catalog.clock_timestamp(), cur name, sess name,
                         what text, backend text, pid int);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT INSERT, SELECT ON evil.calls TO PUBLIC;
-- Records its caller (the log survives a rollback, the table does not), then, if it runs as
-- a superuser, makes mallory a member of pg_monitor: an escalation the end checks for.
CREATE FUNCTION evil.rec(what text) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RAISE LOG 'hostile look-alike called: what=<%> current_user=<%> session_user=<%> backend=<%>',
    what, current_user, session_user,
    (SELECT backend_type FROM pg_catalog.pg_stat_activity WHERE pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid());
  BEGIN
    INSERT INTO evil.calls (cur, sess, what, backend, pid)
    SELECT current_user, session_user, what, a.backend_type, pg_catalog.pg_backend_pid()
      FROM pg_catalog.pg_stat_activity a WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid();
  EXCEPTION WHEN others THEN NULL;
  END;
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user) THEN
    BEGIN
      EXECUTE 'GRANT pg_monitor TO mallory';
    EXCEPTION WHEN others THEN NULL;
    END;
  END IF;
  RETURN true;
END $$;
GRANT EXECUTE ON FUNCTION evil.rec(text) TO PUBLIC;
});
ok($ok, 'mallory creates her recorder') or diag($err);

# Operators: in evil and public, a copy of every pg_catalog signature of each operator
# (wins where the schema comes before pg_catalog) and variants for pairs of common types
# pg_catalog has no exact match for (win wherever the schema is on the path).
my $op_list = join(', ', map { "'$_'" } @ops);
my $fn_list = join(', ', map { "'$_'" } @funcs);
# MEDALLION_HOSTILE_OFF=1: the same calls without look-alikes (checks the test itself)
my $off = $ENV{MEDALLION_HOSTILE_OFF};
($ok, $out, $err) = as_role('mallory', $off ? 'SELECT 1' : $PIN . qq{
SET client_min_messages = warning;
DO \$do\$
DECLARE
  sch text; o record; n int := 0; made int := 0; skipped int := 0; rt text; l text; r text;
  common text[] := ARRAY['text', 'character varying', 'name', 'bigint', 'integer', 'smallint',
                         'numeric', 'jsonb', 'timestamp with time zone', 'interval', 'xid8',
                         'boolean', 'double precision', 'oid'];
  body text;
BEGIN
  FOREACH sch IN ARRAY ARRAY['evil', 'public'] LOOP
    -- copies of pg_catalog's operators
    FOR o IN SELECT op.oprname, op.oprleft, op.oprright, op.oprresult
               FROM pg_catalog.pg_operator op
              WHERE op.oprnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
                AND op.oprname OPERATOR(pg_catalog.=) ANY (ARRAY[$op_list]::pg_catalog.text[])
    LOOP
      n := n + 1;
      BEGIN
        l := CASE WHEN o.oprleft OPERATOR(pg_catalog.<>) 0 THEN pg_catalog.format_type(o.oprleft, NULL) END;
        r := pg_catalog.format_type(o.oprright, NULL);
        body := pg_catalog.format(
          'BEGIN PERFORM evil.rec(%L); RETURN %s OPERATOR(pg_catalog.%s) \$2; END',
          pg_catalog.format('operator %s.%s(%s, %s)', sch, o.oprname, COALESCE(l, 'none'), r),
          CASE WHEN l IS NULL THEN '' ELSE '\$1' END, o.oprname);
        IF l IS NULL THEN
          body := pg_catalog.replace(body, '\$2', '\$1');
          EXECUTE pg_catalog.format('CREATE FUNCTION %I.hostile_op_%s(%s) RETURNS %s LANGUAGE plpgsql AS %L',
                                    sch, n, r, pg_catalog.format_type(o.oprresult, NULL), body);
          EXECUTE pg_catalog.format('CREATE OPERATOR %I.%s (RIGHTARG = %s, FUNCTION = %I.hostile_op_%s)',
                                    sch, o.oprname, r, sch, n);
        ELSE
          EXECUTE pg_catalog.format('CREATE FUNCTION %I.hostile_op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql AS %L',
                                    sch, n, l, r, pg_catalog.format_type(o.oprresult, NULL), body);
          EXECUTE pg_catalog.format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %I.hostile_op_%s)',
                                    sch, o.oprname, l, r, sch, n);
        END IF;
        made := made + 1;
      EXCEPTION WHEN others THEN skipped := skipped + 1;
      END;
    END LOOP;
    -- better matches for common pairs
    FOR o IN SELECT DISTINCT op.oprname FROM pg_catalog.pg_operator op
              WHERE op.oprname OPERATOR(pg_catalog.=) ANY (ARRAY[$op_list]::pg_catalog.text[])
    LOOP
      FOREACH l IN ARRAY common LOOP
        FOREACH r IN ARRAY common LOOP
          CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_operator x
                                 WHERE x.oprname OPERATOR(pg_catalog.=) o.oprname
                                   AND x.oprleft OPERATOR(pg_catalog.=) l::pg_catalog.regtype
                                   AND x.oprright OPERATOR(pg_catalog.=) r::pg_catalog.regtype);
          BEGIN
            EXECUTE pg_catalog.format('SELECT pg_catalog.pg_typeof(NULL::%s OPERATOR(pg_catalog.%s) NULL::%s)::pg_catalog.text',
                                      l, o.oprname, r) INTO rt;
          EXCEPTION WHEN others THEN CONTINUE;
          END;
          n := n + 1;
          BEGIN
            EXECUTE pg_catalog.format('CREATE FUNCTION %I.hostile_op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql AS %L',
              sch, n, l, r, rt,
              pg_catalog.format('BEGIN PERFORM evil.rec(%L); RETURN \$1 OPERATOR(pg_catalog.%s) \$2; END',
                                pg_catalog.format('operator %s.%s(%s, %s)', sch, o.oprname, l, r), o.oprname));
            EXECUTE pg_catalog.format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %I.hostile_op_%s)',
                                      sch, o.oprname, l, r, sch, n);
            made := made + 1;
          EXCEPTION WHEN others THEN skipped := skipped + 1;
          END;
        END LOOP;
      END LOOP;
    END LOOP;
  END LOOP;
  RAISE WARNING 'hostile operators: % made, % skipped', made, skipped;
END
\$do\$;

-- Functions: same name and signature as every pg_catalog/medallion function the SQL names.
DO \$do\$
DECLARE
  sch text; f record; n int := 0; made int := 0; skipped int := 0; args text; cl text; body text;
BEGIN
  FOREACH sch IN ARRAY ARRAY['evil', 'public'] LOOP
    FOR f IN SELECT p.oid, p.proname, p.pronargs, p.proretset, p.prokind, p.proargmodes,
                    n2.nspname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS ia,
                    pg_catalog.pg_get_function_result(p.oid) AS res
               FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n2 ON n2.oid OPERATOR(pg_catalog.=) p.pronamespace
              WHERE n2.nspname OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog', 'medallion'])
                AND p.proname OPERATOR(pg_catalog.=) ANY (ARRAY[$fn_list]::pg_catalog.text[])
    LOOP
      n := n + 1;
      BEGIN
        IF f.prokind OPERATOR(pg_catalog.=) 'a' THEN
          -- aggregates of one argument returning its type: a recording state function
          IF f.pronargs OPERATOR(pg_catalog.<>) 1 OR f.ia OPERATOR(pg_catalog.<>) f.res THEN
            skipped := skipped + 1; CONTINUE;
          END IF;
          EXECUTE pg_catalog.format('CREATE FUNCTION %I.hostile_fn_%s(%s, %s) RETURNS %s LANGUAGE plpgsql AS %L',
            sch, n, f.res, f.ia, f.res,
            pg_catalog.format('BEGIN PERFORM evil.rec(%L); RETURN COALESCE(\$2, \$1); END',
                              pg_catalog.format('aggregate %s.%s(%s)', sch, f.proname, f.ia)));
          EXECUTE pg_catalog.format('CREATE AGGREGATE %I.%I(%s) (SFUNC = %I.hostile_fn_%s, STYPE = %s)',
                                    sch, f.proname, f.ia, sch, n, f.res);
          made := made + 1;
          CONTINUE;
        END IF;
        IF f.prokind OPERATOR(pg_catalog.<>) 'f' OR f.proargmodes IS NOT NULL
           OR f.ia OPERATOR(pg_catalog.~) '"any"|internal|cstring|trigger' OR f.res OPERATOR(pg_catalog.~) 'trigger|internal' THEN
          skipped := skipped + 1; CONTINUE;
        END IF;
        SELECT pg_catalog.string_agg('\$' OPERATOR(pg_catalog.||) i, ', ' ORDER BY i) INTO cl
          FROM pg_catalog.generate_series(1, f.pronargs) i;
        cl := pg_catalog.format('%I.%I(%s)', f.nspname, f.proname, COALESCE(cl, ''));
        body := CASE WHEN f.proretset THEN pg_catalog.format('RETURN QUERY SELECT * FROM %s;', cl)
                     WHEN f.res OPERATOR(pg_catalog.=) 'void' THEN pg_catalog.format('PERFORM %s;', cl)
                     ELSE pg_catalog.format('RETURN %s;', cl) END;
        EXECUTE pg_catalog.format('CREATE FUNCTION %I.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
          sch, f.proname, f.ia, f.res,
          pg_catalog.format('BEGIN PERFORM evil.rec(%L); %s END',
                            pg_catalog.format('function %s.%s(%s)', sch, f.proname, f.ia), body));
        made := made + 1;
      EXCEPTION WHEN others THEN skipped := skipped + 1;
      END;
    END LOOP;
  END LOOP;
  RAISE WARNING 'hostile functions: % made, % skipped', made, skipped;
END
\$do\$;
});
ok($ok, 'mallory creates look-alike operators and functions in evil and public') or diag($err);
note($err) if $ok;

# Types: domains named like the real types, whose CHECK records the caller (in evil and
# public now; in pg_temp in each of mallory's and eve's sessions).
sub domains
{
	my ($sch) = @_;
	return join('', map {
		my $t = $_;
		"CREATE DOMAIN $sch.\"$t\" AS pg_catalog.\"$t\" CHECK (evil.rec('type $sch.$t'));\n"
	} @types);
}
($ok, $out, $err) = as_role('mallory', $off ? 'SELECT 1' : $PIN . domains('evil') . domains('public'));
ok($ok, 'mallory creates look-alike types in evil and public') or diag($err);
my $session = "SET client_min_messages = warning;\n" . ($off ? '' : $PIN . domains('pg_temp') . "RESET search_path;\n");

# The session really sees them: an unqualified cast and operator resolve to the look-alikes.
($ok, $out, $err) = as_role('mallory', $session . q{
SELECT '{}'::jsonb IS NOT NULL, 'a'::varchar = 'a'::varchar;
SELECT pg_catalog.count(*) FROM evil.calls WHERE cur OPERATOR(pg_catalog.=) 'mallory';
});
like($out, $off ? qr/^0/m : qr/^[1-9]/m, 'the look-alikes are live in mallory\'s sessions') or diag($err);
sq(q{TRUNCATE evil.calls});

# ---- everything, as mallory ------------------------------------------------------------
my %done;
sub step
{
	my ($role, $what, $sql, $must) = @_;
	my ($ok, $out, $err) = as_role($role, $session . $sql);
	$done{"$role: $what"} = $ok;
	if ($must)
	{
		ok($ok, "$role: $what works under the hostile search_path") or diag($err);
	}
	else
	{
		note("$role: $what: " . ($ok ? 'ok' : 'error: ' . join(' ', grep { /ERROR/ } split /\n/, $err)));
	}
	return $out;
}

# (the contract's own type names are the owner's to resolve: qualified, they are pg_catalog's)
my $cols = q{'{"id": {"type": "int", "required": true}, "v": "pg_catalog.text", "n": {"type": "numeric", "path": "n"},
  "t": {"type": "pg_catalog.timestamptz", "path": "t"}, "tag": {"type": "varchar(5)", "accepted": ["a", "b", "c"]},
  "doc": {"type": "pg_catalog.jsonb", "path": "doc"}}'};
step('mallory', 'create_bronze', q{SELECT medallion.create_bronze('m_ev', 'app', '1 day', '{secret}')}, 1);
step('mallory', 'ingest', q{SELECT medallion.ingest('bronze.m_ev',
  '[{"id": 1, "v": "a", "n": 1.5, "t": "2024-01-01 00:00:00+00", "tag": "a", "doc": {"k": 1}, "secret": "s"},
    {"id": 2, "v": "b", "tag": "b"}]')}, 1);
step('mallory', 'ingest_text', q~SELECT medallion.ingest_text('bronze.m_ev', E'{"id": 3, "v": "c"}\n{"id": 4, "v": "d"', 'ndjson')~, 1);
step('mallory', 'ingest_text csv', q{SELECT medallion.ingest_text('bronze.m_ev', E'id,v\n5,e\n', 'csv')}, 1);
step('mallory', 'create_silver', qq{SELECT medallion.create_silver('m_ev', 'bronze.m_ev', $cols, '{id}', NULL,
  '{"delete_when": "_raw ->> ''op'' = ''d''", "max_rows_per_run": 1000}')}, 1);
step('mallory', 'create_silver with order_by (tombstones)', qq{SELECT medallion.create_silver('m_ord', 'bronze.m_ev', $cols, '{id}', 'n',
  '{"delete_when": "_raw ->> ''op'' = ''d''"}')}, 1);
step('mallory', 'create_silver of a failing pipeline', q{SELECT medallion.create_silver('m_bad', 'bronze.m_ev', '{"id": "int", "v": "varchar"}', '{id}')}, 1);
step('mallory', 'create_silver with settings.search_path',
	q{SELECT medallion.create_silver('m_path', 'bronze.m_ev', '{"id": "int"}', '{id}', NULL,
	  '{"settings": {"search_path": "evil, pg_catalog"}}')});
ok(!$done{'mallory: create_silver with settings.search_path'},
	'options.settings does not take search_path (its allow-list)');
step('mallory', 'expect', q{SELECT medallion.expect('silver.m_ev', 'v_set', 'v IS NOT NULL', 'quarantine')}, 1);
step('mallory', 'expect (fail)', q{SELECT medallion.expect('silver.m_bad', 'never', 'id < 0', 'fail')}, 1);
step('mallory', 'run (succeeding)', q{SELECT medallion.run('silver.m_ev')}, 1);
step('mallory', 'run with order_by', q{SELECT medallion.run('silver.m_ord')}, 1);
step('mallory', 'ingest ill-typed and deleted rows', q{SELECT medallion.ingest('bronze.m_ev',
  '[{"id": "x"}, {"id": 6, "tag": "zzz"}, {"id": 7, "n": "NaNx"}, {"id": 1, "op": "d"}, {"id": 8}]')}, 1);
step('mallory', 'run (slow path, DLQ, quarantine, delete)', q{SELECT medallion.run('silver.m_ev')}, 1);
step('mallory', 'run with order_by (delete, tombstone)', q{SELECT medallion.run('silver.m_ord')}, 1);
step('mallory', 'run (strict)', q{SELECT medallion.run('silver.m_ev', strict => true)});
step('mallory', 'replay_dlq', q{SELECT medallion.replay_dlq('silver.m_ev')}, 1);
step('mallory', 'replay_dlq (ids)', q{SELECT medallion.replay_dlq('silver.m_ev', ARRAY(SELECT id FROM medallion.dlq LIMIT 1))});
step('mallory', 'run (failing)', q{SELECT medallion.run('silver.m_bad')});
is(sq(q{SELECT status FROM medallion.runs WHERE pipeline = 'silver.m_bad' ORDER BY run_id DESC LIMIT 1}),
	'failed', 'the failing run fails (recorded as failed)');
step('mallory', 'run (failing, strict)', q{SELECT medallion.run('silver.m_bad', strict => true)});
ok(!$done{'mallory: run (failing, strict)'}, 'the failing strict run raises');
step('mallory', 'pipeline_lag', q{SELECT medallion.pipeline_lag('silver.m_ev')}, 1);
step('mallory', 'alter_pipeline', q{SELECT medallion.alter_pipeline('silver.m_ev',
  '{"time_budget": "1 minute", "max_retries": 2, "retry_base": "1 second", "retry_cap": "2 seconds",
    "breaker_threshold": 3, "breaker_cooldown": "1 second", "freshness_sla": "1 hour", "steward": "m", "description": "d"}')}, 1);
step('mallory', 'alter_pipeline (bad value)', q{SELECT medallion.alter_pipeline('silver.m_ev', '{"max_retries": "many"}')});
step('mallory', 'alter_pipeline of the failing pipeline', q{SELECT medallion.alter_pipeline('silver.m_bad',
  '{"max_retries": 1, "retry_base": "1 second", "retry_cap": "1 second", "breaker_threshold": 2, "breaker_cooldown": "1 second"}')}, 1);
step('mallory', 'pause', q{SELECT medallion.pause('silver.m_ev')}, 1);
step('mallory', 'run while paused', q{SELECT medallion.run('silver.m_ev')});
step('mallory', 'resume', q{SELECT medallion.resume('silver.m_ev')}, 1);
step('mallory', 'run_all', q{SELECT medallion.run_all()});
step('mallory', 'capture', q{CREATE TABLE evil.m_src (id int PRIMARY KEY, v text);
  SELECT medallion.capture('evil.m_src');
  INSERT INTO evil.m_src VALUES (1, 'a'); UPDATE evil.m_src SET v = 'b'; DELETE FROM evil.m_src;}, 1);
step('mallory', 'ingest_file', qq{SELECT medallion.ingest_file('bronze.m_ev', '$ENV{MEDALLION_FIXTURES}/crm_contacts.ndjson')});
step('mallory', 'apply_retention', q{SELECT medallion.apply_retention()}, 1);

# the wave's surfaces: gold, contracts, backfills, the network, operability
step('mallory', 'create_gold', q{SELECT medallion.create_gold('m_daily',
  'SELECT t::date AS day, count(*) AS orders, sum(n) AS total FROM silver.m_ev WHERE t IS NOT NULL GROUP BY 1', 'day')}, 1);
step('mallory', 'run (gold)', q{SELECT medallion.run('gold.m_daily')}, 1);
# (an unqualified type, as users write them: a run resolves it with pg_temp last, so an
# operator's temporary type of that name is never the column's)
step('mallory', 'alter_contract', q{SELECT medallion.alter_contract('silver.m_ev',
  '{"note": {"type": "pg_catalog.text", "path": "v", "description": "a note"}, "day": {"type": "date", "path": "t"}}')}, 1);
step('mallory', 'alter_pipeline (description)', q{SELECT medallion.alter_pipeline('silver.m_ev', '{"description": "events"}')}, 1);
step('mallory', 'backfill_plan', q{SELECT count(*) FROM medallion.backfill_plan('silver.m_ev', '2024-01-01', current_date)}, 1);
step('mallory', 'backfill (silver)', q{SELECT medallion.backfill('silver.m_ev', '2024-01-01', current_date)}, 1);
step('mallory', 'backfill (gold)', q{SELECT medallion.backfill('gold.m_daily', '2024-01-01', '2024-01-02')}, 1);
step('mallory', 'backfill (blue_green)', q{SELECT medallion.backfill('silver.m_ev', '2024-01-01', current_date, 'blue_green')}, 1);
step('mallory', 'rollback', q{SELECT medallion.rollback('silver.m_ev')}, 1);
step('mallory', 'checklist', q{SELECT count(*) FROM medallion.checklist('silver.m_ev')}, 1);
step('mallory', 'lineage_graph', q{SELECT medallion.lineage_graph('dot')}, 1);
step('mallory', 'the status views', q{SELECT count(*) FROM medallion.status; SELECT count(*) FROM medallion.progress;
  SELECT count(*) FROM medallion.dlq_summary; SELECT count(*) FROM medallion.lineage;
  SELECT count(*) FROM medallion.run_details; SELECT count(*) FROM medallion.freshness}, 1);
step('mallory', 'dlq_correct', q{SELECT medallion.dlq_correct((SELECT min(id) FROM medallion.dlq
  WHERE pipeline = 'silver.m_ev' AND NOT reprocessed), '{"id": 30, "v": "fixed"}')}, 1);
step('mallory', 'dlq_discard', q{SELECT medallion.dlq_discard('silver.m_ev', NULL, 'hostile test')}, 1);
step('mallory', 'create_http_source', qq{SELECT medallion.create_http_source('bronze.m_ev', '$base/items',
  '{"headers": {"Authorization": "Bearer m"}}', 'm_api')}, 1);
step('mallory', 'run (HTTP source)', q{SELECT medallion.run('source.m_api')}, 1);
step('mallory', 'alter_pipeline (HTTP source)', q{SELECT medallion.alter_pipeline('source.m_api', '{"max_pages": 2}')}, 1);
step('mallory', 'create_export', qq{SELECT medallion.create_export('silver.m_ev', '$base/hook', '{}', 'm_out')}, 1);
step('mallory', 'run (export)', q{SELECT medallion.run('export.m_out')}, 1);
step('mallory', 'add_webhook', qq{SELECT medallion.add_webhook('$base/hook')}, 1);
step('mallory', 'drop_pipeline', q{SELECT medallion.create_silver('m_tmp', 'bronze.m_ev', '{"id": "int"}', '{id}');
  SELECT medallion.drop_pipeline('silver.m_tmp', true)}, 1);
# eve as an operator: the runs execute as mallory in eve's session, with eve's pg_temp types
step('mallory', 'grant_operator', q{SELECT medallion.grant_operator('silver.m_ev', 'eve');
  SELECT medallion.grant_operator('gold.m_daily', 'eve')}, 1);
step('mallory', 'ingest for the operator', q{SELECT medallion.ingest('bronze.m_ev',
  '[{"id": 40, "v": "o", "t": "2024-01-02 00:00:00+00", "doc": {"k": 2}}, {"id": 41, "v": "p", "tag": "c"}]')}, 1);
step('eve', 'run (as operator)', q{SELECT medallion.run('silver.m_ev')}, 1);
step('eve', 'run gold (as operator)', q{SELECT medallion.run('gold.m_daily')}, 1);
step('eve', 'replay_dlq (as operator)', q{SELECT medallion.replay_dlq('silver.m_ev')}, 1);
step('mallory', 'revoke_operator', q{SELECT medallion.revoke_operator('silver.m_ev', 'eve');
  SELECT medallion.revoke_operator('gold.m_daily', 'eve')}, 1);

# cron: the job runs as the pipeline's owner, never as a superuser (if trigger() from cron is
# made to only enqueue instead, this check changes with it)
step('mallory', 'schedule (cron)', q{SELECT medallion.schedule('silver.m_ord', '* * * * *')}, 1);
is(sq(q{SELECT string_agg(username, ',') FROM cron.job WHERE jobname LIKE 'medallion:%'}), 'mallory',
	'the pg_cron job of mallory\'s pipeline runs as mallory');
step('mallory', 'unschedule (cron)', q{SELECT medallion.unschedule('silver.m_ord')}, 1);

# scheduled runs in workers: one that succeeds, one that fails (retry, backoff, breaker)
step('mallory', 'ingest for the workers', q{SELECT medallion.ingest('bronze.m_ev', '[{"id": 20, "v": "w"}, {"id": 21, "v": "x"}]')}, 1);
step('mallory', 'schedule (interval)', q{SELECT medallion.schedule('silver.m_ev', '1 second')}, 1);
step('mallory', 'schedule the failing pipeline', q{SELECT medallion.schedule('silver.m_bad', '1 second')}, 1);
step('mallory', 'trigger', q{SELECT medallion.trigger('silver.m_bad')}, 1);
step('mallory', 'schedule (on_change)', q{SELECT medallion.schedule('silver.m_ord', 'on_change')}, 1);
step('mallory', 'ingest for on_change', q{SELECT medallion.ingest('bronze.m_ev', '{"id": 22, "v": "y"}')}, 1);
ok(poll(q{SELECT count(*) > 0 FROM medallion.runs
	WHERE pipeline = 'silver.m_ev' AND worker_pid IS NOT NULL AND status = 'succeeded'}),
	'a scheduled run of mallory\'s pipeline succeeds in a worker');
ok(poll(q{SELECT count(*) >= 2 FROM medallion.runs
	WHERE pipeline = 'silver.m_bad' AND worker_pid IS NOT NULL AND status = 'failed'}),
	'scheduled runs of the failing pipeline fail in workers (and are retried)');
ok(poll(q{SELECT count(*) > 0 FROM medallion.runs
	WHERE pipeline = 'silver.m_ord' AND worker_pid IS NOT NULL}),
	'an on_change run happens in a worker');
step('mallory', 'unschedule', q{SELECT medallion.unschedule('silver.m_ev'); SELECT medallion.unschedule('silver.m_bad');
  SELECT medallion.unschedule('silver.m_ord')}, 1);

# ---- everything, as a role with no grants ----------------------------------------------
for my $s (
	[ 'create_bronze', q{SELECT medallion.create_bronze('e_ev', 'app')} ],
	[ 'ingest', q{SELECT medallion.ingest('bronze.m_ev', '{"id": 99}')} ],
	[ 'ingest_text', q{SELECT medallion.ingest_text('bronze.m_ev', '{"id": 99}')} ],
	[ 'create_silver', q{SELECT medallion.create_silver('e_ev', 'bronze.m_ev', '{"id": "int"}', '{id}')} ],
	[ 'expect', q{SELECT medallion.expect('silver.m_ev', 'e', 'true', 'fail')} ],
	[ 'run', q{SELECT medallion.run('silver.m_ev')} ],
	[ 'run (no wait)', q{SELECT medallion.run('silver.m_ev', wait => false)} ],
	[ 'run_all', q{SELECT medallion.run_all()} ],
	[ 'replay_dlq', q{SELECT medallion.replay_dlq('silver.m_ev')} ],
	[ 'schedule', q{SELECT medallion.schedule('silver.m_ev', '1 second')} ],
	[ 'trigger', q{SELECT medallion.trigger('silver.m_ev')} ],
	[ 'unschedule', q{SELECT medallion.unschedule('silver.m_ev')} ],
	[ 'pause', q{SELECT medallion.pause('silver.m_ev')} ],
	[ 'resume', q{SELECT medallion.resume('silver.m_ev')} ],
	[ 'alter_pipeline', q{SELECT medallion.alter_pipeline('silver.m_ev', '{"max_retries": 1}')} ],
	[ 'pipeline_lag', q{SELECT medallion.pipeline_lag('silver.m_ev')} ],
	[ 'apply_retention', q{SELECT medallion.apply_retention()} ],
	[ 'capture', q{CREATE TEMP TABLE e_src (id int); SELECT medallion.capture('e_src')} ],
	[ 'silver_check', q{SELECT medallion.silver_check('{"id": 1}', '{"columns": {"id": "int"}, "unique_key": ["id"]}', false)} ],
	[ 'count_read', q{SELECT medallion.count_read()} ],
	[ 'count_insert', q{SELECT medallion.count_insert(1)} ],
	[ 'create_gold', q{SELECT medallion.create_gold('e_daily', 'SELECT 1 AS one')} ],
	[ 'alter_contract', q{SELECT medallion.alter_contract('silver.m_ev', '{"x": "text"}')} ],
	[ 'backfill', q{SELECT medallion.backfill('silver.m_ev', NULL, NULL)} ],
	[ 'backfill_plan', q{SELECT medallion.backfill_plan('silver.m_ev', NULL, NULL)} ],
	[ 'rollback', q{SELECT medallion.rollback('silver.m_ev')} ],
	[ 'run (gold)', q{SELECT medallion.run('gold.m_daily')} ],
	[ 'checklist', q{SELECT medallion.checklist('silver.m_ev')} ],
	[ 'lineage_graph', q{SELECT medallion.lineage_graph()} ],
	[ 'dlq_correct', q{SELECT medallion.dlq_correct(1, '{}')} ],
	[ 'dlq_discard', q{SELECT medallion.dlq_discard('silver.m_ev', NULL, 'eve')} ],
	[ 'grant_operator', q{SELECT medallion.grant_operator('silver.m_ev', 'eve')} ],
	[ 'drop_pipeline', q{SELECT medallion.drop_pipeline('silver.m_ev')} ],
	[ 'create_http_source', qq{SELECT medallion.create_http_source('bronze.m_ev', '$base/items')} ],
	[ 'create_export', qq{SELECT medallion.create_export('silver.m_ev', '$base/hook')} ],
	[ 'add_webhook', qq{SELECT medallion.add_webhook('$base/hook')} ],
	[ 'run (HTTP source)', q{SELECT medallion.run('source.m_api')} ],
	[ 'alter_pipeline (export)', q{SELECT medallion.alter_pipeline('export.m_out', '{"batch_size": 1}')} ],)
{
	step('eve', $s->[0], $s->[1]);
}

# ---- verdict ----------------------------------------------------------------------------
sleep 2;    # let the last workers finish
my $calls = sq(q{SELECT cur || ' (session ' || sess || ', ' || coalesce(backend, '?') || '): ' || what || ' x' || count(*)
	FROM evil.calls GROUP BY cur, sess, backend, what ORDER BY 1});
note("look-alikes called (current_user, session_user, backend: what x count):\n$calls");

# The server log also has the calls a rollback undid in evil.calls.
my $log = slurp_file($node->logfile);
my %logged;
while ($log =~ /hostile look-alike called: what=<([^>]*)> current_user=<([^>]*)> session_user=<([^>]*)> backend=<([^>]*)>/g)
{
	$logged{"$2 (session $3, $4): $1"}++;
}
delete $logged{$_} for grep { /%/ } keys %logged;    # the function's own text
my @bad = grep { !/^(mallory|eve) / && !/pg_cron launcher/ } sort keys %logged;
my @cron = grep { /pg_cron launcher/ && !/^(mallory|eve) / } sort keys %logged;
note("pg_cron's own launcher (not medallion's SQL) called:\n" . join("\n", @cron)) if @cron;
is(scalar(@bad), 0, 'no look-alike was ever called as another role (server log, rollbacks included)')
  or diag("called as another role:\n" . join("\n", map { "$_ x$logged{$_}" } @bad));
is( sq(q{SELECT count(*) FROM evil.calls WHERE cur NOT IN ('mallory', 'eve') AND backend IS DISTINCT FROM 'pg_cron launcher'}),
	'0', 'evil.calls: no call as another role');
my @eve_as_mallory = grep { /^mallory \(session eve/ } sort keys %logged;
is(scalar(@eve_as_mallory), 0, 'eve never ran mallory\'s look-alikes as mallory')
  or diag(join("\n", @eve_as_mallory));
is( sq(q{SELECT string_agg(rolname || ':' || (rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication), ',' ORDER BY rolname)
	FROM pg_roles WHERE rolname IN ('mallory', 'eve')}),
	'eve:false,mallory:false', 'neither mallory nor eve gained a role attribute');
is( sq(q{SELECT coalesce(string_agg(r.rolname || ' in ' || g.rolname, ', '), '') FROM pg_auth_members m
	JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid WHERE r.rolname IN ('mallory', 'eve')}),
	'', 'neither mallory nor eve became a member of any role');

# The lineage columns of every silver table are still there (a column typed with a pg_temp
# look-alike is dropped with it when the session that created the table ends).
is( sq(q{SELECT coalesce(string_agg(t || '.' || c, ', ' ORDER BY t, c), '')
	FROM unnest(ARRAY['silver.m_ev', 'silver.m_ord', 'silver.m_bad']) t,
	     unnest(ARRAY['_source_seq', '_batch_id', '_loaded_at', '_run_id']) c
	WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t::regclass AND a.attname = c
	                  AND NOT a.attisdropped)}),
	'', 'no column of a silver table was lost with a session\'s temporary type');

# What medallion created (constraints, defaults, column types, indexes, triggers, views) never
# depends on a look-alike: a bound look-alike would run as every later writer.
is( sq(q{SELECT coalesce(string_agg(pg_describe_object(d.classid, d.objid, d.objsubid) || ' -> '
	         || pg_describe_object(d.refclassid, d.refobjid, 0), E'\n' ORDER BY 1), '')
	FROM pg_depend d
	CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) o
	WHERE d.refclassid IN ('pg_operator'::regclass, 'pg_proc'::regclass, 'pg_type'::regclass)
	  AND o.schema IN ('bronze', 'silver', 'gold', 'medallion')
	  AND CASE d.refclassid
	        WHEN 'pg_operator'::regclass THEN (SELECT oprnamespace FROM pg_operator WHERE oid = d.refobjid)
	        WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = d.refobjid)
	        ELSE (SELECT typnamespace FROM pg_type WHERE oid = d.refobjid) END
	      NOT IN ('pg_catalog'::regnamespace, 'medallion'::regnamespace, 'bronze'::regnamespace,
	              'silver'::regnamespace, 'gold'::regnamespace)}),
	'', 'nothing medallion created depends on a look-alike operator, function or type');

note("runs:\n" . sq(q{SELECT run_id || ' ' || pipeline || ' ' || kind || ' ' || status || ' worker=' || coalesce(worker_pid::text, '-')
	|| ' ' || coalesce(error_message, '') FROM medallion.runs ORDER BY run_id}));

$node->stop;
done_testing();
