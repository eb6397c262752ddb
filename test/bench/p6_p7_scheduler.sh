#!/usr/bin/env bash
# test/bench/p6_p7_scheduler.sh — benchmarks P6 and P7 (not part of test/run).
#
#   test/bench/p6_p7_scheduler.sh [p6] [p7] [--no-build] [--strace] [--perf]
#
# P6: ingest → silver visible with 'on_change' scheduling; target p50 ≤ 1 s.  One session
#     runs a procedure: BENCH_P6_ITERS times, medallion.ingest() of one object with a unique
#     marker, tc = clock_timestamp(), COMMIT, then polls silver (a fresh snapshot each
#     statement, pg_sleep(BENCH_P6_POLL_MS) between polls) until the marker is there: t1.
#     Latency = t1 - tc (tc is taken just before COMMIT, so the commit's WAL flush counts: a
#     backend descheduled after its commit cannot make the latency look shorter; poll
#     granularity rounds it up).  Then BENCH_P6_GAP_MS of quiet before the next ingest.  p50, p95,
#     max are printed, with a breakdown from the medallion.runs row of the run that loaded
#     the marker: commit → run row (wake-up, scheduler pass, worker fork + connect, pending
#     check), run row → run finished, run finished → seen by the poll.
# P7: CPU of the launcher, the scheduler and any run worker during BENCH_P7_SECONDS of idle
#     with 20 scheduled pipelines (7 × '5 seconds', 7 × '30 seconds', 6 × 'on_change', on 5
#     bronze tables that hold already-processed rows; no new data); target ≤ 1% of one core.
#     utime+stime of /proc/<pid>/stat (and the ns of /proc/<pid>/schedstat) of the processes
#     whose backend_type is 'medallion launcher' / 'medallion scheduler', deltas over the
#     window; a monitor polls the postmaster's children every 5 ms (no connection during
#     the window) and counts every new medallion process (run workers) and parallel worker of
#     the launcher or scheduler (the CPU they had at their last sample is added) — there
#     should be no run worker: empty checks start none.
#     medallion.runs rows added during the window are counted too.
#     --strace: afterwards, strace -c -f of the scheduler over another window (diagnosis).
#     --perf:   afterwards, perf record -g of the scheduler over another window.
#
# Without p6/p7 both run (P6 first, in its own database, dropped afterwards; then P7 in
# another).  Own scratch cluster: postgres-owned temp dir, unix socket only, port
# MEDALLION_BENCH_PORT (54349), defaults except shared_preload_libraries = 'medallion',
# max_worker_processes = 16; stopped on exit.
#
# Environment: BENCH_P6_ITERS (50), BENCH_P6_GAP_MS (200), BENCH_P6_POLL_MS (10),
# BENCH_P7_SECONDS (60), BENCH_P7_WARMUP (40: seconds between scheduling and the window,
# so that every pipeline had its first check), BENCH_P7_DAYS (0: days of history, one
# daily partition each, added to every bronze table: the cost of a check grows with the
# partitions), BENCH_P7_ROWS (1000: rows of today in each bronze table; the cost of a check
# grows with them too), MEDALLION_BENCH_PORT (54349),
# MEDALLION_BENCH_TMP (/tmp), BENCH_KEEP=1.  Exit status 1 if a target is missed, 2 on a
# usage or harness error.
set -euo pipefail

MEDALLION_PGBIN=${MEDALLION_BENCH_PGBIN:-${MEDALLION_PGBIN:-}}
# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"   # packages, work dir, build, server
ME=p6_p7_scheduler.sh
PORT=${MEDALLION_BENCH_PORT:-54349}
P6_ITERS=${BENCH_P6_ITERS:-50}
P6_GAP_MS=${BENCH_P6_GAP_MS:-200}
P6_POLL_MS=${BENCH_P6_POLL_MS:-10}
P7_SECONDS=${BENCH_P7_SECONDS:-60}
P7_WARMUP=${BENCH_P7_WARMUP:-40}
P7_DAYS=${BENCH_P7_DAYS:-0}
P7_ROWS=${BENCH_P7_ROWS:-1000}
P6_TARGET_S=1.0
P7_TARGET_PCT=1.0
PACKAGES=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev perl make gcc)
CLK_TCK=$(getconf CLK_TCK)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

