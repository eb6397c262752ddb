-- medallion.run(pipeline): a run returns its id and leaves a medallion.runs row; it reads
-- the bronze rows not processed yet (an empty window is a run too), deduplicates by key
-- (latest order_by wins; on a tie, or without order_by, the later arrival wins), never lets
-- an older version overwrite a newer one, and changes nothing when rerun. Every row read
-- lands in exactly one bucket. run() works in the caller's transaction: rows this
-- transaction ingests after a run are read by the next run, once.
BEGIN;
SELECT plan(36);

SELECT FROM medallion.create_bronze('events', 'app');
SELECT FROM medallion.create_silver('latest', 'bronze.events',
    '{"id": "bigint", "v": "int", "name": "text"}', ARRAY['id'], 'v');
SELECT FROM medallion.create_silver('arrival', 'bronze.events',
    '{"id": "bigint", "v": "int", "name": "text"}', ARRAY['id']);

-- counts of one run, as (read, inserted, updated, unchanged, dlq, quarantined, dropped)
CREATE FUNCTION pg_temp.counts(id bigint) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s/%s/%s/%s/%s/%s/%s', rows_read, rows_inserted, rows_updated, rows_unchanged,
                  rows_dlq, rows_quarantined, rows_dropped)
    FROM medallion.runs WHERE run_id = id
$$;

-- An empty window ----------------------------------------------------------------------------

SELECT ok(medallion.run('silver.latest') > 0, 'run() returns a run id');
SELECT results_eq(
    $$SELECT pipeline, kind, status, rows_read, error_class, finished_at IS NOT NULL
      FROM medallion.runs WHERE run_id = (SELECT max(run_id) FROM medallion.runs)$$,
    $$VALUES ('silver.latest', 'incremental', 'succeeded', 0::bigint, NULL::text, true)$$,
    'an empty window is a succeeded run with zero counts');
SELECT is(pg_temp.counts((SELECT max(run_id) FROM medallion.runs)), '0/0/0/0/0/0/0', 'every count is zero');

-- Dedup within a window ----------------------------------------------------------------------

SELECT FROM medallion.ingest('bronze.events',
    '[{"id": 1, "v": 1, "name": "a1"}, {"id": 1, "v": 3, "name": "a3"}, {"id": 1, "v": 2, "name": "a2"},
      {"id": 2, "v": 5, "name": "b-first"}, {"id": 2, "v": 5, "name": "b-second"},
      {"id": 3, "v": 1, "name": "c"}]');

SELECT is(pg_temp.counts(medallion.run('silver.latest')), '6/3/0/3/0/0/0',
          'six rows read: three keys inserted, three older versions unchanged');
SELECT results_eq($$SELECT id, v, name FROM silver.latest ORDER BY id$$,
                  $$VALUES (1::bigint, 3, 'a3'), (2, 5, 'b-second'), (3, 1, 'c')$$,
                  'with order_by the latest version wins, and on a tie the later arrival');
SELECT is(pg_temp.counts(medallion.run('silver.arrival')), '6/3/0/3/0/0/0',
          'the second pipeline over the same bronze table reads the same rows');
SELECT results_eq($$SELECT id, v, name FROM silver.arrival ORDER BY id$$,
                  $$VALUES (1::bigint, 2, 'a2'), (2, 5, 'b-second'), (3, 1, 'c')$$,
                  'without order_by the later arrival wins');
SELECT results_eq($$SELECT _source_seq FROM silver.latest WHERE id = 1$$,
                  $$SELECT _seq FROM bronze.events WHERE _raw->>'name' = 'a3'$$,
                  '_source_seq names the winning bronze row');

-- Rerun --------------------------------------------------------------------------------------

CREATE TEMP TABLE before_rerun AS SELECT * FROM silver.latest;
SELECT is(pg_temp.counts(medallion.run('silver.latest')), '0/0/0/0/0/0/0', 'a rerun reads nothing');
SELECT set_eq($$SELECT * FROM silver.latest$$, $$SELECT * FROM before_rerun$$, 'and changes nothing');

-- Newer versions, and a late-arriving older one -------------------------------------------

SELECT FROM medallion.ingest('bronze.events',
    '[{"id": 1, "v": 2, "name": "a2-late"}, {"id": 3, "v": 7, "name": "c7"}, {"id": 4, "v": 1, "name": "d"}]');
SELECT is(pg_temp.counts(medallion.run('silver.latest')), '3/1/1/1/0/0/0',
          'a late older version is unchanged, a newer one updates, a new key inserts');
SELECT results_eq($$SELECT id, v, name FROM silver.latest ORDER BY id$$,
                  $$VALUES (1::bigint, 3, 'a3'), (2, 5, 'b-second'), (3, 7, 'c7'), (4, 1, 'd')$$,
                  'a late-arriving older version never overwrites a newer one');
SELECT is(pg_temp.counts(medallion.run('silver.arrival')), '3/1/2/0/0/0/0',
          'without order_by every later arrival is newer');
SELECT results_eq($$SELECT id, v, name FROM silver.arrival ORDER BY id$$,
                  $$VALUES (1::bigint, 2, 'a2-late'), (2, 5, 'b-second'), (3, 7, 'c7'), (4, 1, 'd')$$,
                  'without order_by the later arrival overwrites');
