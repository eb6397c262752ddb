#!/usr/bin/env bash
# test/bench/p5_gold.sh — benchmark P5 (not part of test/run).
#
#   test/bench/p5_gold.sh [--no-build] [--explain]
#
# P5: a gold model partitioned by day over a silver table covering 365 days
#     (BENCH_GOLD_ROWS rows, default 1460000: 4000 a day), the model
#       SELECT created AS day, country, active, count(*), sum(amount), sum(qty)
#       FROM silver.p5 GROUP BY 1, 2, 3                   partition_by => 'day'
#     with an index on silver.p5 (created), as a user would have, and the table clustered
#     on it (a day's rows together, as in a table fed day after day).  Measured:
#       - "P5 full refresh": medallion.run('gold.p5_daily') with its watermark removed, so
#         the run recomputes every partition (what the first run, or a change that maps to
#         no partition, does);
#       - "P5 refresh 1 day": medallion.run('gold.p5_daily') after a silver run that changed
#         BENCH_GOLD_CHANGED rows (default 200) of one day (new versions, same day):
#         the run reads its change record and recomputes that day's partition only.
#     Target: refresh 1 day ≤ 0.05 × full refresh (aim 0.03).  After each incremental
#     run the model is checked equal to its query.
#
# Timings as in silver_lib.sh: clock_timestamp() in the server around the statement (commit
# included) after a CHECKPOINT, BENCH_REPS times (3), alternating; the median counts.
# Environment: BENCH_GOLD_ROWS, BENCH_GOLD_CHANGED, BENCH_REPS, MEDALLION_BENCH_PORT (55448),
# MEDALLION_BENCH_TMP (/tmp), BENCH_KEEP=1.  The exit status is 1 if the target is missed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/silver_lib.sh"

ROWS=${BENCH_GOLD_ROWS:-1460000}
CHANGED=${BENCH_GOLD_CHANGED:-200}
P5_TARGET=0.05

bench_init p5 "$@"
for a in "${BENCH_ARGS[@]}"; do [[ $a == p5 ]] || { echo "p5_gold.sh: unknown argument '$a'" >&2; exit 2; }; done

# keys whose created day (2020-01-01 + k % 1500) falls in the first 365 days
KEY_EXPR="((g - 1) / 365) * 1500 + ((g - 1) % 365)"
echo; echo "=== generating: $ROWS bronze rows over 365 days, then one silver run"
sql -c "SELECT medallion.create_bronze('p5', 'bench')" >/dev/null
sql -c "CALL bench.fill('bronze.p5', 1, $ROWS, 10000, '$KEY_EXPR', 'NULL')"
create_silver p5 p5
sql -c "SELECT medallion.run('silver.p5')" >/dev/null
sql -c "CREATE INDEX p5_created ON silver.p5 (created)"
# rows of a day together, as in a silver table fed day after day (one bulk run wrote them
# in key order, every day's rows spread over the whole table)
sql -c "CLUSTER silver.p5 USING p5_created"
sql -c "VACUUM ANALYZE silver.p5"
sql -c "SELECT medallion.create_gold('p5_daily',
          'SELECT created AS day, country, active, count(*) AS orders, sum(amount) AS amount, sum(qty) AS qty
           FROM silver.p5 GROUP BY 1, 2, 3', 'day')" >/dev/null
sql -c "SELECT medallion.run('gold.p5_daily')" >/dev/null
echo "  silver.p5: $(sql -c "SELECT count(*) || ' rows, ' || count(DISTINCT created) || ' days' FROM silver.p5")"
echo "  gold.p5_daily: $(sql -c "SELECT count(*) || ' rows in ' || (SELECT count(*) FROM pg_inherits WHERE inhparent = 'gold.p5_daily'::regclass) || ' partitions' FROM gold.p5_daily")"

check_equal() {
  sql -c "SELECT count(*) FROM ((TABLE gold.p5_daily EXCEPT ALL
            SELECT created, country, active, count(*), sum(amount), sum(qty) FROM silver.p5 GROUP BY 1, 2, 3)
          UNION ALL (SELECT created, country, active, count(*), sum(amount), sum(qty) FROM silver.p5 GROUP BY 1, 2, 3
            EXCEPT ALL TABLE gold.p5_daily)) d"
}

full_side() {   # full_side REP
  local r mode
  sql -c "DELETE FROM medallion.watermarks WHERE pipeline = 'gold.p5_daily'"
  r=$(timed "SELECT medallion.run('gold.p5_daily') AS run_id \\gset")
  mode=$(sql -c "SELECT detail->>'mode' || ' ' || rows_inserted FROM medallion.runs WHERE pipeline = 'gold.p5_daily' ORDER BY run_id DESC LIMIT 1")
  record "P5 full refresh" "$1" "$r" "mode/rows: $mode"
}

incr_side() {   # incr_side REP: new versions of CHANGED rows of one day, a silver run, then timed
  local r mode day=$(( ($1 * 37) % 365 )) diff
  sql -c "INSERT INTO bronze.p5 (_raw, _batch_id)
          SELECT s._raw || jsonb_build_object('amount', 1 + s.g % 7, 'updated_at', '2030-01-01T00:00:00Z'), 'chg$1'
          FROM (SELECT b._raw, row_number() OVER () AS g FROM bronze.p5 b
                WHERE (b._raw->>'created')::date = date '2020-01-01' + $day LIMIT $CHANGED) s"
  sql -c "SELECT medallion.run('silver.p5')" >/dev/null
  r=$(timed "SELECT medallion.run('gold.p5_daily') AS run_id \\gset")
  mode=$(sql -c "SELECT detail->>'mode' || ' ' || (detail->'partitions')::text || ' rows ' || rows_inserted FROM medallion.runs WHERE pipeline = 'gold.p5_daily' ORDER BY run_id DESC LIMIT 1")
  diff=$(check_equal)
  record "P5 refresh 1 day" "$1" "$r" "$mode; differs from its query: $diff rows"
  [[ $diff == 0 ]] || printf 'P5 content\t0\t0\t0\tmismatch\n' >>"$RESULTS"
}

echo; echo "=== P5: $REPS reps, order alternating"
for ((rep = 1; rep <= REPS; rep++)); do
  if ((rep % 2)); then full_side "$rep"; incr_side "$rep"; else incr_side "$rep"; full_side "$rep"; fi
done

if ((EXPLAIN)); then
  BENCH_KEEP=1
  sql -c "INSERT INTO bronze.p5 (_raw, _batch_id) SELECT _raw || '{\"qty\": 3}', 'x' FROM bronze.p5 LIMIT 10"
  sql -c "SELECT medallion.run('silver.p5')" >/dev/null
  explain_nested p5_incremental "" "SELECT medallion.run('gold.p5_daily');"
fi

full=$(median_of "P5 full refresh")
incr=$(median_of "P5 refresh 1 day")
echo
printf '%-22s %s s (reps: %s)\n' "P5 full refresh" "$full" "$(all_of "P5 full refresh")"
printf '%-22s %s s (reps: %s)\n' "P5 refresh 1 day" "$incr" "$(all_of "P5 refresh 1 day")"
grep -q '^P5 content' "$RESULTS" && { echo "VERDICT P5 content: FAIL (the model differs from its query)"; MISSED=1; }
verdict "P5 refresh 1 day / full refresh" "$(ratio "$incr" "$full")" "$P5_TARGET"
exit "$MISSED"