BUILD=1 STRACE=0 PERF=0 DO_P6=0 DO_P7=0
for a in "$@"; do
  case $a in
    p6) DO_P6=1 ;;
    p7) DO_P7=1 ;;
    --no-build) BUILD=0 ;;
    --strace) STRACE=1 ;;
    --perf) PERF=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "p6_p7_scheduler.sh: unknown argument '$a'" >&2; usage >&2; exit 2 ;;
  esac
done
((DO_P6 || DO_P7)) || DO_P6=1 DO_P7=1

# ---- packages ---------------------------------------------------------------------------
((STRACE)) && PACKAGES+=(strace)
((PERF)) && PACKAGES+=(linux-perf)
install_packages
if ((STRACE || PERF)) && [[ $(id -u) != 0 ]]; then
  echo "p6_p7_scheduler.sh: --strace/--perf need root (they attach to a postgres process)" >&2; exit 1
fi

# ---- scratch cluster (test/lib.sh), cleanup ---------------------------------------------
BG_PID=''
# at_exit RC (test/lib.sh's exit trap, once the server is stopped)
at_exit() {
  [[ -n $BG_PID ]] && kill -INT "$BG_PID" 2>/dev/null || true
  if [[ ${BENCH_KEEP:-0} == 1 || $1 -gt 1 || $STRACE == 1 || $PERF == 1 ]]; then
    rm -rf "$WORK/tree"
    echo "kept: $WORK"
  else
    rm -rf "$WORK"
  fi
}
bench_cluster p6p7 "$BUILD" "shared_preload_libraries = 'medallion'" 'max_worker_processes = 16' \
  "log_line_prefix = '%m [%p] %q%b %a '"
PM_PID=$(head -n 1 "$PGDATA_DIR/postmaster.pid")
echo "scratch server: socket $SOCK port $PORT, postmaster $PM_PID ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"

sql() { as_pg "${PSQL[@]}" -d "${DB:-postgres}" "$@"; }

# wait_for DB SQL [SECONDS]: until SQL returns t
wait_for() {
  local db=$1 q=$2 n=$((${3:-30} * 10))
  for ((; n > 0; n--)); do
    [[ $(DB=$db sql -c "$q") == t ]] && return 0
    sleep 0.1
  done
  return 1
}

SCHED_OK="SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'medallion scheduler'
                         AND datname = current_database())"
MISSED=0 VERDICTS=()

# ---- P6 ---------------------------------------------------------------------------------
run_p6() {
  local db=p6
  echo; echo "=== P6: ingest → silver visible, 'on_change', $P6_ITERS iterations" \
             "(poll every $P6_POLL_MS ms, $P6_GAP_MS ms between iterations)"
  DB=postgres sql -c "CREATE DATABASE $db"
  DB=$db sql <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION medallion;
CREATE SCHEMA bench;
SELECT FROM medallion.create_bronze('p6_events', 'bench');
SELECT FROM medallion.create_silver('p6_events', 'bronze.p6_events',
  columns => '{"id": {"type": "bigint", "required": true}, "marker": "text",
               "updated_at": {"type": "timestamptz", "required": true}}',
  unique_key => '{id}', order_by => 'updated_at');
CREATE INDEX ON silver.p6_events (marker);
-- tc: before COMMIT, t0: after it returned, t1: the marker seen in silver
CREATE TABLE bench.p6 (i int PRIMARY KEY, marker text, tc timestamptz, t0 timestamptz,
                       t1 timestamptz, polls int);
