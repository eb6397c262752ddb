-- medallion.create_gold(name, query, partition_by, options): the query is validated as the
-- creator before anything is created (a bad query, partition_by, option, upstream or privilege
-- leaves nothing behind); gold.<name> has exactly the query's output columns; its upstreams
-- come from the query's range table, with the column each maps the partitions through
-- (docs/architecture.md, "Gold models").
BEGIN;
SELECT plan(42);

CREATE ROLE medallion_tap_gold_owner NOLOGIN;
CREATE ROLE medallion_tap_gold_nocreate NOLOGIN;
GRANT CREATE ON SCHEMA bronze, silver, gold TO medallion_tap_gold_owner;

SET ROLE medallion_tap_gold_owner;
SELECT FROM medallion.create_bronze('g_orders_raw', 'shop');
SELECT FROM medallion.create_silver('g_orders', 'bronze.g_orders_raw',
    '{"id": "bigint", "channel": "text", "amount": "numeric", "ordered_at": "timestamptz", "order_day": "date"}',
    ARRAY['id'], 'ordered_at');
SELECT FROM medallion.create_silver('g_customers', 'bronze.g_orders_raw',
    '{"id": "bigint", "signup_day": "date"}', ARRAY['id']);
RESET ROLE;
CREATE TABLE public.g_calendar (day date PRIMARY KEY);
GRANT SELECT ON public.g_calendar TO medallion_tap_gold_owner;

-- nothing of a failed creation is left behind
CREATE FUNCTION pg_temp.nothing_named(n text) RETURNS boolean LANGUAGE sql AS $$
    SELECT NOT EXISTS (SELECT FROM medallion.pipelines WHERE name = 'gold.' || n)
       AND to_regclass(format('gold.%I', n)) IS NULL
       AND NOT EXISTS (SELECT FROM medallion.dependencies WHERE pipeline = 'gold.' || n)
$$;

SET ROLE medallion_tap_gold_owner;

-- Bad queries ---------------------------------------------------------------------------------

SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELEC 1')$$, '42601', NULL,
                 'a query that does not parse is refused (42601)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT 1 AS a; SELECT 2 AS b')$$, '22023', NULL,
                 'two statements are refused (22023)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'DELETE FROM silver.g_orders')$$, '22023', NULL,
                 'a statement other than SELECT is refused (22023)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'WITH d AS (DELETE FROM silver.g_orders RETURNING id) SELECT id FROM d')$$,
                 '22023', NULL, 'a data-modifying WITH is refused (22023)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT id FROM silver.g_orders FOR UPDATE')$$, '22023', NULL,
                 'a query that locks rows is refused (22023)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT * FROM silver.no_such_table')$$, '42P01', NULL,
                 'an unknown upstream is refused (42P01)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT no_such_column FROM silver.g_orders')$$, '42703', NULL,
                 'an unknown column is refused (42703)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT id, id FROM silver.g_orders')$$, '42701',
                 'query has two output columns named "id"', 'two output columns of one name are refused (42701)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT ROW(1, 2) AS r')$$, '42P16', NULL,
                 'an output column of a pseudo-type is refused (42P16)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT 1/0 AS x FROM silver.g_orders WHERE false')$$, '22012', NULL,
                 'a query that fails while planning is refused');

-- Bad partition_by and options ------------------------------------------------------------

SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT order_day, count(*) AS n FROM silver.g_orders GROUP BY 1', 'day')$$,
                 '42703', NULL, 'partition_by must be an output column (42703)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT channel, count(*) AS n FROM silver.g_orders GROUP BY 1', 'channel')$$,
                 '42804', NULL, 'partition_by must be a date, timestamp or timestamptz column (42804)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT order_day FROM silver.g_orders', 'order_day', '{"colour": "red"}')$$,
                 '22023', 'unrecognized option "colour"', 'an unknown option is refused (22023)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT order_day FROM silver.g_orders', 'order_day', '{"granularity": "week"}')$$,
                 '22023', NULL, 'granularity is day or month (22023)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT order_day FROM silver.g_orders', NULL, '{"granularity": "month"}')$$,
                 '22023', NULL, 'partition options need partition_by (22023)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT order_day FROM silver.g_orders', 'order_day', '{"lookback": "soon"}')$$,
                 '22007', NULL, 'lookback must be an interval');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT order_day FROM silver.g_orders', 'order_day', '{"settings": {"search_path": "public"}}')$$,
                 '22023', NULL, 'settings take the allow-list of silver''s (22023)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT order_day FROM silver.g_orders', 'order_day',
                   '{"partition_sources": {"silver.g_customers": "signup_day"}}')$$,
                 '42P01', NULL, 'partition_sources naming a table the query does not read is refused (42P01)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT order_day FROM silver.g_orders', 'order_day',
                   '{"partition_sources": {"silver.g_orders": "nope"}}')$$,
                 '42703', NULL, 'partition_sources naming a missing column is refused (42703)');
SELECT throws_ok($$SELECT medallion.create_gold('bad', 'SELECT order_day FROM silver.g_orders', 'order_day',
                   '{"partition_sources": {"silver.g_orders": "channel"}}')$$,
                 '42804', NULL, 'partition_sources naming a column that is not a date/time is refused (42804)');
SELECT throws_ok($$SELECT medallion.create_gold(repeat('x', 54), 'SELECT order_day FROM silver.g_orders', 'order_day')$$,
                 '42622', NULL, 'a partitioned model''s name leaves room for its partitions'' suffix (42622)');
SELECT ok(pg_temp.nothing_named('bad'), 'none of the failed calls left a table, a pipeline or an edge');

