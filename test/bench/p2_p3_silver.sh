#!/usr/bin/env bash
# test/bench/p2_p3_silver.sh — benchmarks P2 and P3 (not part of test/run).
#
#   test/bench/p2_p3_silver.sh [p2] [p3]   # both by default
#     --no-build   use the medallion already installed
#     --perf       also perf-profile one run() of each and the hand-written MERGE
#     --explain    also log the plans (auto_explain) of every statement of one run() of each
#
# P2: medallion.run() of a silver pipeline over 1M clean bronze rows (800k keys: 200k keys
#     twice, versions out of arrival order) into an empty silver table, vs the faster of two
#     hand-written statements doing the same typing (casts of _raw->>…), the same dedup
#     (latest by updated_at, then _seq) and the same newer-wins write into an identical table:
#     MERGE, and INSERT … SELECT DISTINCT ON … ON CONFLICT DO UPDATE … WHERE newer.
#     Target: run ≤ 1.25 × hand-written.  The three tables are checked equal.  Also measured:
#     the same run with a gold model reading the silver table (partitioned by its date column
#     created), so that the MERGE records change days: target ≤ 1.25 × hand-written too.
# P3: the same run over 1M bronze rows of which 1% are bad (bad numeric, timestamptz, date,
#     integer overflow; missing required updated_at; missing key), which go to the DLQ.
#     Target: run ≤ 1.5 × P2's hand-written time; the DLQ holds exactly the bad rows (by
#     source_seq) and silver equals the hand-written MERGE of the good rows.
#
# Each timing: clock_timestamp() differences taken in the server around the statement
# (commit included) after a CHECKPOINT, BENCH_REPS times (3), the order of the sides rotating;
# the median counts.  Backend CPU seconds are printed too (less sensitive to other load).
# Environment: BENCH_SILVER_ROWS (1000000), BENCH_SILVER_KEYS (800000), BENCH_REPS (3),
# MEDALLION_BENCH_PORT (55448), MEDALLION_BENCH_TMP (/tmp), BENCH_KEEP=1.
# The exit status is 1 if a target is missed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/silver_lib.sh"

ROWS=${BENCH_SILVER_ROWS:-1000000}
KEYS=${BENCH_SILVER_KEYS:-800000}
BATCH=10000
P2_TARGET=1.25
P3_TARGET=1.50

bench_init p2_p3 "$@"
DO_P2=0 DO_P3=0
for b in "${BENCH_ARGS[@]}"; do
  case $b in
    p2) DO_P2=1 ;;
    p3) DO_P3=1 ;;
    *) echo "p2_p3_silver.sh: unknown benchmark '$b'" >&2; exit 2 ;;
  esac
done
((DO_P2 + DO_P3)) || DO_P2=1 DO_P3=1

BAD_EXPR='CASE WHEN g % 100 = 50 THEN ((g / 100) % 6)::int END'
KEY_EXPR="((g - 1) % $KEYS) + 1"

echo; echo "=== generating bronze: $ROWS rows, $KEYS keys, $BATCH rows per transaction"
sql -c "SELECT medallion.create_bronze('p2', 'bench')" >/dev/null
sql -c "CALL bench.fill('bronze.p2', 1, $ROWS, $BATCH, '$KEY_EXPR', 'NULL')"
if ((DO_P3)); then
  sql -c "SELECT medallion.create_bronze('p3', 'bench')" >/dev/null
  sql -c "CALL bench.fill('bronze.p3', 1, $ROWS, $BATCH, '$KEY_EXPR', '$BAD_EXPR')"
fi
sql -c "VACUUM ANALYZE bronze.p2"
((DO_P3)) && sql -c "VACUUM ANALYZE bronze.p3"
NBAD=$(sql -c "SELECT count(*) FROM generate_series(1, $ROWS) g WHERE ($BAD_EXPR) IS NOT NULL")
echo "  bronze.p2: $(sql -c "SELECT pg_size_pretty(pg_total_relation_size('bronze.p2_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')))")" \
     "$(sql -c "SELECT count(*) || ' rows, ' || count(DISTINCT _raw->>'id') || ' keys' FROM bronze.p2")"
((DO_P3)) && echo "  bronze.p3: same rows, $NBAD of them bad"
create_silver tmpl p2   # never run: the shape of the hand-written tables

