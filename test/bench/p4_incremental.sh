#!/usr/bin/env bash
# test/bench/p4_incremental.sh — benchmark P4 (not part of test/run).
#
#   test/bench/p4_incremental.sh [--no-build] [--perf] [--explain]
#
# P4: an incremental silver run of 10k new bronze rows on a big bronze table vs on a 100k-row
# one.  Target: big/small ≤ 2 (the cost follows the delta, not the table).
#
# For each size: a bronze table is filled with generate_series, 10k rows per transaction
# (one _xid, one batch id each, as a stream of ingest calls would land them; one row per key),
# VACUUM ANALYZEd; a silver pipeline is created and run once to catch up (timed, for
# information), and silver is VACUUM ANALYZEd (the steady state autovacuum reaches).  Then,
# BENCH_REPS times, alternating the two sizes: 10k new rows land in one transaction (by default
# half new keys, half newer versions of existing keys — updated_at = the time of landing) and only the run that follows is timed.
# Next to each run (before it in odd reps, after it in even ones), a hand-written MERGE of
# another 10k rows of the same kind (from a small table, not bronze) into the same silver table
# is timed too: the silver side's own cost, for reference.  The plans of the run's statements (auto_explain, EXPLAIN ANALYZE + BUFFERS) are printed
# with --explain, and always when the target is missed.  --perf profiles one incremental run
# of each size.
#
# Environment: BENCH_P4_BIG_ROWS (3000000 by default; the target is meant for 10M: set
# BENCH_P4_BIG_ROWS=10000000 — on 2 busy cores filling 10M rows took 335 s and the catch-up
# run 184 s, so the default is smaller), BENCH_P4_SMALL_ROWS (100000), BENCH_P4_DELTA (10000),
# BENCH_P4_UPDATES (50: the % of the new rows that update a random existing key; 0 isolates
# the bronze side, as every new row is then a new key, appended at the end of silver),
# BENCH_P4_CHECKPOINT (0: no CHECKPOINT before each timed statement, unlike P1-P3),
# BENCH_REPS (3), MEDALLION_BENCH_PORT (55448), MEDALLION_BENCH_TMP (/tmp), BENCH_KEEP=1.
# BENCH_P4_REUSE=DIR: the work dir a BENCH_KEEP=1 run left (its server is started again,
# nothing is filled nor caught up): only the incremental runs are measured, on those tables.
# The exit status is 1 if the target is missed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/silver_lib.sh"

BIG=${BENCH_P4_BIG_ROWS:-3000000}
SMALL=${BENCH_P4_SMALL_ROWS:-100000}
DELTA=${BENCH_P4_DELTA:-10000}
UPDATES=${BENCH_P4_UPDATES:-50}
# the version of every delta row: later than every earlier one, so each update applies
NOW="to_jsonb(to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
BATCH=10000
P4_TARGET=2.0
# no CHECKPOINT before each timed run: right after one, every page an update touches first
# costs a full-page image in WAL, many more on the big table (BENCH_P4_CHECKPOINT=1: with)
TIMED_CHECKPOINT=${BENCH_P4_CHECKPOINT:-0}

