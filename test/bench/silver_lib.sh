# test/bench/silver_lib.sh — shared by test/bench/p2_p3_silver.sh and test/bench/p4_incremental.sh
# (sourced, not run).  A scratch cluster of its own, set up by test/lib.sh's bench_cluster:
#
#   bench_init NAME "$@"   parses --no-build --perf --explain -h, installs what is missing,
#                          makes a temp dir owned by postgres, builds and installs medallion
#                          from a copy of the tree (unless --no-build), starts the server
#                          (unix socket only, port MEDALLION_BENCH_PORT, default 55448) and
#                          creates database bench with the extension and the helpers below.
#   sql …                  psql -At on database bench, as postgres.
#   timed STATEMENTS…      runs them in one session after a CHECKPOINT (TIMED_CHECKPOINT=0:
#                          without); prints
#                          "wall_seconds cpu_seconds" (clock_timestamp() differences taken in
#                          the server, commit included; backend user+system CPU time from
#                          /proc/self/stat, 10 ms resolution: robust against other load).
#   record MEASURE REP "WALL CPU" [EXTRA]  appends to $RESULTS and prints one line.
#   median_of MEASURE [wall|cpu]           the median over the reps.
#   perf_profile LABEL PRE_SQL STATEMENT   perf record -g of the backend running STATEMENT.
#   explain_nested LABEL PRE_SQL STATEMENT logs the plans (EXPLAIN ANALYZE, BUFFERS) of every
#                          statement the call runs, via auto_explain, and prints them.
#
# Environment: MEDALLION_BENCH_PORT (55448), BENCH_REPS (3), MEDALLION_BENCH_TMP (/tmp),
# BENCH_KEEP=1 keeps the temp dir (logs, perf data), MEDALLION_BENCH_PGBIN (the server's bin
# directory, /usr/lib/postgresql/15/bin: a relocated copy of the installation lets a patched
# medallion be measured without installing it; use with --no-build).

# The scratch cluster (test/lib.sh: packages, work dir, build, server), with the settings
# every side of these benchmarks runs under.
MEDALLION_PGBIN=${MEDALLION_BENCH_PGBIN:-${MEDALLION_PGBIN:-}}
# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
PORT=${MEDALLION_BENCH_PORT:-55448}
REPS=${BENCH_REPS:-3}
PACKAGES=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev make gcc)
CLK_TCK=$(getconf CLK_TCK)
BENCH_CONF=("shared_preload_libraries = 'medallion'" 'shared_buffers = 1GB' 'max_wal_size = 10GB'
            'checkpoint_timeout = 30min' 'synchronous_commit = off' "log_line_prefix = '%m [%p] %q%a '")

BUILD=1 PERF=0 EXPLAIN=0 BENCH_ARGS=()

bench_usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

# at_exit RC (test/lib.sh's exit trap, once the server is stopped): WORK is kept with
# BENCH_KEEP=1 or after a harness error.
at_exit() {
  [[ -n ${PERF_PID:-} ]] && kill -INT "$PERF_PID" 2>/dev/null || true
  if [[ -n ${WORK:-} ]]; then
    if [[ ${BENCH_KEEP:-0} == 1 || $1 -gt 1 ]]; then
      echo "kept: $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
}