-- Privileges ------------------------------------------------------------------------------------

RESET ROLE;
SET ROLE medallion_tap_gold_nocreate;
SELECT throws_ok($$SELECT medallion.create_gold('nocreate', 'SELECT 1 AS one')$$, '42501', NULL,
                 'creating a model needs CREATE on schema gold (42501)');
RESET ROLE;
GRANT CREATE ON SCHEMA gold TO medallion_tap_gold_nocreate;
SET ROLE medallion_tap_gold_nocreate;
SELECT throws_ok($$SELECT medallion.create_gold('nocreate', 'SELECT id FROM silver.g_orders')$$, '42501', NULL,
                 'and SELECT on every upstream (42501)');
SELECT ok(pg_temp.nothing_named('nocreate'), 'nothing was created');
RESET ROLE;
SET ROLE medallion_tap_gold_owner;

-- A model -------------------------------------------------------------------------------------

SELECT is(medallion.create_gold('g_daily',
    $$SELECT date(o.ordered_at) AS day, o.channel, count(*) AS orders, sum(o.amount)::numeric(12,2) AS revenue
      FROM silver.g_orders o JOIN silver.g_customers c ON c.id = o.id GROUP BY 1, 2$$, 'day')::text,
    'gold.g_daily', 'create_gold returns the new table');
SELECT results_eq($$SELECT attname::text COLLATE "default", format_type(atttypid, atttypmod) FROM pg_attribute
                    WHERE attrelid = 'gold.g_daily'::regclass AND attnum > 0 ORDER BY attnum$$,
                  $$VALUES ('day', 'date'), ('channel', 'text'), ('orders', 'bigint'), ('revenue', 'numeric(12,2)')$$,
                  'the table has exactly the query''s output columns, in order, with their types');
SELECT is((SELECT pg_get_partkeydef('gold.g_daily'::regclass)), 'RANGE (day)', 'partitioned by range on partition_by');
SELECT is((SELECT relowner::regrole::text FROM pg_class WHERE oid = 'gold.g_daily'::regclass),
          'medallion_tap_gold_owner', 'the creator owns the table');
SELECT results_eq($$SELECT layer, owner::text FROM medallion.pipelines WHERE name = 'gold.g_daily'$$,
                  $$VALUES ('gold', 'medallion_tap_gold_owner')$$, 'and the pipeline');
SELECT results_eq($$SELECT upstream, kind, partition_column FROM medallion.dependencies
                    WHERE pipeline = 'gold.g_daily' ORDER BY upstream$$,
                  $$VALUES ('silver.g_customers', 'query', NULL::text), ('silver.g_orders', 'query', 'ordered_at')$$,
                  'dependencies come from the query: date(col) maps through col; a joined table maps through nothing');

SELECT lives_ok($$SELECT medallion.create_gold('g_declared',
    'SELECT o.order_day, count(*) AS n FROM silver.g_orders o JOIN silver.g_customers c ON c.id = o.id GROUP BY 1',
    'order_day', '{"partition_sources": {"silver.g_customers": "signup_day"}, "granularity": "month", "description": "monthly"}')$$,
    'partition_sources declares the mapping of an upstream the query cannot show');
SELECT results_eq($$SELECT upstream, partition_column FROM medallion.dependencies
                    WHERE pipeline = 'gold.g_declared' ORDER BY upstream$$,
                  $$VALUES ('silver.g_customers', 'signup_day'), ('silver.g_orders', 'order_day')$$,
                  'the declared column is stored, the inferred one too');
SELECT is((SELECT description FROM medallion.pipelines WHERE name = 'gold.g_declared'), 'monthly',
          'options.description is the pipeline''s description');

SELECT lives_ok($$SELECT medallion.create_gold('g_window',
    'SELECT order_day, sum(amount) OVER (ORDER BY order_day) AS running FROM silver.g_orders', 'order_day')$$,
    'a window function over days is allowed');
SELECT is((SELECT partition_column FROM medallion.dependencies WHERE pipeline = 'gold.g_window'), NULL,
          'but maps to no partition: a change refreshes the whole model');

SELECT lives_ok($$SELECT medallion.create_gold('g_over_gold', 'SELECT day, sum(orders) AS orders FROM gold.g_daily GROUP BY 1', 'day')$$,
                'a model over a model');
SELECT results_eq($$SELECT upstream, partition_column FROM medallion.dependencies WHERE pipeline = 'gold.g_over_gold'$$,
                  $$VALUES ('gold.g_daily', 'day')$$, 'maps through the upstream model''s partition column');

SELECT lives_ok($$SELECT medallion.create_gold('g_untracked', 'SELECT day FROM public.g_calendar')$$,
                'a table outside the layers is allowed (untracked, with a NOTICE)');
SELECT throws_ok($$SELECT medallion.create_gold('g_daily', 'SELECT 1 AS one')$$, '42P07', NULL,
                 'a model whose table exists is refused (42P07)');

-- A cycle cannot even be forged: the graph refuses the edge that would close it -----------------

RESET ROLE;
SELECT throws_ok($$INSERT INTO medallion.dependencies (pipeline, upstream, kind)
                  VALUES ('silver.g_orders', 'gold.g_daily', 'reference')$$, 'MD020', NULL,
                 'an edge making silver.g_orders read the model built on it is refused (MD020)');
SET ROLE medallion_tap_gold_owner;
SELECT lives_ok($$SELECT medallion.create_gold('g_cyclic', 'SELECT day FROM gold.g_daily')$$,
                'so a model over that model is no cycle, and is created');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