CREATE PROCEDURE bench.p6(iters int, poll_ms int, gap_ms int)
LANGUAGE plpgsql AS $$
DECLARE
  m text; tc timestamptz; t0 timestamptz; t1 timestamptz; n int;
BEGIN
  FOR i IN 1..iters LOOP
    m := format('p6-%s-%s', i, md5(random()::text));
    PERFORM medallion.ingest('bronze.p6_events',
              jsonb_build_object('id', i, 'marker', m, 'updated_at', clock_timestamp()));
    tc := clock_timestamp();
    COMMIT;
    t0 := clock_timestamp();
    t1 := NULL; n := 0;
    LOOP
      n := n + 1;
      PERFORM FROM silver.p6_events WHERE marker = m;   -- a new snapshot each statement
      IF FOUND THEN t1 := clock_timestamp(); EXIT; END IF;
      EXIT WHEN clock_timestamp() - tc > interval '30 seconds';
      PERFORM pg_sleep(poll_ms / 1000.0);
    END LOOP;
    INSERT INTO bench.p6 VALUES (i, m, tc, t0, t1, n);
    COMMIT;
    PERFORM pg_sleep(gap_ms / 1000.0);
  END LOOP;
END $$;
SQL
  wait_for "$db" "$SCHED_OK" 30 || { echo "P6: no medallion scheduler in database $db"; tail -n 30 "$LOGS/server.log"; exit 2; }
  DB=$db sql -c "SELECT medallion.schedule('silver.p6_events', 'on_change')" >/dev/null
  sleep 1
  DB=$db sql -c "CALL bench.p6($P6_ITERS, $P6_POLL_MS, $P6_GAP_MS)"

  # per iteration: latency, and the run that loaded the marker (the first run started after
  # the commit; its started_at is the run row's clock_timestamp())
  DB=$db sql -F ' ' <<'SQL' >"$WORK/p6.txt"
SELECT p.i, round(extract(epoch FROM p.t1 - p.tc)::numeric * 1000, 1),
       round(extract(epoch FROM r.started_at - p.tc)::numeric * 1000, 1),
       round(extract(epoch FROM r.finished_at - r.started_at)::numeric * 1000, 1),
       round(extract(epoch FROM p.t1 - r.finished_at)::numeric * 1000, 1),
       p.polls, coalesce(r.rows_read, -1),
       round(extract(epoch FROM p.t0 - p.tc)::numeric * 1000, 1)
FROM bench.p6 p
LEFT JOIN LATERAL (SELECT * FROM medallion.runs r WHERE r.pipeline = 'silver.p6_events'
                   AND r.started_at >= p.tc ORDER BY r.started_at LIMIT 1) r ON true
