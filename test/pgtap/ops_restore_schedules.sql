-- After a restore into a cluster without the pipeline's pg_cron job: restore_schedules()
-- and schedule_job_state() report a cron schedule as missing with the exact call to run,
-- interval and on_change schedules as ok; the checklist's 'scheduled' item says so too.
-- (pg_cron is not in this database: re-creating the job is covered by test/t/077.)
BEGIN;
SELECT plan(6);

SELECT FROM medallion.create_bronze('rs_src', 'crm');
SELECT FROM medallion.create_silver('rs_cron', 'bronze.rs_src', '{"id": "int"}', ARRAY['id']);
SELECT FROM medallion.create_silver('rs_every', 'bronze.rs_src', '{"id": "int"}', ARRAY['id']);
-- what a restore brings back: the catalog rows, not pg_cron's job
UPDATE medallion.pipelines SET schedule = '*/5 * * * *', schedule_kind = 'cron' WHERE name = 'silver.rs_cron';
SELECT FROM medallion.schedule('silver.rs_every', '5 minutes');
-- pg_cron lives in another database of this cluster (cron.database_name)

SELECT is(
    (SELECT string_agg(concat_ws(' | ', pipeline, schedule, status, action), E'\n' ORDER BY pipeline) COLLATE "C"
     FROM medallion.restore_schedules() WHERE pipeline LIKE 'silver.rs_%'),
    format(E'silver.rs_cron | */5 * * * * | missing | connected to %I, run: SELECT cron.schedule_in_database(%L, ''*/5 * * * *'', %L, %L, %L)\n'
           'silver.rs_every | 00:05:00 | ok',
           current_setting('cron.database_name'), 'medallion:silver.rs_cron@' || current_database(),
           'SELECT medallion.trigger(''silver.rs_cron'')', current_database(), current_user) COLLATE "C",
    'a cron schedule without its job is reported with the exact call; an interval schedule is ok');
SELECT is((SELECT status FROM medallion.schedule_job_state('silver.rs_cron')), 'missing', 'schedule_job_state tells the same');
SELECT is((SELECT status FROM medallion.schedule_job_state('silver.rs_every')), 'ok', 'an interval needs no job');
SELECT ok(NOT (SELECT ok FROM medallion.checklist('silver.rs_cron') WHERE item = 'scheduled'),
          'the checklist''s scheduled item fails while the job is missing');
SELECT matches((SELECT hint FROM medallion.checklist('silver.rs_cron') WHERE item = 'scheduled'),
               'restore_schedules\(\).*cron\.schedule_in_database\(''medallion:silver\.rs_cron@', 'and its hint gives the calls');
SELECT ok((SELECT ok FROM medallion.checklist('silver.rs_every') WHERE item = 'scheduled'), 'an interval schedule is ok');

SELECT * FROM finish();
ROLLBACK;
