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
# to look in). Each side runs BENCH_REPS times, alternating, timed by wall clock and by the
# backend's own CPU time (from /proc: on a shared machine the wall clock mostly measures the
# neighbours); the medians' CPU ratio with/without is the overhead. Target: ≤ 1.10.
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
  -c "CREATE DATABASE plain" -c "CREATE DATABASE watched" -c "CREATE DATABASE noop" \
  -c "GRANT CREATE ON DATABASE plain, watched, noop TO ddl_user" >/dev/null
# for reference: the same event triggers calling a function that does nothing (what
# PostgreSQL's event trigger machinery costs by itself)
as_pg "${PSQL[@]}" -d noop >/dev/null <<'SQL'
CREATE FUNCTION public.noop() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN END$$;
CREATE EVENT TRIGGER noop_end ON ddl_command_end WHEN TAG IN ('ALTER TABLE', 'ALTER FOREIGN TABLE')
    EXECUTE FUNCTION public.noop();
CREATE EVENT TRIGGER noop_drop ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP FOREIGN TABLE', 'DROP SCHEMA', 'DROP OWNED', 'DROP TYPE', 'DROP DOMAIN')
    EXECUTE FUNCTION public.noop();
SQL
as_pg "${PSQL[@]}" -d watched >/dev/null <<SQL
CREATE EXTENSION medallion;
CREATE TABLE public.customers (customer_id bigint PRIMARY KEY, name text);
SELECT medallion.create_bronze('b' || i, 'bench') FROM generate_series(1, $PIPELINES) i;
SELECT medallion.create_silver('s' || i, ('bronze.b' || i)::regclass,
    '{"id": "int", "v": "text", "customer_id": {"type": "bigint", "references": "public.customers.customer_id"}}',
    '{id}') FROM generate_series(1, $PIPELINES) i;
SQL
echo "watched: $(as_pg "${PSQL[@]}" -d watched -c 'SELECT count(*) FROM medallion.column_snapshots') tracked relations"

# The backend's own CPU time (utime + stime, in clock ticks, from /proc): on a busy machine
# wall-clock time mostly measures the other processes; CPU time what the session did.
CPU="(SELECT pg_catalog.split_part(s, ' ', 14)::bigint + pg_catalog.split_part(s, ' ', 15)::bigint
      FROM pg_catalog.pg_read_file('/proc/' || pg_catalog.pg_backend_pid() || '/stat') s)"
SCRIPT=$WORK/loop.sql
echo "SELECT $CPU AS cpu0 \\gset" >"$SCRIPT"
for ((i = 0; i < LOOPS; i++)); do echo "\\i $TREE/test/bench/ddl_workload.sql" >>"$SCRIPT"; done
echo "SELECT 'CPU ' || ($CPU - :cpu0);" >>"$SCRIPT"
chown postgres "$SCRIPT" 2>/dev/null || true
TICKS=$(getconf CLK_TCK)

# time_side DB: "wall-ms cpu-ms" of one session running the workload LOOPS times
time_side() {
  local t0 t1 out
  t0=$(date +%s%N)
  out=$(as_pg "$PGBIN/psql" -X -q -At -h "$SOCK" -p "$PORT" -U postgres -d "$1" -f "$SCRIPT" 2>/dev/null | sed -n 's/^CPU //p')
  t1=$(date +%s%N)
  echo "$(((t1 - t0) / 1000000)) $((out * 1000 / TICKS))"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

time_side plain >/dev/null; time_side watched >/dev/null   # warm up
P=() W=() PC=() WC=() NC=()
for ((r = 1; r <= REPS; r++)); do
  if ((r % 2)); then read -r p pc < <(time_side plain); read -r w wc < <(time_side watched)
  else read -r w wc < <(time_side watched); read -r p pc < <(time_side plain); fi
  read -r n nc < <(time_side noop)
  P+=("$p") W+=("$w") PC+=("$pc") WC+=("$wc") NC+=("$nc")
  echo "rep $r: without medallion ${p} ms (backend CPU ${pc} ms), with ${w} ms (CPU ${wc} ms); no-op triggers CPU ${nc} ms"
done
if [[ $(as_pg "${PSQL[@]}" -d watched -c 'SELECT count(*) FROM medallion.schema_changes') != 0 ]]; then
  echo "$ME: medallion recorded changes of the unrelated workload" >&2; exit 2
fi
mp=$(printf '%s\n' "${P[@]}" | median); mw=$(printf '%s\n' "${W[@]}" | median)
mpc=$(printf '%s\n' "${PC[@]}" | median); mwc=$(printf '%s\n' "${WC[@]}" | median)
ratio=$(awk -v w="$mw" -v p="$mp" 'BEGIN { printf "%.3f", w / p }')
cratio=$(awk -v w="$mwc" -v p="$mpc" 'BEGIN { printf "%.3f", w / p }')
mnc=$(printf '%s\n' "${NC[@]}" | median)
nratio=$(awk -v w="$mnc" -v p="$mpc" 'BEGIN { printf "%.3f", w / p }')
echo "DDL workload x$LOOPS, medians of $REPS: without medallion $mp ms (backend CPU $mpc ms), with medallion and $PIPELINES pipelines $mw ms (CPU $mwc ms)"
echo "wall-clock ratio $ratio (noisy on a busy machine); backend CPU ratio $cratio; no-op event triggers alone: CPU ratio $nratio"
if awk -v r="$cratio" -v t="$TARGET" 'BEGIN { exit !(r <= t) }'; then
  echo "DDL watch overhead: backend CPU ratio $cratio (target <= $TARGET): met"
else
  echo "DDL watch overhead: backend CPU ratio $cratio (target <= $TARGET): MISSED"; exit 1
fi
