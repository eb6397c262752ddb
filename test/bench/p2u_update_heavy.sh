#!/usr/bin/env bash
# test/bench/p2u_update_heavy.sh — P2u, a lean run path (not part of test/run).
#
#   test/bench/p2u_update_heavy.sh [--no-build] [--perf] [--explain]
#     --no-build   use the medallion already installed
#     --perf       also perf-profile one update-heavy run() and one empty run() loop
#     --explain    also log the plans (auto_explain) of every statement of one run()
#
# P2u update-heavy: a silver table of BENCH_P2U_KEYS keys (200k), loaded by a first run;
#     then every key gets a newer version (a second batch of bronze rows, one per key, with a
#     later updated_at).  Timed: the run() that merges those rows, vs a hand-written MERGE of
#     the same new rows, with the same typing (casts of _raw->>…), the same dedup and the same
#     newer-wins condition, into a copy of the silver table taken before (same columns,
#     indexes, rows).  Target: run ≤ 1.2 × hand-written.  Both tables are checked equal.
# P2u empty: run() with no new bronze rows, BENCH_P2U_EMPTY_CALLS (200) statements (each its
#     own transaction) in one session; the mean per call.  Target: ≤ 1 ms.
#
# Timing as in p2_p3_silver.sh (silver_lib.sh): clock_timestamp() differences in the server,
# commit included, after a CHECKPOINT, BENCH_REPS times (3), the order of the sides
# alternating; the median counts.  Environment: BENCH_P2U_KEYS (200000),
# BENCH_P2U_EMPTY_CALLS (200), BENCH_REPS (3), MEDALLION_BENCH_PORT (55448),
# MEDALLION_BENCH_PGBIN, MEDALLION_BENCH_TMP (/tmp), BENCH_KEEP=1.
# The exit status is 1 if a target is missed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/silver_lib.sh"

KEYS=${BENCH_P2U_KEYS:-200000}
EMPTY_CALLS=${BENCH_P2U_EMPTY_CALLS:-200}
BATCH=10000
UPDATE_TARGET=1.20
EMPTY_TARGET_MS=1.0