bench_init() {
  local name=$1; shift
  local a
  for a in "$@"; do
    case $a in
      --no-build) BUILD=0 ;;
      --perf) PERF=1 ;;
      --explain) EXPLAIN=1 ;;
      -h|--help) bench_usage; exit 0 ;;
      -*) echo "$name: unknown option '$a'" >&2; bench_usage >&2; exit 2 ;;
      *) BENCH_ARGS+=("$a") ;;
    esac
  done

  ME=$name
  ((PERF)) && PACKAGES+=(linux-perf)
  install_packages
  if ((PERF)) && [[ $(id -u) != 0 ]]; then
    echo "$name: --perf needs root (perf record -p on a postgres backend)" >&2; exit 1
  fi

  if [[ -n ${BENCH_P4_REUSE:-} ]]; then   # a kept work dir: start its server again
    WORK=$BENCH_P4_REUSE BENCH_KEEP=1 BUILD=0
    PGDATA_DIR=$WORK/pgdata SOCK=$WORK LOGS=$WORK/logs
    stop_server_on_exit
    sed -i "s/^port = .*/port = $PORT/" "$PGDATA_DIR/postgresql.conf"
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOGS/server.log" -w -t 120 start >/dev/null 2>&1 \
      || { echo "server did not start:"; tail -n 40 "$LOGS/server.log"; exit 2; }
    PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres)
    RESULTS=$WORK/results-$(date +%s).tsv
    : >"$RESULTS"
    echo "$name: reusing $WORK (load $(cut -d' ' -f1-3 /proc/loadavg))"
    return
  fi
  PERF_PID=
  bench_cluster "$name" "$BUILD" "${BENCH_CONF[@]}"
  echo "scratch server: socket $SOCK port $PORT ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"

  DB=postgres sql -c 'CREATE DATABASE bench'
  sql <<SQL
CREATE EXTENSION medallion;
CREATE SCHEMA bench;
-- this backend's user+system CPU seconds
CREATE FUNCTION bench.cpu() RETURNS numeric LANGUAGE sql VOLATILE AS \$\$
  SELECT (split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint)::numeric / $CLK_TCK
  FROM pg_read_file('/proc/self/stat') AS s \$\$;
-- one bronze payload: row g, key k; bad (0..5) makes it fail the contract of bench_contract()
CREATE FUNCTION bench.payload(g bigint, k bigint, bad int DEFAULT NULL) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS \$\$
  SELECT CASE bad WHEN 0 THEN p || '{"amount": "n/a"}'          -- 22P02
                  WHEN 1 THEN p || '{"updated_at": "not-a-date"}' -- 22007
                  WHEN 2 THEN p || '{"qty": 99999999999}'        -- 22003
                  WHEN 3 THEN p - 'updated_at'                   -- required
                  WHEN 4 THEN p - 'id'                           -- required (key)
                  WHEN 5 THEN p || '{"created": "2024-02-30"}'   -- 22008
                  ELSE p END
  FROM (SELECT jsonb_build_object(
    'n', g, 'id', k,
    'email', 'user' || k || '@example.com',
    'name', 'Customer ' || k,
    'country', (ARRAY['US','FR','DE','GB','ES'])[1 + g % 5],
    'amount', round(((g * 37) % 100000) / 100.0, 2),
    'qty', g % 50,
    'active', g % 3 = 0,
    'created', (date '2020-01-01' + (k % 1500)::int)::text,
    'updated_at', to_char(timestamptz '2024-01-01 00:00:00+00'
                          + make_interval(secs => (g * 7919) % 10000019),
                          'YYYY-MM-DD"T"HH24:MI:SS"Z"')) AS p) x \$\$;
-- lands rows first..last into a bronze table, one transaction (one _xid, one batch id) per
-- batch rows, as a stream of ingest calls would: key(g) and bad(g) are SQL expressions in g
CREATE PROCEDURE bench.fill(tbl text, first bigint, last bigint, batch int, key text, bad text)
LANGUAGE plpgsql AS \$\$
DECLARE lo bigint := first;
BEGIN
  WHILE lo <= last LOOP
    EXECUTE format('INSERT INTO %s (_raw, _batch_id) SELECT bench.payload(g, %s, %s), %L '
                   'FROM generate_series(\$1, \$2) g', tbl, key, bad, 'b' || lo)
      USING lo, least(last, lo + batch - 1);
    COMMIT;
    lo := lo + batch;
  END LOOP;
END \$\$;
SQL
  RESULTS=$WORK/results.tsv   # measure <TAB> rep <TAB> wall <TAB> cpu <TAB> extra
  : >"$RESULTS"
}

sql() { as_pg "${PSQL[@]}" -d "${DB:-bench}" "$@"; }