SELECT is((SELECT _run_id FROM silver.latest WHERE id = 3), (SELECT max(run_id) FROM medallion.runs WHERE pipeline = 'silver.latest'),
          'an updated row carries the run that wrote it');
SELECT is((SELECT _run_id FROM silver.latest WHERE id = 2), (SELECT min(run_id) + 1 FROM medallion.runs WHERE pipeline = 'silver.latest'),
          'an unchanged row keeps the run that wrote it');

-- An older version in the same window as a newer one, both newer than silver -----------------

SELECT FROM medallion.ingest('bronze.events',
    '[{"id": 2, "v": 9, "name": "b9"}, {"id": 2, "v": 8, "name": "b8"}]');
SELECT is(pg_temp.counts(medallion.run('silver.latest')), '2/0/1/1/0/0/0', 'one update, one unchanged');
SELECT is((SELECT name FROM silver.latest WHERE id = 2), 'b9', 'the newest of the window wins');

-- Same payload again: a new bronze row, so a later arrival -----------------------------------

SELECT FROM medallion.ingest('bronze.events', '[{"id": 4, "v": 1, "name": "d"}]');
SELECT is(pg_temp.counts(medallion.run('silver.latest')), '1/0/1/0/0/0/0',
          'the same version arriving again is a later arrival (a tie on order_by)');
SELECT is((SELECT _source_seq FROM silver.latest WHERE id = 4), (SELECT max(_seq) FROM bronze.events),
          'and now names the later bronze row');

-- Runs in one transaction: what the transaction adds after a run comes in the next run ------

SELECT FROM medallion.ingest('bronze.events', '[{"id": 5, "v": 1, "name": "e"}]');
SELECT is(pg_temp.counts(medallion.run('silver.latest')), '1/1/0/0/0/0/0', 'a run reads the row ingested before it');
SELECT FROM medallion.ingest('bronze.events', '[{"id": 6, "v": 1, "name": "f"}]');
SELECT is(pg_temp.counts(medallion.run('silver.latest')), '1/1/0/0/0/0/0',
          'the next run reads only the row ingested since, in the same transaction');
SELECT is(pg_temp.counts(medallion.run('silver.latest')), '0/0/0/0/0/0/0', 'and then nothing');
SELECT is((SELECT count(*)::int FROM silver.latest), 6, 'silver has every key');
SELECT is(pg_temp.counts(medallion.run('silver.arrival')), '5/2/2/1/0/0/0',
          'the other pipeline catches up with everything in one run');
SELECT set_eq($$SELECT id, name FROM silver.latest WHERE id NOT IN (1, 2)$$, $$SELECT id, name FROM silver.arrival WHERE id NOT IN (1, 2)$$,
              'both pipelines agree where versions arrived in order');

-- run_all ------------------------------------------------------------------------------------

SELECT FROM medallion.ingest('bronze.events', '[{"id": 7, "v": 1, "name": "g"}]');
SELECT is((SELECT count(*)::int FROM medallion.run_all()), 2, 'run_all runs every active silver pipeline');
SELECT results_eq($$SELECT pipeline, rows_read FROM medallion.runs WHERE run_id > (SELECT max(run_id) - 2 FROM medallion.runs) ORDER BY pipeline$$,
                  $$VALUES ('silver.arrival', 1::bigint), ('silver.latest', 1::bigint)$$,
                  'each reads the new row');

-- Refusals -----------------------------------------------------------------------------------

SELECT throws_ok($$SELECT medallion.run('silver.nosuch')$$, '42704', NULL, 'an unknown pipeline is refused (42704)');
SELECT throws_ok($$SELECT medallion.run(NULL)$$, '22004', NULL, 'a NULL pipeline is refused (22004)');
SELECT throws_ok($$SELECT medallion.run('bronze.events')$$, '0A000', NULL, 'a bronze pipeline is not run');
SELECT is((SELECT count(*)::int FROM medallion.runs WHERE pipeline = 'bronze.events'), 0, 'and leaves no run row');

-- The invariant, on every run of this file ------------------------------------------------

SELECT is((SELECT count(*)::int FROM medallion.runs WHERE pipeline IN ('silver.latest', 'silver.arrival')), 14,
          'every run left a row');
SELECT is_empty(
    $$SELECT run_id FROM medallion.runs
      WHERE pipeline IN ('silver.latest', 'silver.arrival')
        AND (status <> 'succeeded'
             OR rows_read <> rows_inserted + rows_updated + rows_unchanged + rows_dlq + rows_quarantined + rows_dropped)$$,
    'every run succeeded and rows_read = inserted + updated + unchanged + dlq + quarantined + dropped');
SELECT is((SELECT sum(rows_read)::int FROM medallion.runs WHERE pipeline = 'silver.latest'),
          (SELECT count(*)::int FROM bronze.events), 'one pipeline read each bronze row exactly once');
SELECT is((SELECT sum(rows_read)::int FROM medallion.runs WHERE pipeline = 'silver.arrival'),
          (SELECT count(*)::int FROM bronze.events), 'so did the other');

SELECT * FROM finish();
ROLLBACK;
