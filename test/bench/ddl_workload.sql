-- A broad DDL workload that has nothing to do with medallion: tables, partitions, types,
-- views, functions, triggers, another extension, temporary tables, rolled-back transactions,
-- failing commands, an unprivileged role's DDL in its own schema.  test/t/070_ddl_watch.pl
-- runs it in a database with medallion (and pipelines) and in one without, and requires the
-- same output and the same catalog; test/bench/ddl_watch.sh times it in both.
-- Needs a role ddl_user with CREATE on the database.  Repeatable: it cleans up first.
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS w CASCADE;
DROP SCHEMA IF EXISTS wu CASCADE;
RESET client_min_messages;
CREATE SCHEMA w;

-- tables, indexes, constraints, column changes
CREATE TABLE w.t1 (id int PRIMARY KEY, a text, b numeric(8,2), c varchar(10));
CREATE INDEX ON w.t1 (a);
ALTER TABLE w.t1 ADD COLUMN d date;
ALTER TABLE w.t1 ALTER COLUMN b TYPE numeric(12,2);
ALTER TABLE w.t1 ALTER COLUMN c TYPE varchar(5);
ALTER TABLE w.t1 RENAME COLUMN a TO a2;
ALTER TABLE w.t1 DROP COLUMN d;
ALTER TABLE w.t1 ADD CONSTRAINT b_pos CHECK (b > 0);
ALTER TABLE w.t1 ALTER COLUMN c SET NOT NULL;
INSERT INTO w.t1 VALUES (1, 'x', 1.5, 'abc'), (2, 'y', 2.5, 'de');
ALTER TABLE w.t1 ALTER COLUMN c TYPE varchar(2);  -- fails: 'abc' is too long
CREATE TABLE w.t2 (id int REFERENCES w.t1, v jsonb);
ALTER TABLE w.t2 RENAME TO t3;
ALTER TABLE w.t3 SET SCHEMA public;
ALTER TABLE public.t3 SET SCHEMA w;
CREATE UNLOGGED TABLE w.t4 (x int);
ALTER TABLE w.t4 SET LOGGED;
DROP TABLE w.t4;

-- partitions
CREATE TABLE w.p (k date NOT NULL, v int) PARTITION BY RANGE (k);
CREATE TABLE w.p_2024 PARTITION OF w.p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE w.p_2025 (k date NOT NULL, v int);
ALTER TABLE w.p ATTACH PARTITION w.p_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO w.p VALUES ('2024-05-01', 1), ('2025-05-01', 2);
ALTER TABLE w.p DETACH PARTITION w.p_2024;
DROP TABLE w.p_2024;
ALTER TABLE w.p ADD COLUMN note text;

-- types
CREATE TYPE w.mood AS ENUM ('sad', 'ok');
ALTER TYPE w.mood ADD VALUE 'happy';
CREATE TYPE w.pair AS (x int, y int);
CREATE DOMAIN w.posint AS int CHECK (VALUE > 0);
CREATE TABLE w.t5 (m w.mood, p w.pair, n w.posint);
ALTER DOMAIN w.posint ADD CONSTRAINT small CHECK (VALUE < 1000);
DROP DOMAIN w.posint CASCADE;
DROP TYPE w.pair CASCADE;

-- views, functions, triggers
CREATE VIEW w.v1 AS SELECT id, a2 FROM w.t1;
CREATE MATERIALIZED VIEW w.mv AS SELECT count(*) AS n FROM w.t1;
REFRESH MATERIALIZED VIEW w.mv;
CREATE FUNCTION w.f(i int) RETURNS int LANGUAGE sql AS 'SELECT i + 1';
CREATE FUNCTION w.trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.v := NEW.v + 1; RETURN NEW; END$$;
CREATE TRIGGER t BEFORE INSERT ON w.p_2025 FOR EACH ROW EXECUTE FUNCTION w.trg();
CREATE PROCEDURE w.pr() LANGUAGE sql AS 'SELECT 1';
ALTER FUNCTION w.f(int) RENAME TO f2;
DROP VIEW w.v1;
DROP MATERIALIZED VIEW w.mv;
CREATE SEQUENCE w.s;
ALTER SEQUENCE w.s RESTART 10;

-- another extension
CREATE EXTENSION citext SCHEMA w;
CREATE TABLE w.t6 (e w.citext);
DROP EXTENSION citext CASCADE;

-- temporary tables
CREATE TEMP TABLE tmp1 (x int);
ALTER TABLE tmp1 ADD COLUMN y int;
DROP TABLE tmp1;

-- rolled-back transactions
BEGIN;
CREATE TABLE w.gone (x int);
ALTER TABLE w.t1 DROP COLUMN b;
ROLLBACK;
BEGIN;
ALTER TABLE w.t1 ADD COLUMN kept int;
SAVEPOINT s;
DROP TABLE w.t3;
ROLLBACK TO SAVEPOINT s;
COMMIT;

-- a command that fails
ALTER TABLE w.t1 ADD COLUMN kept int;

-- an unprivileged role's DDL in its own schema
SET ROLE ddl_user;
CREATE SCHEMA wu;
CREATE TABLE wu.mine (id int PRIMARY KEY, v text);
ALTER TABLE wu.mine ADD COLUMN w int;
ALTER TABLE wu.mine ALTER COLUMN w TYPE bigint;
ALTER TABLE wu.mine RENAME COLUMN v TO v2;
CREATE VIEW wu.vm AS SELECT * FROM wu.mine;
DROP VIEW wu.vm;
ALTER TABLE wu.mine DROP COLUMN w;
CREATE TABLE wu.other (x int);
DROP TABLE wu.other;
RESET ROLE;

-- what is left
SELECT c.relname, c.relkind, pg_catalog.array_to_string(array_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod)
       ORDER BY a.attnum), ', ') AS columns
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname IN ('w', 'wu') GROUP BY 1, 2 ORDER BY 1;
SELECT * FROM w.p ORDER BY k;
SELECT * FROM w.t1 ORDER BY id;
