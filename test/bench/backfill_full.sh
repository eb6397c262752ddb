#!/usr/bin/env bash
# test/bench/backfill_full.sh — the cost of a silver full backfill (not part of test/run).
#
#   test/bench/backfill_full.sh [--no-build]
#
# A silver pipeline over BENCH_BF_ROWS (200k) bronze rows, two versions of each of half as many
# keys, loaded by a first run.  Timed, BENCH_REPS times (3), the order of the sides alternating:
#   full        SELECT medallion.backfill(p, NULL, NULL, 'full'): the run's typing SQL over
#               every bronze row into a heap built aside, swapped in by storage (OID kept),
#               watermark, DLQ bookkeeping, run record;
#   hand-written the cheapest rebuild that keeps the table's OID without TRUNCATE (which
#               would lock readers out for the whole transaction): DELETE every row, then
#               INSERT the latest-wins typed rows of bronze (the same casts), one transaction.
# Both end with the same content (checked).  The ratio full/hand-written is reported; no
# target.  Environment: BENCH_BF_ROWS, BENCH_REPS, MEDALLION_BENCH_PORT, MEDALLION_BENCH_PGBIN,
# MEDALLION_BENCH_TMP, BENCH_KEEP=1 (see silver_lib.sh).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/silver_lib.sh"

ROWS=${BENCH_BF_ROWS:-200000}

bench_init backfill_full "$@"
((${#BENCH_ARGS[@]} == 0)) || { echo "backfill_full.sh: unknown argument '${BENCH_ARGS[0]}'" >&2; exit 2; }

sql -c "SELECT medallion.create_bronze('bf', 'bench')" >/dev/null
sql -c "CALL bench.fill('bronze.bf', 1, $ROWS, 10000, '1 + g % ($ROWS / 2)', 'NULL')"
create_silver bf bf
sql -c "SELECT medallion.run('silver.bf')" >/dev/null
sql -c "CREATE TABLE bench.ref AS SELECT * FROM silver.bf"
sql -c "VACUUM ANALYZE bronze.bf, silver.bf"

FULL="SELECT medallion.backfill('silver.bf', NULL, NULL, 'full') \\g /dev/null"
HW="BEGIN; DELETE FROM silver.bf;
INSERT INTO silver.bf ($(_cols)_source_seq, _batch_id, _run_id, _created_run_id)
  SELECT $(_cols)_seq, _batch_id, 1, 1 FROM ($(hw_typed bronze.bf)) s;
COMMIT;"
side() {   # side MEASURE REP SQL
  record "$1" "$2" "$(timed "$3")"
  local d
  d=$(same_content silver.bf bench.ref | tail -1)
  # lineage (_source_seq, _batch_id) and contract columns equal: the same rebuild
  [[ $d == 0 ]] || { echo "backfill_full.sh: $1 left $d rows different from the first run's" >&2; exit 1; }
}

echo; echo "=== full rebuild of $ROWS bronze rows ($((ROWS / 2)) keys), $REPS reps, order alternating"
for ((rep = 1; rep <= REPS; rep++)); do
  if ((rep % 2)); then
    side "full backfill" "$rep" "$FULL"; side "hand-written DELETE+INSERT" "$rep" "$HW"
  else
    side "hand-written DELETE+INSERT" "$rep" "$HW"; side "full backfill" "$rep" "$FULL"
  fi
done

echo
echo "=== summary (medians of $REPS; each rep in brackets; load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-40s %9s %9s\n' "measurement (s)" wall cpu
line() { printf '%-40s %9.3f %9.3f   [%s]\n' "$1" "$(median_of "$1")" "$(median_of "$1" cpu)" "$(all_of "$1")"; }
line "full backfill"
line "hand-written DELETE+INSERT"
echo "full/hand-written: wall $(ratio "$(median_of "full backfill")" "$(median_of "hand-written DELETE+INSERT")"), cpu $(ratio "$(median_of "full backfill" cpu)" "$(median_of "hand-written DELETE+INSERT" cpu)")"