# The contract every benchmark pipeline uses, and the same columns for hand-written SQL.
COLUMNS=(id:bigint email:text name:text country:text 'amount:numeric(12,2)' qty:integer
         active:boolean created:date updated_at:timestamptz)
CONTRACT='{"id": {"type": "bigint", "required": true}, "email": "text", "name": "text",
  "country": "text", "amount": {"type": "numeric(12,2)"}, "qty": {"type": "integer"},
  "active": {"type": "boolean"}, "created": {"type": "date"},
  "updated_at": {"type": "timestamptz", "required": true}}'

# create_silver NAME BRONZE: a pipeline with that contract (key id, version updated_at)
create_silver() {
  sql -c "SELECT medallion.create_silver('$1', 'bronze.$2', columns => '$CONTRACT',
            unique_key => '{id}', order_by => 'updated_at')" >/dev/null
}

# Hand-written SQL: the typed rows of a bronze table (WHERE clause optional), deduplicated
# latest-wins by (version, _seq).
hw_typed() {
  local c n t sel=""
  for c in "${COLUMNS[@]}"; do
    n=${c%%:*} t=${c#*:}
    sel+="(_raw->>'$n')::$t AS $n, "
  done
  echo "SELECT DISTINCT ON (id) * FROM (SELECT ${sel}_seq, _batch_id FROM $1 ${2:-}) b
        ORDER BY id, updated_at DESC, _seq DESC"
}
_cols() { local c out=""; for c in "${COLUMNS[@]}"; do out+="${1:-}${c%%:*}, "; done; echo "$out"; }
_sets() { local c n out=""; for c in "${COLUMNS[@]:1}"; do n=${c%%:*}; out+="$n = $1$n, "; done; echo "$out"; }
# hw_merge TARGET BRONZE [WHERE]
hw_merge() {
  echo "MERGE INTO $1 AS t USING ($(hw_typed "$2" "${3:-}")) AS s ON t.id = s.id
  WHEN MATCHED AND (s.updated_at, s._seq) > (t.updated_at, t._source_seq) THEN UPDATE SET
    $(_sets s.)_source_seq = s._seq, _batch_id = s._batch_id, _loaded_at = now(), _run_id = 1
  WHEN NOT MATCHED THEN INSERT ($(_cols)_source_seq, _batch_id, _run_id, _created_run_id)
    VALUES ($(_cols s.)s._seq, s._batch_id, 1, 1);"
}
# hw_upsert TARGET BRONZE [WHERE]
hw_upsert() {
  echo "INSERT INTO $1 AS t ($(_cols)_source_seq, _batch_id, _run_id, _created_run_id)
  SELECT $(_cols)_seq, _batch_id, 1, 1 FROM ($(hw_typed "$2" "${3:-}")) s
  ON CONFLICT (id) DO UPDATE SET $(_sets EXCLUDED.)_source_seq = EXCLUDED._source_seq,
    _batch_id = EXCLUDED._batch_id, _loaded_at = now(), _run_id = 1
  WHERE (EXCLUDED.updated_at, EXCLUDED._source_seq) > (t.updated_at, t._source_seq);"
}
# same_content A B: rows of A not in B plus rows of B not in A (contract columns + lineage)
same_content() {
  local cols="$(_cols)_source_seq, _batch_id"
  sql -c "SELECT (SELECT count(*) FROM (SELECT $cols FROM $1 EXCEPT ALL SELECT $cols FROM $2) x)
               + (SELECT count(*) FROM (SELECT $cols FROM $2 EXCEPT ALL SELECT $cols FROM $1) y)"
}

timed() {
  sql <<SQL
SET client_min_messages = warning;
SET TimeZone = 'UTC';
$( ((${TIMED_CHECKPOINT:-1})) && echo 'CHECKPOINT;')
SELECT clock_timestamp() AS t0, bench.cpu() AS c0 \gset
$(printf '%s\n' "$@")
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric, 3) AS secs,
       bench.cpu() - :c0 AS cpu \gset
SELECT :secs, :cpu;
SQL
}