ORDER BY p.i
SQL
  local lost runs_total
  lost=$(DB=$db sql -c "SELECT count(*) FROM bench.p6 WHERE t1 IS NULL")
  runs_total=$(DB=$db sql -c "SELECT count(*) || ' runs (' || count(*) FILTER (WHERE status = 'succeeded')
                                || ' succeeded)' FROM medallion.runs WHERE pipeline = 'silver.p6_events'")
  echo "  per iteration (ms): latency  commit→run-row  run  finished→seen  polls  rows_read  COMMIT"
  awk '{ printf "    %3d %8.1f %8.1f %8.1f %8.1f %5d %3d %8.1f\n", $1, $2, $3, $4, $5, $6, $7, $8 }' "$WORK/p6.txt" \
    | if ((P6_ITERS > 20)); then head -n 10; echo "    … (all in p6.txt)"; else cat; fi
  echo "  $runs_total; $lost markers never seen (30 s timeout)"
  # percentiles (nearest rank) of column C
  pct() { awk -v c="$1" -v q="$2" '$c != "" { v[++n] = $c } END {
            if (!n) { print "nan"; exit }
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            k = int(q * n + 0.999999); if (k < 1) k = 1; printf "%.1f", v[k] }' "$WORK/p6.txt"; }
  P6_P50=$(pct 2 0.5) P6_P95=$(pct 2 0.95) P6_MAX=$(pct 2 1)
  printf '  P6 latency ms: p50 %s  p95 %s  max %s   (medians: COMMIT %s, commit→run row %s, run %s, finished→seen %s)\n' \
    "$P6_P50" "$P6_P95" "$P6_MAX" "$(pct 8 0.5)" "$(pct 3 0.5)" "$(pct 4 0.5)" "$(pct 5 0.5)"
  if ((lost == 0)) && awk -v a="$P6_P50" -v t="$P6_TARGET_S" 'BEGIN { exit !(a / 1000 <= t) }'; then
    VERDICTS+=("VERDICT P6 ingest→silver visible p50 = $P6_P50 ms, p95 = $P6_P95 ms (target p50 <= ${P6_TARGET_S} s): PASS")
  else
    VERDICTS+=("VERDICT P6 ingest→silver visible p50 = $P6_P50 ms, p95 = $P6_P95 ms, $lost lost (target p50 <= ${P6_TARGET_S} s): FAIL")
    MISSED=1
  fi
  cp "$WORK/p6.txt" "$LOGS/p6.txt"
  DB=postgres sql -c "DROP DATABASE $db"   # its scheduler is stopped by the utility hook
}

# ---- P7 ---------------------------------------------------------------------------------
# The monitor: polls /proc every 5 ms for DURATION seconds (no database connection); prints
# the CPU deltas of the given pids and every new medallion child of the postmaster.
cat >"$WORK/monitor.pl" <<'PERL'
use strict; use warnings; use Time::HiRes qw(time sleep);
my ($pm, $secs, @watch) = @ARGV;   # watch: pid:label
sub slurp { my $f = shift; open(my $h, '<', $f) or return undef; local $/; my $s = <$h>; close $h; $s }
sub ticks { my $s = slurp("/proc/$_[0]/stat") // return undef; $s =~ s/^.*\) //s; my @f = split ' ', $s;
            return $f[11] + $f[12]; }                   # utime + stime (fields 14, 15)
