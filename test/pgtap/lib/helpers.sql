-- Helpers shared by the pgTAP files, installed once in the test database by test/run
-- (test/pgtap/*.sql are the tests; this folder is not one of them).
CREATE SCHEMA tap;

-- Runs a pipeline and returns its medallion.runs row.
CREATE FUNCTION tap.run_row(p text) RETURNS SETOF medallion.runs LANGUAGE plpgsql AS $$
DECLARE
    id bigint := medallion.run(p);
BEGIN
    RETURN QUERY SELECT * FROM medallion.runs WHERE run_id = id;
END $$;
GRANT USAGE ON SCHEMA tap TO PUBLIC;
