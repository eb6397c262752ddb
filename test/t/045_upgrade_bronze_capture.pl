# ALTER EXTENSION medallion UPDATE from 0.1.0, for bronze and capture: captures made by
# 0.1.0 are registered (their writes keep landing), a forged capture trigger stays refused,
# partition CHECKs bound to look-alike operators are re-created qualified, and tables and
# contracts hashing under 0.1.0 ("hash", unkeyed SHA-256) become "hash_v1" and keep
# producing the same values; the database gets its pseudonymisation key.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $node = medallion_node('upgrade_bronze', preload => '', conf => "log_min_messages = warning\n");
my $db = 'postgres';

sq(q{CREATE EXTENSION medallion VERSION '0.1.0'});

# What 0.1.0 made: a hashing bronze table, a capture (its triggers name the bronze table),
# a silver contract with pii "hash", and a partition CHECK bound to a look-alike operator.
sq(q{
SELECT medallion.create_bronze('people_h', 'hr', '90 days', '{ssn}', '{"redact_mode": "hash"}');
CREATE TABLE public.acct (id int PRIMARY KEY, bal int);
SELECT medallion.create_bronze('acct', 'capture:public.acct');
CREATE TRIGGER medallion_capture AFTER INSERT OR UPDATE OR DELETE ON public.acct
    FOR EACH ROW EXECUTE FUNCTION medallion.capture_change('acct');
CREATE TRIGGER medallion_capture_truncate BEFORE TRUNCATE ON public.acct
    FOR EACH STATEMENT EXECUTE FUNCTION medallion.capture_change('acct');
INSERT INTO medallion.pipelines (name, layer, relname, owner, source, definition)
VALUES ('silver.people', 'silver', 'people', 'postgres', 'bronze.people_h',
        '{"columns": {"id": "int", "ssn": {"type": "text", "pii": "hash"}, "nick": {"type": "text", "pii": "mask"}},
          "unique_key": ["id"]}');
CREATE ROLE mallory NOLOGIN;
CREATE SCHEMA evil AUTHORIZATION mallory;
CREATE TABLE evil.forged (id int, bal int);
ALTER TABLE evil.forged OWNER TO mallory;
CREATE TRIGGER medallion_capture AFTER INSERT ON evil.forged
    FOR EACH ROW EXECUTE FUNCTION medallion.capture_change('acct');
CREATE TABLE public.calls (who name);
GRANT INSERT ON public.calls TO PUBLIC;
CREATE FUNCTION evil.ge(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS
$$ INSERT INTO public.calls VALUES (current_user); SELECT pg_catalog.timestamptz_ge($1, $2) $$;
CREATE OPERATOR evil.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ge);
});
my $today = sq(q{SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')});
my $lo = sq(q{SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' 00:00:00+00'});
my $hi = sq(q{SELECT to_char((now() AT TIME ZONE 'UTC')::date + 1, 'YYYY-MM-DD') || ' 00:00:00+00'});
sq(qq{ALTER TABLE bronze.people_h_p$today DROP CONSTRAINT medallion_bound,
      ADD CONSTRAINT medallion_bound CHECK (_ingested_at OPERATOR(evil.>=) '$lo' AND _ingested_at < '$hi')});

my ($rc, $out, $err) = $node->psql($db, q{ALTER EXTENSION medallion UPDATE TO '0.2.0'});
is($rc, 0, 'the update from 0.1.0 succeeds') or diag $err;

is(sq(q{SELECT string_agg(source::text || '->' || bronze::text, ',' ORDER BY source::text) FROM medallion.captures}),
	'acct->bronze.acct', 'the registry is filled from the capture triggers (a forged one left out)');
($rc, $out, $err) = $node->psql($db, q{INSERT INTO public.acct VALUES (1, 10)});
is($rc, 0, 'a write to a table captured under 0.1.0 still works') or diag $err;
is(sq(q{SELECT _raw->'data' FROM bronze.acct}), '{"id": 1, "bal": 10}', 'and is captured');
($rc, $out, $err) = $node->psql($db, q{INSERT INTO evil.forged VALUES (2, 20)});
like($err, qr/refuses to capture/, 'a forged trigger of a role that may not write the bronze table is still refused');

is(sq(q{SELECT options->>'redact_mode' FROM medallion.pipelines WHERE name = 'bronze.people_h'}), 'hash_v1',
	'a bronze table hashing under 0.1.0 is now "hash_v1"');
is(sq(q{SELECT convert_from(substr(tgargs, 1, 7), 'UTF8') FROM pg_trigger
         WHERE tgrelid = 'bronze.people_h'::regclass AND tgname = 'medallion_redact'}), 'hash_v1',
	'so is its redact trigger');
sq(q{SELECT medallion.ingest('bronze.people_h', '{"id": 1, "ssn": "123456789"}')});
is(sq(q{SELECT _raw->>'ssn' = encode(sha256(convert_to('123456789', 'UTF8')), 'hex') FROM bronze.people_h}), 't',
	'it produces the same unkeyed SHA-256 values as before the update');
is(sq(q{SELECT count(*) FROM public.calls}), '0', 'the look-alike operator did not run');
is(sq(q{SELECT count(*) FROM pg_depend d JOIN pg_operator o ON o.oid = d.refobjid
         WHERE d.classid = 'pg_constraint'::regclass AND d.refclassid = 'pg_operator'::regclass
           AND o.oprnamespace = 'evil'::regnamespace}), '0',
	'the partition CHECK bound to it was re-created with pg_catalog\'s operators');
is(sq(qq{SELECT count(*) FROM pg_constraint WHERE conrelid = 'bronze.people_h_p$today'::regclass
          AND conname = 'medallion_bound'}), '1', 'the CHECK is still there');

is(sq(q{SELECT definition->'columns'->'ssn'->>'pii' || ',' || (definition->'columns'->'nick'->>'pii')
         FROM medallion.pipelines WHERE name = 'silver.people'}), 'hash_v1,mask',
	'a silver contract hashing under 0.1.0 says "hash_v1", other columns untouched');
is(sq(q{SELECT count(*) FROM medallion.pseudonym_keys}), '1', 'the database has a pseudonymisation key');

$node->stop;
done_testing();