# ---- P2 ---------------------------------------------------------------------------------
run_side() {   # run_side MEASURE PIPELINE BRONZE REP [gold]
  local r st
  create_silver "$2" "$3"
  if [[ ${5:-} == gold ]]; then
    # a gold model reading the table, partitioned by a date of it: the run records change days
    sql -c "SELECT medallion.create_gold('$2_daily', 'SELECT created AS day, country, count(*) AS n
              FROM silver.$2 GROUP BY 1, 2', 'day')" >/dev/null
  fi
  r=$(timed "SELECT medallion.run('silver.$2') AS run_id \\gset")
  st=$(sql -F' ' -c "SELECT status, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_dlq
                     FROM medallion.runs WHERE pipeline = 'silver.$2' ORDER BY run_id DESC LIMIT 1")
  set -- "$1" "$2" "$3" "$4" $st
  record "$1" "$4" "$r" "$5 read=$6 ins=$7 upd=$8 unch=$9 dlq=${10}"
  [[ $5 == succeeded ]] || { echo "  RUN FAILED:"; sql -c "SELECT error_class, error_message FROM medallion.runs WHERE pipeline = 'silver.$2'"; }
}

hw_side() {   # hw_side merge|upsert REP
  local t=bench.$1_r$2 r
  sql -c "CREATE TABLE $t (LIKE silver.tmpl INCLUDING ALL)"
  if [[ $1 == merge ]]; then
    r=$(timed "$(hw_merge "$t" bronze.p2)")
    record "P2 hand-written MERGE" "$2" "$r"
  else
    r=$(timed "$(hw_upsert "$t" bronze.p2)")
    record "P2 hand-written INSERT ON CONFLICT" "$2" "$r"
  fi
}

echo; echo "=== P2 (clean) and the hand-written baselines, $REPS reps, order rotating"
for ((rep = 1; rep <= REPS; rep++)); do
  sides=(run merge upsert rungold)
  sides=("${sides[@]:$(((rep - 1) % 4))}" "${sides[@]:0:$(((rep - 1) % 4))}")
  for side in "${sides[@]}"; do
    case $side in
      run) run_side "P2 run()" "p2_r$rep" p2 "$rep" ;;
      rungold) run_side "P2 run() + gold model" "p2g_r$rep" p2 "$rep" gold ;;
      *) hw_side "$side" "$rep" ;;
    esac
  done
  if ((rep == 1)); then
    d1=$(same_content silver.p2_r1 bench.merge_r1)
    d2=$(same_content silver.p2_r1 bench.upsert_r1)
    if [[ $d1 == 0 && $d2 == 0 ]]; then
      echo "  content: silver.p2_r1 = hand-written MERGE = hand-written upsert ($(sql -c 'SELECT count(*) FROM silver.p2_r1') rows)"
    else
      echo "  CONTENT MISMATCH: run vs MERGE $d1 rows differ, run vs upsert $d2"
      printf 'P2 content\t0\t0\t0\tmismatch\n' >>"$RESULTS"
    fi
  fi
  sql -c "DROP TABLE silver.p2_r$rep, bench.merge_r$rep, bench.upsert_r$rep, silver.p2g_r$rep CASCADE"
done

