#!/usr/bin/env bash
# test/bench/ddl_watch.sh — the DDL event triggers' cost on unrelated DDL (not part of test/run).
#
#   test/bench/ddl_watch.sh [--no-build]
#
# The workload test/bench/ddl_workload.sql (tables, partitions, types, views, functions,
# triggers, another extension, temporary tables, rolled-back transactions, an unprivileged
# role's DDL; about 100 statements, most of them DDL) runs BENCH_DDL_LOOPS times in one psql
# session, in a database without medallion and in one with medallion and
# BENCH_DDL_PIPELINES silver pipelines (so the event triggers fire, and have a tracked set
# to look in). Each side is timed BENCH_REPS times (wall clock around psql), alternating;
# the medians' ratio with/without is the overhead. Target: ≤ 1.10.
#
# Environment: BENCH_REPS (5), BENCH_DDL_LOOPS (20), BENCH_DDL_PIPELINES (20),
# MEDALLION_BENCH_PORT (54341), MEDALLION_BENCH_TMP (/tmp), BENCH_KEEP=1.
# Exit status 1 if the target is missed, 2 on a harness error.
set -euo pipefail

MEDALLION_PGBIN=${MEDALLION_BENCH_PGBIN:-${MEDALLION_PGBIN:-}}
# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
ME=test/bench/ddl_watch.sh
PORT=${MEDALLION_BENCH_PORT:-54341}
REPS=${BENCH_REPS:-5}
LOOPS=${BENCH_DDL_LOOPS:-20}
PIPELINES=${BENCH_DDL_PIPELINES:-20}
TARGET=1.10
PACKAGES=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev perl make gcc)

BUILD=1
for a in "$@"; do
  case $a in
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$ME: unknown argument '$a'" >&2; exit 2 ;;
  esac
done

at_exit() { if [[ ${BENCH_KEEP:-0} != 1 && -n $WORK ]]; then rm -rf "$WORK"; fi; }
install_packages
bench_cluster ddlwatch "$BUILD" "shared_buffers = 256MB" "fsync = off" "synchronous_commit = off"

as_pg "${PSQL[@]}" -d postgres -c "CREATE ROLE ddl_user LOGIN" \
  -c "CREATE DATABASE plain" -c "CREATE DATABASE watched" \
  -c "GRANT CREATE ON DATABASE plain, watched TO ddl_user" >/dev/null
as_pg "${PSQL[@]}" -d watched >/dev/null <<SQL
CREATE EXTENSION medallion;
CREATE TABLE public.customers (customer_id bigint PRIMARY KEY, name text);
SELECT medallion.create_bronze('b' || i, 'bench') FROM generate_series(1, $PIPELINES) i;
SELECT medallion.create_silver('s' || i, ('bronze.b' || i)::regclass,
    '{"id": "int", "v": "text", "customer_id": {"type": "bigint", "references": "public.customers.customer_id"}}',
    '{id}') FROM generate_series(1, $PIPELINES) i;
SQL
echo "watched: $(as_pg "${PSQL[@]}" -d watched -c 'SELECT count(*) FROM medallion.column_snapshots') tracked relations"

SCRIPT=$WORK/loop.sql
: >"$SCRIPT"
for ((i = 0; i < LOOPS; i++)); do echo "\\i $TREE/test/bench/ddl_workload.sql" >>"$SCRIPT"; done
chown postgres "$SCRIPT" 2>/dev/null || true

# time_side DB: milliseconds of one session running the workload LOOPS times
time_side() {
  local t0 t1
  t0=$(date +%s%N)
  as_pg "$PGBIN/psql" -X -q -h "$SOCK" -p "$PORT" -U postgres -d "$1" -f "$SCRIPT" >/dev/null 2>&1
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

time_side plain >/dev/null; time_side watched >/dev/null   # warm up
P=() W=()
for ((r = 1; r <= REPS; r++)); do
  if ((r % 2)); then P+=("$(time_side plain)"); W+=("$(time_side watched)")
  else W+=("$(time_side watched)"); P+=("$(time_side plain)"); fi
  echo "rep $r: without medallion ${P[-1]} ms, with ${W[-1]} ms"
done
if [[ $(as_pg "${PSQL[@]}" -d watched -c 'SELECT count(*) FROM medallion.schema_changes') != 0 ]]; then
  echo "$ME: medallion recorded changes of the unrelated workload" >&2; exit 2
fi
mp=$(printf '%s\n' "${P[@]}" | median)
mw=$(printf '%s\n' "${W[@]}" | median)
ratio=$(awk -v w="$mw" -v p="$mp" 'BEGIN { printf "%.3f", w / p }')
echo "DDL workload x$LOOPS: without medallion $mp ms, with medallion ($PIPELINES pipelines) $mw ms (medians of $REPS)"
if awk -v r="$ratio" -v t="$TARGET" 'BEGIN { exit !(r <= t) }'; then
  echo "DDL watch overhead: ratio $ratio (target <= $TARGET): met"
else
  echo "DDL watch overhead: ratio $ratio (target <= $TARGET): MISSED"; exit 1
fi