bench_init p2u "$@"
((${#BENCH_ARGS[@]} == 0)) || { echo "p2u_update_heavy.sh: unknown argument '${BENCH_ARGS[0]}'" >&2; exit 2; }

# bench.fill_newer(tbl, first, last, batch): rows first..last for keys 1..KEYS (key = g modulo
# KEYS), each with an updated_at later than any earlier row's: every key gets a newer version
sql <<SQL
CREATE PROCEDURE bench.fill_newer(tbl text, first bigint, last bigint, batch int)
LANGUAGE plpgsql AS \$\$
DECLARE lo bigint := first;
BEGIN
  WHILE lo <= last LOOP
    EXECUTE format('INSERT INTO %s (_raw, _batch_id) '
                   'SELECT bench.payload(g, (g - 1) %% $KEYS + 1) || jsonb_build_object(''updated_at'', '
                   'to_char(timestamptz ''2025-01-01 00:00:00+00'' + make_interval(secs => g), '
                   '''YYYY-MM-DD"T"HH24:MI:SS"Z"'')), %L FROM generate_series(\$1, \$2) g', tbl, 'b' || lo)
      USING lo, least(last, lo + batch - 1);
    COMMIT;
    lo := lo + batch;
  END LOOP;
END \$\$;
SQL

# prepare REP: bronze.p2u_rREP with one version of every key, silver.p2u_rREP loaded from
# it by a first run, bench.hw_rREP a copy of it; then the newer versions land in bronze
prepare() {
  local rep=$1
  sql -c "SELECT medallion.create_bronze('p2u_r$rep', 'bench')" >/dev/null
  sql -c "CALL bench.fill('bronze.p2u_r$rep', 1, $KEYS, $BATCH, 'g', 'NULL')"
  create_silver "p2u_r$rep" "p2u_r$rep"
  sql -c "SELECT medallion.run('silver.p2u_r$rep')" >/dev/null
  sql -c "CREATE TABLE bench.hw_r$rep (LIKE silver.p2u_r$rep INCLUDING ALL)"
  sql -c "INSERT INTO bench.hw_r$rep SELECT * FROM silver.p2u_r$rep"
  sql -c "CALL bench.fill_newer('bronze.p2u_r$rep', $((KEYS + 1)), $((2 * KEYS)), $BATCH)"
  sql -c "VACUUM ANALYZE bronze.p2u_r$rep, silver.p2u_r$rep, bench.hw_r$rep"
  BOUND=$(sql -c "SELECT max(_source_seq) FROM silver.p2u_r$rep")   # the new rows: _seq > it
}

run_side() {   # run_side REP
  local r st
  r=$(timed "SELECT medallion.run('silver.p2u_r$1') AS run_id \\gset")
  st=$(sql -F' ' -c "SELECT status, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_dlq
                     FROM medallion.runs WHERE pipeline = 'silver.p2u_r$1' ORDER BY run_id DESC LIMIT 1")
  set -- "$1" $st
  record "P2u run() update-heavy" "$1" "$r" "$2 read=$3 ins=$4 upd=$5 unch=$6 dlq=$7"
  [[ $2 == succeeded && $5 == "$KEYS" ]] || { echo "  RUN FAILED or not every key updated"; printf 'P2u content\t0\t0\t0\tfailed\n' >>"$RESULTS"; }
}

hw_side() {   # hw_side REP
  local r
  r=$(timed "$(hw_merge "bench.hw_r$1" "bronze.p2u_r$1" "WHERE _seq > $BOUND")")
  record "P2u hand-written MERGE" "$1" "$r"
}

empty_side() {   # empty_side REP: EMPTY_CALLS runs with nothing new, each its own statement
  local r wall cpu
  r=$(TIMED_CHECKPOINT=0 timed "$(empty_calls "$1" "$EMPTY_CALLS")")
  read -r wall cpu <<<"${r//|/ }"
  record "P2u run() empty, ms per call" "$1" \
    "$(awk -v w="$wall" -v c="$cpu" -v n="$EMPTY_CALLS" 'BEGIN { printf "%.4f %.4f", w * 1000 / n, c * 1000 / n }')"
}
# empty_calls REP N: N statements (N transactions) running the pipeline
empty_calls() { local i; for ((i = 0; i < $2; i++)); do echo "SELECT medallion.run('silver.p2u_r$1') \\g /dev/null"; done; }

echo; echo "=== P2u: $KEYS keys, every one updated once; $REPS reps, order alternating"
for ((rep = 1; rep <= REPS; rep++)); do
  prepare "$rep"
  if ((rep % 2)); then run_side "$rep"; hw_side "$rep"; else hw_side "$rep"; run_side "$rep"; fi
  d=$(same_content "silver.p2u_r$rep" "bench.hw_r$rep")
  if [[ $d == 0 ]]; then
    echo "    content: silver.p2u_r$rep = hand-written MERGE ($(sql -c "SELECT count(*) FROM silver.p2u_r$rep") rows)"
  else
    echo "    CONTENT MISMATCH: silver.p2u_r$rep vs hand-written MERGE: $d rows differ"
    printf 'P2u content\t0\t0\t0\tmismatch\n' >>"$RESULTS"
  fi
  sql >/dev/null <<<"$(empty_calls "$rep" 5)"   # warm
  empty_side "$rep"
done

# ---- optional: plans, profiles (on the last rep's tables: new newer versions first) ------
if ((EXPLAIN + PERF)); then
  BENCH_KEEP=1
  BOUND=$(sql -c "SELECT max(_seq) FROM bronze.p2u_r$REPS")
  sql -c "CALL bench.fill_newer('bronze.p2u_r$REPS', $((2 * KEYS + 1)), $((3 * KEYS)), $BATCH)"
  sql -c "VACUUM ANALYZE bronze.p2u_r$REPS, silver.p2u_r$REPS, bench.hw_r$REPS"
fi
if ((EXPLAIN)); then
  explain_nested p2u_run "" "SELECT medallion.run('silver.p2u_r$REPS');"
  EXPLAIN_MIN_MS=0 explain_nested p2u_empty "" "SELECT medallion.run('silver.p2u_r$REPS');
SELECT medallion.run('silver.p2u_r$REPS');"
  explain_nested p2u_merge "" "$(hw_merge "bench.hw_r$REPS" "bronze.p2u_r$REPS" "WHERE _seq > $BOUND")"
elif ((PERF)); then
  perf_profile p2u_run "" "SELECT medallion.run('silver.p2u_r$REPS');"
  perf_profile p2u_merge "" "$(hw_merge "bench.hw_r$REPS" "bronze.p2u_r$REPS" "WHERE _seq > $BOUND")"
fi
if ((PERF)); then
  perf_profile p2u_empty "" "$(empty_calls "$REPS" 2000)"
fi

# ---- summary ----------------------------------------------------------------------------
echo
echo "=== summary (medians of $REPS; each rep in brackets; load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-40s %9s %9s\n' measurement wall cpu
line() { printf '%-40s %9.3f %9.3f   [%s]\n' "$1" "$(median_of "$1")" "$(median_of "$1" cpu)" "$(all_of "$1")"; }
line "P2u run() update-heavy"
line "P2u hand-written MERGE"
line "P2u run() empty, ms per call"
u=$(ratio "$(median_of "P2u run() update-heavy")" "$(median_of "P2u hand-written MERGE")")
uc=$(ratio "$(median_of "P2u run() update-heavy" cpu)" "$(median_of "P2u hand-written MERGE" cpu)")
e=$(median_of "P2u run() empty, ms per call")
echo "P2u ratio run()/hand-written MERGE: wall $u (target <= $UPDATE_TARGET), cpu $uc"
echo "P2u empty run: $e ms per call (target <= $EMPTY_TARGET_MS)"
echo
verdict "P2u run()/hand-written MERGE" "$u" "$UPDATE_TARGET"
verdict "P2u empty run ms" "$e" "$EMPTY_TARGET_MS"
if grep -q $'^P2u content\t' "$RESULTS"; then echo "VERDICT P2u content: run() != hand-written: FAIL"; MISSED=1; fi
exit "$MISSED"