# ---- P3 ---------------------------------------------------------------------------------
if ((DO_P3)); then
  echo; echo "=== P3 ($NBAD bad rows of $ROWS to the DLQ), $REPS reps"
  sql -c "CREATE TABLE bench.p3_expected (LIKE silver.tmpl INCLUDING ALL)"
  sql -c "$(hw_merge bench.p3_expected bronze.p3 "WHERE (_raw->>'n')::bigint % 100 <> 50")"
  for ((rep = 1; rep <= REPS; rep++)); do
    run_side "P3 run() 1% bad" "p3_r$rep" p3 "$rep"
    read -r ndlq diff types < <(sql -F' ' -c "
      WITH bad AS (SELECT _seq FROM bronze.p3 WHERE (_raw->>'n')::bigint % 100 = 50),
           dlq AS (SELECT source_seq FROM medallion.dlq WHERE pipeline = 'silver.p3_r$rep')
      SELECT (SELECT count(*) FROM dlq),
             (SELECT count(*) FROM (SELECT * FROM bad EXCEPT ALL SELECT * FROM dlq) x)
           + (SELECT count(*) FROM (SELECT * FROM dlq EXCEPT ALL SELECT * FROM bad) y),
             (SELECT string_agg(t, ',' ORDER BY t) FROM (SELECT error_type || ':' || coalesce(sqlstate, '-') || '=' || count(*) AS t
                FROM medallion.dlq WHERE pipeline = 'silver.p3_r$rep' GROUP BY error_type, sqlstate) z)")
    if [[ $ndlq == "$NBAD" && $diff == 0 ]]; then
      echo "    DLQ: $ndlq rows = exactly the $NBAD bad rows ($types)"
    else
      echo "    DLQ WRONG: $ndlq rows, $diff differ from the $NBAD bad rows ($types)"
      printf 'P3 dlq\t%s\t0\t0\twrong\n' "$rep" >>"$RESULTS"
    fi
    if ((rep == 1)); then
      d=$(same_content silver.p3_r1 bench.p3_expected)
      if [[ $d == 0 ]]; then
        echo "    content: silver.p3_r1 = hand-written MERGE of the good rows"
      else
        echo "    CONTENT MISMATCH: silver.p3_r1 vs hand-written MERGE of the good rows: $d rows differ"
        printf 'P3 content\t0\t0\t0\tmismatch\n' >>"$RESULTS"
      fi
    fi
    sql -c "DROP TABLE silver.p3_r$rep"
  done
fi

# ---- optional: plans, profiles ----------------------------------------------------------
if ((EXPLAIN)); then
  BENCH_KEEP=1
  create_silver p2_x p2
  explain_nested p2_run "" "SELECT medallion.run('silver.p2_x');"
  sql -c "CREATE TABLE bench.merge_x (LIKE silver.tmpl INCLUDING ALL)"
  explain_nested p2_merge "" "$(hw_merge bench.merge_x bronze.p2)"
  if ((DO_P3)); then
    create_silver p3_x p3
    explain_nested p3_run "" "SELECT medallion.run('silver.p3_x');"
  fi
fi
if ((PERF)); then
  BENCH_KEEP=1
  create_silver p2_perf p2
  perf_profile p2_run "" "SELECT medallion.run('silver.p2_perf');"
  sql -c "CREATE TABLE bench.merge_perf (LIKE silver.tmpl INCLUDING ALL)"
  perf_profile p2_merge "" "$(hw_merge bench.merge_perf bronze.p2)"
  if ((DO_P3)); then
    create_silver p3_perf p3
    perf_profile p3_run "" "SELECT medallion.run('silver.p3_perf');"
  fi
fi

# ---- summary ----------------------------------------------------------------------------
echo
echo "=== summary (medians of $REPS; wall seconds of each rep in brackets; load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-40s %9s %9s\n' measurement wall_s cpu_s
line() { printf '%-40s %9.3f %9.2f   [%s]\n' "$1" "$(median_of "$1")" "$(median_of "$1" cpu)" "$(all_of "$1")"; }
line "P2 run()"
line "P2 run() + gold model"
line "P2 hand-written MERGE"
line "P2 hand-written INSERT ON CONFLICT"
((DO_P3)) && line "P3 run() 1% bad"
m=$(median_of "P2 hand-written MERGE") u=$(median_of "P2 hand-written INSERT ON CONFLICT")
mc=$(median_of "P2 hand-written MERGE" cpu) uc=$(median_of "P2 hand-written INSERT ON CONFLICT" cpu)
base=$(awk -v a="$m" -v b="$u" 'BEGIN { print (a < b ? a : b) }')
basec=$(awk -v a="$mc" -v b="$uc" 'BEGIN { print (a < b ? a : b) }')
best=$(awk -v a="$m" -v b="$u" 'BEGIN { print (a < b ? "MERGE" : "INSERT ON CONFLICT") }')
echo "hand-written baseline: $best, $base s"
echo
if ((DO_P2)); then
  p2=$(ratio "$(median_of "P2 run()")" "$base")
  echo "P2 ratio run()/hand-written: wall $p2 (target <= $P2_TARGET), cpu $(ratio "$(median_of "P2 run()" cpu)" "$basec")"
  p2g=$(ratio "$(median_of "P2 run() + gold model")" "$base")
  echo "P2 ratio run() with a gold model attached/hand-written: wall $p2g (target <= $P2_TARGET), cpu $(ratio "$(median_of "P2 run() + gold model" cpu)" "$basec")"
  echo "  (the gold model's change records cost: $(ratio "$(median_of "P2 run() + gold model")" "$(median_of "P2 run()")") x run() alone)"
fi
if ((DO_P3)); then
  p3=$(ratio "$(median_of "P3 run() 1% bad")" "$base")
  echo "P3 ratio run(1% bad)/P2 hand-written: wall $p3 (target <= $P3_TARGET), cpu $(ratio "$(median_of "P3 run() 1% bad" cpu)" "$basec")"
fi
echo
if ((DO_P2)); then
  verdict "P2 run()/hand-written" "$p2" "$P2_TARGET"
  verdict "P2 run() with a gold model/hand-written" "$p2g" "$P2_TARGET"
  if grep -q $'^P2 content\t' "$RESULTS"; then echo "VERDICT P2 content: run() != hand-written: FAIL"; MISSED=1; fi
fi
if ((DO_P3)); then
  verdict "P3 run(1% bad)/P2 hand-written" "$p3" "$P3_TARGET"
  if grep -qE $'^P3 (dlq|content)\t' "$RESULTS"; then
    echo "VERDICT P3 DLQ/content: not exactly the bad rows: FAIL"; MISSED=1
  else
    echo "VERDICT P3 DLQ holds exactly the $NBAD bad rows in every rep, silver = good rows: PASS"
  fi
fi
exit "$MISSED"
