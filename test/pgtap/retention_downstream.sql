-- medallion.apply_retention() never drops a bronze partition that still holds rows a
-- silver pipeline has not processed: it keeps it and warns; after the run it drops it.
BEGIN;
SELECT plan(7);

SELECT FROM medallion.create_bronze('events', 'web', '30 days');
CREATE TABLE bronze.events_p20200101 (LIKE bronze.events INCLUDING DEFAULTS);
ALTER TABLE bronze.events ATTACH PARTITION bronze.events_p20200101
    FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-01-02 00:00:00+00');
INSERT INTO bronze.events (_raw, _ingested_at) VALUES ('{"id": 1, "v": "old"}', '2020-01-01 12:00:00+00');

SELECT FROM medallion.create_silver('events', 'bronze.events',
    '{"id": {"type": "int", "required": true}, "v": "text"}', '{id}');

SELECT is(medallion.apply_retention(), 0::bigint, 'nothing dropped before the pipeline ran');
SELECT ok(to_regclass('bronze.events_p20200101') IS NOT NULL, 'the old partition is still there');

SELECT ok(medallion.run('silver.events') IS NOT NULL, 'the pipeline runs');
SELECT is((SELECT v FROM silver.events WHERE id = 1), 'old', 'and loads the old row');

SELECT is(medallion.apply_retention(), 1::bigint, 'once processed, the partition is dropped');
SELECT ok(to_regclass('bronze.events_p20200101') IS NULL, 'the old partition is gone');
SELECT is((SELECT v FROM silver.events WHERE id = 1), 'old', 'silver keeps the row');

SELECT * FROM finish();
ROLLBACK;