sub ns { my $s = slurp("/proc/$_[0]/schedstat") // return undef; return (split ' ', $s)[0]; }
sub children { my $s = slurp("/proc/$pm/task/$pm/children") // ''; return split ' ', $s; }
my %start; my %known = map { $_ => 1 } children();
my %all0 = map { $_ => ticks($_) // 0 } ($pm, keys %known);
for (@watch) { my ($p) = split /:/; $start{$p} = [ticks($p), ns($p)]; }
my (%new, %last);   # new children: cmdline, last ticks/ns
my $t0 = time; my $samples = 0;
while (time - $t0 < $secs) {
  for my $c (children()) {
    next if $known{$c};
    if (!exists $new{$c}) { my $cl = slurp("/proc/$c/cmdline") // '?'; $cl =~ s/\0/ /g; $new{$c} = $cl; }
    my ($t, $n) = (ticks($c), ns($c));
    $last{$c} = [$t, $n] if defined $t;
    $new{$c} = do { my $cl = slurp("/proc/$c/cmdline"); defined $cl && $cl ne '' ? ($cl =~ s/\0/ /gr =~ s/\s+$//r) : $new{$c} };
  }
  $samples++;
  sleep 0.005;
}
my $wall = time - $t0;
printf "wall %.3f samples %d\n", $wall, $samples;
for (@watch) { my ($p, $l) = split /:/;
  my ($t, $n) = (ticks($p), ns($p));
  if (!defined $t) { print "watch $p $l gone 0 0\n"; next }
  printf "watch %d %s ok %d %d\n", $p, $l, $t - $start{$p}[0], ($n // 0) - ($start{$p}[1] // 0); }
my $cluster = 0;
for (keys %all0) { my $t = ticks($_); $cluster += $t - $all0{$_} if defined $t; }
$cluster += $_->[0] for values %last;
print "cluster $cluster\n";
for my $c (sort { $a <=> $b } keys %new) {
  my ($t, $n) = @{ $last{$c} // [0, 0] };
  printf "new %d %d %d %s\n", $c, $t, $n, $new{$c}; }
PERL

run_p7() {
  local db=p7 i b kind names=() pids=() line
  echo; echo "=== P7: idle CPU, 20 scheduled pipelines (7 x '5 seconds', 7 x '30 seconds', 6 x 'on_change')," \
             "no new data, ${P7_SECONDS} s window after ${P7_WARMUP} s;" \
             "5 bronze tables of $P7_ROWS rows + $P7_DAYS days of history"
  DB=postgres sql -c "CREATE DATABASE $db"
  DB=$db sql -v days="$P7_DAYS" -v rows="$P7_ROWS" <<'SQL'
SET client_min_messages = warning;
SET bench.days = :'days';
SET bench.rows = :'rows';
CREATE EXTENSION medallion;
DO $$
BEGIN
  FOR b IN 1..5 LOOP
    PERFORM medallion.create_bronze('p7_src' || b, 'bench');
    -- BENCH_P7_ROWS rows today, 10k per transaction, as ingest calls would land them
    FOR lo IN 1..current_setting('bench.rows')::int BY 10000 LOOP
      EXECUTE format('INSERT INTO bronze.p7_src%s (_raw, _batch_id) '
                     'SELECT jsonb_build_object(''id'', g, ''name'', ''n'' || g, ''amount'', g * 1.5, '
                     '''updated_at'', timestamptz ''2024-01-01'' + g * interval ''1 minute''), %L '
                     'FROM generate_series($1, $2) g', b, 'b' || lo)
        USING lo, least(lo + 9999, current_setting('bench.rows')::int);
    END LOOP;
  END LOOP;
  -- BENCH_P7_DAYS days of history: one daily partition each, a few rows in it
  FOR b IN 1..5 LOOP
    FOR d IN 1..current_setting('bench.days')::int LOOP
      EXECUTE format('CREATE TABLE bronze.%I PARTITION OF bronze.%I FOR VALUES FROM (%L) TO (%L)',
                     format('p7_src%s_p%s', b, to_char(current_date - d, 'YYYYMMDD')), 'p7_src' || b,
                     (current_date - d)::text || ' 00:00+00', (current_date - d + 1)::text || ' 00:00+00');
      EXECUTE format('INSERT INTO bronze.p7_src%s (_raw, _ingested_at, _batch_id) '
                     'SELECT jsonb_build_object(''id'', 100000 * %s + g, ''name'', ''old'', '
                     '''updated_at'', timestamptz ''2023-01-01'' + g * interval ''1 minute''), %L, %L '
                     'FROM generate_series(1, 10) g',
                     b, d, (current_date - d)::text || ' 12:00+00', 'old-' || d);
    END LOOP;
  END LOOP;
  FOR p IN 1..20 LOOP
    PERFORM medallion.create_silver(format('p7_%s', lpad(p::text, 2, '0')),
      format('bronze.p7_src%s', (p - 1) % 5 + 1)::regclass,
      columns => '{"id": {"type": "bigint", "required": true}, "name": "text",
                   "amount": {"type": "numeric"}, "updated_at": {"type": "timestamptz", "required": true}}',
      unique_key => '{id}', order_by => 'updated_at');
  END LOOP;
END $$;
SELECT FROM medallion.run_all();   -- catch up: no pending rows afterwards
SQL
  DB=$db sql -c "VACUUM ANALYZE"   # the steady state autovacuum reaches
  wait_for "$db" "$SCHED_OK" 30 || { echo "P7: no medallion scheduler in database $db"; tail -n 30 "$LOGS/server.log"; exit 2; }
  DB=$db sql <<'SQL' >/dev/null
SELECT medallion.schedule(format('silver.p7_%s', lpad(p::text, 2, '0')),
                          CASE p % 3 WHEN 1 THEN '5 seconds' WHEN 2 THEN '30 seconds' ELSE 'on_change' END)
FROM generate_series(1, 20) p;
SQL
  DB=$db sql -c "SELECT schedule, count(*) FROM medallion.pipelines WHERE layer = 'silver' GROUP BY 1 ORDER BY 1" \
    | sed 's/^/  scheduled: /'
  echo "  warm-up ${P7_WARMUP} s (first checks of every pipeline) …"
  sleep "$P7_WARMUP"

  local runs0 runs1 checked0 checked1 wal0 wal
  runs0=$(DB=$db sql -c "SELECT count(*) FROM medallion.runs")
  wal0=$(DB=$db sql -c "SELECT pg_current_wal_insert_lsn()")
  checked0=$(DB=$db sql -c "SELECT coalesce(max(last_checked_at), '-infinity') FROM medallion.pipelines")
  mapfile -t pids < <(DB=$db sql -F ' ' -c "SELECT pid, replace(backend_type, ' ', '_') || '(' || coalesce(datname, '-') || ')'
                                      FROM pg_stat_activity
                                      WHERE backend_type IN ('medallion launcher', 'medallion scheduler')
                                      ORDER BY backend_type, pid")
  local watch=()
  for line in "${pids[@]}"; do watch+=("${line%% *}:${line#* }"); done
  ((${#watch[@]} >= 2)) || { echo "P7: launcher or scheduler missing: ${pids[*]}"; exit 2; }
  echo "  measuring ${P7_SECONDS} s: ${watch[*]} (no connection during the window)"
  perl "$WORK/monitor.pl" "$PM_PID" "$P7_SECONDS" "${watch[@]}" >"$WORK/p7-monitor.txt"
  runs1=$(DB=$db sql -c "SELECT count(*) FROM medallion.runs")
  wal=$(DB=$db sql -c "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$wal0')")
  checked1=$(DB=$db sql -c "SELECT count(*) FROM medallion.pipelines WHERE last_checked_at > '$checked0'")
  cp "$WORK/p7-monitor.txt" "$LOGS/"

  local watch_re
  watch_re=$(for w in "${watch[@]}"; do echo "${w%%:*}"; done | paste -sd '|')
  local wall cluster_ticks=0 total_ticks=0 total_ns=0 n_workers=0 worker_ticks=0 worker_ns=0 others=()
  wall=$(awk '$1 == "wall" { print $2 }' "$WORK/p7-monitor.txt")
  while read -r kind a b c d rest; do
    case $kind in
      watch)
        [[ $c == ok ]] || { echo "P7: $b (pid $a) ended during the window"; MISSED=1; continue; }
        printf '  %-36s pid %-7s %5d ticks  %8.1f ms CPU  %6.3f%% of one core\n' "$b" "$a" "$d" \
          "$(awk -v n="$rest" 'BEGIN { print n / 1e6 }')" \
          "$(awk -v t="$d" -v w="$wall" -v k="$CLK_TCK" 'BEGIN { printf "%.3f", 100 * t / k / w }')"
        total_ticks=$((total_ticks + d)) total_ns=$((total_ns + rest)) ;;
      cluster)
        cluster_ticks=$a ;;
      new)
        rest="$d${rest:+ $rest}"   # the command line
        # the title a child sets (postgres: medallion run …); until then it shows the
        # postmaster's own command line
        if [[ $rest == "postgres: medallion"* || $rest =~ ^postgres:\ parallel\ worker\ for\ PID\ ($watch_re)$ ]]; then
          # CPU counted (a parallel worker of the launcher or scheduler too); run workers counted
          [[ $rest == "postgres: medallion run"* ]] && n_workers=$((n_workers + 1))
          worker_ticks=$((worker_ticks + b)) worker_ns=$((worker_ns + c))
          echo "  new medallion process during the window: pid $a ($rest), >= $b ticks"
        elif [[ $rest == *" -D "* || -z $rest || $rest == '?' ]]; then
          others+=("(short-lived, untitled)")
        else
          others+=("$rest")
        fi ;;
    esac
  done <"$WORK/p7-monitor.txt"
  ((${#others[@]})) && printf '  (other new children, not counted: %s)\n' "$(printf '%s\n' "${others[@]}" | sort | uniq -c | tr -s ' ' | paste -sd ';')"
  local pct pct_ns
  pct=$(awk -v t="$((total_ticks + worker_ticks))" -v w="$wall" -v k="$CLK_TCK" 'BEGIN { printf "%.3f", 100 * t / k / w }')
  pct_ns=$(awk -v t="$((total_ns + worker_ns))" -v w="$wall" 'BEGIN { printf "%.3f", 100 * t / 1e9 / w }')
  echo "  run workers started: $n_workers (monitor); medallion.runs rows added: $((runs1 - runs0));" \
       "pipelines checked (last_checked_at moved): $checked1 of 20"
  printf '  P7 launcher + scheduler + run workers: %.2f s CPU in %.1f s = %s%% of one core (schedstat: %s%%)\n' \
    "$(awk -v t="$((total_ticks + worker_ticks))" -v k="$CLK_TCK" 'BEGIN { print t / k }')" "$wall" "$pct" "$pct_ns"
  printf '  context: the whole cluster (every postgres process) used %s%% of one core; %s bytes of WAL written\n' \
    "$(awk -v t="$cluster_ticks" -v w="$wall" -v k="$CLK_TCK" 'BEGIN { printf "%.3f", 100 * t / k / w }')" "$wal"
  if ((n_workers == 0 && runs1 == runs0)) && awk -v a="$pct" -v t="$P7_TARGET_PCT" 'BEGIN { exit !(a <= t) }'; then
    VERDICTS+=("VERDICT P7 idle launcher+scheduler CPU = $pct% of one core, $n_workers run workers (target <= $P7_TARGET_PCT%, none): PASS")
  else
    VERDICTS+=("VERDICT P7 idle launcher+scheduler CPU = $pct% of one core, $n_workers run workers, $((runs1 - runs0)) runs (target <= $P7_TARGET_PCT%, none): FAIL")
    MISSED=1
  fi

  local sched
  sched=$(for w in "${watch[@]}"; do [[ $w == *scheduler* ]] && echo "${w%%:*}"; done | head -n 1)
  if ((STRACE)) && [[ -n $sched ]]; then
    echo; echo "--- strace -c -f of the scheduler (pid $sched), ${P7_SECONDS} s (after the window)"
    timeout -s INT "$P7_SECONDS" strace -c -f -p "$sched" -o "$WORK/strace-scheduler.txt" || true
    head -n 25 "$WORK/strace-scheduler.txt"
  fi
  if ((PERF)) && [[ -n $sched ]]; then
    echo; echo "--- perf record -g of the scheduler (pid $sched), ${P7_SECONDS} s (after the window)"
    perf record -g -F 999 -p "$sched" -o "$WORK/perf-scheduler.data" -- sleep "$P7_SECONDS" \
      >"$LOGS/perf-record.log" 2>&1 || true
    perf report -i "$WORK/perf-scheduler.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -n 30 || true
  fi
}

((DO_P6)) && run_p6
((DO_P7)) && run_p7

echo
grep -E 'ERROR|FATAL|PANIC' "$LOGS/server.log" \
  | grep -v 'terminating background worker "medallion scheduler" due to administrator command' | head -n 5 | sed 's/^/  server log: /' || true
printf '%s\n' "${VERDICTS[@]}"
exit "$MISSED"