record() {
  local wall cpu
  read -r wall cpu <<<"${3//|/ }"
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$wall" "$cpu" "${4:-}" >>"$RESULTS"
  printf '  %-40s rep %d: %8.3f s wall %8.2f s cpu  %s\n' "$1" "$2" "$wall" "$cpu" "${4:-}"
}

median_of() {
  awk -F'\t' -v m="$1" -v f="${2:-wall}" '$1 == m { n++; v[n] = (f == "cpu" ? $4 : $3) }
    END { if (!n) { print 0; exit }
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          printf "%.3f\n", (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2) }' "$RESULTS"
}
all_of() { awk -F'\t' -v m="$1" '$1 == m { printf "%s%s", (n++ ? " " : ""), $3 }' "$RESULTS"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# verdict NAME VALUE TARGET: one line, sets MISSED
MISSED=0
verdict() {
  if le "$2" "$3"; then
    echo "VERDICT $1 = $2 <= $3: PASS"
  else
    echo "VERDICT $1 = $2 <= $3: FAIL"; MISSED=1
  fi
}

perf_profile() {
  local label=$1 pre=$2 stmt=$3 pidfile=$WORK/perf-$1.pid data=$WORK/perf-$1.data
  local report=$WORK/perf-$1.txt psql_pid pid
  rm -f "$pidfile"
  sql >"$LOGS/perf-$label.log" 2>&1 <<SQL &
SET client_min_messages = warning;
SET TimeZone = 'UTC';
$pre
CHECKPOINT;
SELECT pg_backend_pid() \g $pidfile
SELECT pg_sleep(1);
$stmt
SQL
  psql_pid=$!
  for _ in $(seq 100); do [[ -s $pidfile ]] && break; sleep 0.1; done
  pid=$(cat "$pidfile")
  perf record -F 999 -g -p "$pid" -o "$data" >"$LOGS/perf-record-$label.log" 2>&1 &
  PERF_PID=$!
  wait "$psql_pid" || true
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  PERF_PID=
  perf report -i "$data" --no-children --sort dso,symbol --percent-limit 0.7 --stdio -g none \
    >"$report" 2>/dev/null || true
  perf report -i "$data" --children --sort symbol --percent-limit 3 --stdio -g none \
    >"$report.children" 2>/dev/null || true
  echo; echo "--- perf: $label, self time (full report $report)"
  grep -E '^ +[0-9]' "$report" | head -n 25
  echo "--- perf: $label, inclusive time (children) of the main frames"
  grep -E '^ +[0-9]' "$report.children" | head -n 30
}

explain_nested() {
  local label=$1 pre=$2 stmt=$3 out=$WORK/explain-$1.txt
  local start
  start=$(stat -c %s "$LOGS/server.log")
  sql >"$LOGS/explain-$label.log" 2>&1 <<SQL
SET client_min_messages = warning;
SET TimeZone = 'UTC';
$pre
LOAD 'auto_explain';
SET auto_explain.log_min_duration = ${EXPLAIN_MIN_MS:-20};
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_timing = on;
$stmt
SQL
  tail -c +"$((start + 1))" "$LOGS/server.log" >"$out"
  echo; echo "--- plans of $label (auto_explain: EXPLAIN ANALYZE, BUFFERS of each statement; $out)"
  # the plan lines, without the long query texts
  awk '/LOG:  duration:/ { print; st = "q"; next }
       /Query Text:/ { q = $0; sub(/.*Query Text: /, "", q)
                       print "  query: " substr(q, 1, 150) (length(q) > 150 ? " ..." : ""); st = "q"; next }
       /^\t/ && st == "q" && /^\t *(->|[A-Z][^(]*  \(cost)/ { st = "p" }
       /^\t/ && st == "p" { print; next }
       /^\t/ { next }
       { st = "" }' "$out" | cut -c1-220
}