bench_init p4 "$@"
((${#BENCH_ARGS[@]} == 0)) || [[ ${BENCH_ARGS[*]} == p4 ]] \
  || { echo "p4_incremental.sh: unknown argument '${BENCH_ARGS[*]}'" >&2; exit 2; }

declare -A SIZE=([small]=$SMALL [big]=$BIG) NEXT=()

# ingest SIDE: DELTA new rows in one transaction; UPDATES % of them are newer versions
# (updated_at now) of existing keys spread over the whole key space, the others new keys
ingest() {
  local n=${SIZE[$1]} first=${NEXT[$1]}
  sql -c "INSERT INTO bronze.p4_$1 (_raw, _batch_id)
          SELECT jsonb_set(bench.payload(g, CASE WHEN g % 100 < $UPDATES THEN (g * 7919) % $n + 1 ELSE g END),
                           '{updated_at}', $NOW), 'delta-' || $first
          FROM generate_series(${first}::bigint, $((first + DELTA - 1))) g"
  NEXT[$1]=$((first + DELTA))
}

if [[ -n ${BENCH_P4_REUSE:-} ]]; then
  for side in small big; do
    SIZE[$side]=$(sql -c "SELECT count(*) FROM bronze.p4_$side WHERE _batch_id NOT LIKE 'delta-%'")
    NEXT[$side]=$(sql -c "SELECT max((_raw->>'n')::bigint) + 1 FROM bronze.p4_$side")
    echo "reusing bronze.p4_$side: ${SIZE[$side]} rows filled, $(sql -c "SELECT count(*) FROM bronze.p4_$side") in all"
  done
  BIG=${SIZE[big]} SMALL=${SIZE[small]}
fi
for side in small big; do
  [[ -n ${BENCH_P4_REUSE:-} ]] && break
  n=${SIZE[$side]}
  echo; echo "=== $side: filling bronze.p4_$side with $n rows ($BATCH per transaction)"
  sql -c "SELECT medallion.create_bronze('p4_$side', 'bench')" >/dev/null
  t0=$(date +%s.%N)
  sql -c "CALL bench.fill('bronze.p4_$side', 1, $n, $BATCH, 'g', 'NULL')"
  t1=$(date +%s.%N)
  sql -c "VACUUM ANALYZE bronze.p4_$side"
  t2=$(date +%s.%N)
  echo "  filled in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, vacuum analyze" \
       "$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }') s;" \
       "$(sql -c "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits WHERE inhparent = 'bronze.p4_$side'::regclass")"
  create_silver "p4_$side" "p4_$side"
  r=$(timed "SELECT medallion.run('silver.p4_$side') AS run_id \\gset")
  record "P4 catch-up run, $side" 1 "$r" \
    "$(sql -F' ' -c "SELECT status, 'read=' || rows_read FROM medallion.runs WHERE pipeline = 'silver.p4_$side' ORDER BY run_id DESC LIMIT 1")"
  sql -c "VACUUM ANALYZE silver.p4_$side"
  NEXT[$side]=$((n + 1))
done

# hw_inc SIDE REP: the floor — a hand-written MERGE of the same kind of delta (10k rows of a
# small table, not in bronze: keys and _seq far above bronze's) into the same silver table
hw_inc() {
  local n=${SIZE[$1]} first=$((1000000000000 + NEXT[$1])) r
  sql -c "DROP TABLE IF EXISTS bench.delta" \
      -c "CREATE TABLE bench.delta AS
          SELECT jsonb_set(bench.payload(g, CASE WHEN g % 100 < $UPDATES THEN (g * 7919) % $n + 1 ELSE g END),
                           '{updated_at}', $NOW) AS _raw,
                 g AS _seq, 'hw-delta' AS _batch_id
          FROM generate_series(${first}::bigint, $((first + DELTA - 1))) g" \
      -c "ANALYZE bench.delta"
  r=$(timed "$(hw_merge "silver.p4_$1" bench.delta)")
  record "P4 hand-written MERGE of $DELTA rows, $1" "$2" "$r"
}

# inc SIDE REP: ingest, then time the run (and the hand-written MERGE: before it in odd reps,
# after it in even ones, as each warms the cache for the other)
inc() {
  local r st
  (($2 % 2)) && hw_inc "$1" "$2"
  ingest "$1"
  r=$(timed "SELECT medallion.run('silver.p4_$1') AS run_id \\gset")
  st=$(sql -F' ' -c "SELECT status, rows_read, rows_inserted, rows_updated, rows_unchanged
                     FROM medallion.runs WHERE pipeline = 'silver.p4_$1' ORDER BY run_id DESC LIMIT 1")
  set -- "$1" "$2" $st
  if [[ $3 == succeeded && $4 == "$DELTA" ]]; then
    record "P4 incremental run ($DELTA rows), $1" "$2" "$r" "read=$4 ins=$5 upd=$6 unch=$7"
  else
    record "P4 incremental run ($DELTA rows), $1" "$2" "$r" "WRONG: $3 read=$4 (want $DELTA)"
    printf 'P4 wrong\t%s\t0\t0\t%s\n' "$2" "$1" >>"$RESULTS"
  fi
  (($2 % 2)) || hw_inc "$1" "$2"
}

echo; echo "=== P4: $DELTA new rows ($UPDATES% updates of existing keys), then one timed run; $REPS reps, alternating"
for ((rep = 1; rep <= REPS; rep++)); do
  if ((rep % 2)); then inc small "$rep"; inc big "$rep"; else inc big "$rep"; inc small "$rep"; fi
done

small_s=$(median_of "P4 incremental run ($DELTA rows), small")
big_s=$(median_of "P4 incremental run ($DELTA rows), big")
p4=$(ratio "$big_s" "$small_s")
hw=$(ratio "$(median_of "P4 hand-written MERGE of $DELTA rows, big")" "$(median_of "P4 hand-written MERGE of $DELTA rows, small")")

if ((EXPLAIN)) || ! le "$p4" "$P4_TARGET"; then
  BENCH_KEEP=1
  for side in small big; do
    ingest "$side"
    EXPLAIN_MIN_MS=1 explain_nested "p4_$side" "" "SELECT medallion.run('silver.p4_$side');"
  done
fi
if ((PERF)); then
  BENCH_KEEP=1
  for side in small big; do
    ingest "$side"
    perf_profile "p4_$side" "" "SELECT medallion.run('silver.p4_$side');"
  done
fi

echo
echo "=== summary (medians of $REPS; wall seconds of each rep in brackets; load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-44s %9s %9s\n' measurement wall_s cpu_s
for m in "P4 catch-up run, small" "P4 catch-up run, big" \
         "P4 hand-written MERGE of $DELTA rows, small" "P4 hand-written MERGE of $DELTA rows, big" \
         "P4 incremental run ($DELTA rows), small" "P4 incremental run ($DELTA rows), big"; do
  printf '%-44s %9.3f %9.2f   [%s]\n' "$m" "$(median_of "$m")" "$(median_of "$m" cpu)" "$(all_of "$m")"
done
echo "P4 ratio big ($BIG rows) / small ($SMALL rows): wall $p4 (target <= $P4_TARGET)," \
     "cpu $(ratio "$(median_of "P4 incremental run ($DELTA rows), big" cpu)" "$(median_of "P4 incremental run ($DELTA rows), small" cpu)")"
echo "(for reference, the same silver-side work hand-written: big/small $hw;" \
     "run()/hand-written: small $(ratio "$small_s" "$(median_of "P4 hand-written MERGE of $DELTA rows, small")")," \
     "big $(ratio "$big_s" "$(median_of "P4 hand-written MERGE of $DELTA rows, big")"))"
echo
verdict "P4 incremental big/small" "$p4" "$P4_TARGET"
if grep -q $'^P4 wrong\t' "$RESULTS"; then
  echo "VERDICT P4 rows read = $DELTA in every incremental run: FAIL"; MISSED=1
fi
exit "$MISSED"
