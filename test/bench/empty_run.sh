#!/usr/bin/env bash
# test/bench/empty_run.sh — the empty run: run() of a pipeline with nothing new (not part of
# test/run).
#
#   test/bench/empty_run.sh [--no-build] [--perf] [--explain]
#     --no-build   use the medallion already installed
#     --perf       also perf-profile 2000 empty runs
#     --explain    also log the plan of every statement two empty runs execute
#
# A silver pipeline over BENCH_EMPTY_ROWS (100k) bronze rows, loaded by a first run.  Timed:
# BENCH_EMPTY_CALLS (500) statements `SELECT medallion.run(p)` (each its own transaction) in
# one session, vs the same number of calls of a hand-written equivalent: a PL/pgSQL function
# over a job table of its own (bench.jobs) that does what an incremental job with nothing to
# do must do: lock the job's row and read its snapshot watermark, probe the bronze window
# (the same (_xid, _seq) index range), record a run row, stamp the job.  PL/pgSQL keeps its
# plans, so this is the floor for "a run that finds nothing".
# Targets: ≤ 1 ms per run() (the issue's), and the ratio run()/hand-written is reported.
# Also counted: the statements one empty run() executes (auto_explain, nested statements)
# and, of those, the ones on medallion's catalog (medallion.* tables).
#
# Timing as in p2_p3_silver.sh (silver_lib.sh): clock_timestamp() differences in the server,
# commit included, BENCH_REPS times (3), the order of the sides alternating; the median
# counts.  Environment: BENCH_EMPTY_ROWS (100000), BENCH_EMPTY_CALLS (500), BENCH_REPS (3),
# MEDALLION_BENCH_PORT (55448), MEDALLION_BENCH_PGBIN, MEDALLION_BENCH_TMP (/tmp),
# BENCH_KEEP=1.  The exit status is 1 if a target is missed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/silver_lib.sh"

ROWS=${BENCH_EMPTY_ROWS:-100000}
CALLS=${BENCH_EMPTY_CALLS:-500}
EMPTY_TARGET_MS=1.0

bench_init empty_run "$@"
((${#BENCH_ARGS[@]} == 0)) || { echo "empty_run.sh: unknown argument '${BENCH_ARGS[0]}'" >&2; exit 2; }

sql -c "SELECT medallion.create_bronze('er', 'bench')" >/dev/null
sql -c "CALL bench.fill('bronze.er', 1, $ROWS, 10000, 'g', 'NULL')"
create_silver er er
sql -c "SELECT medallion.run('silver.er')" >/dev/null
sql -c "VACUUM ANALYZE bronze.er, silver.er"

# The hand-written side: a job table with a snapshot watermark, a run table, one function.
sql <<'SQL'
CREATE TABLE bench.jobs (name text PRIMARY KEY, state text NOT NULL DEFAULT 'active',
                         done pg_snapshot NOT NULL, last_success_at timestamptz);
CREATE TABLE bench.job_runs (run_id bigserial PRIMARY KEY, job text NOT NULL,
                             status text NOT NULL, started_at timestamptz NOT NULL,
                             finished_at timestamptz, rows_read bigint NOT NULL DEFAULT 0);
CREATE INDEX ON bench.job_runs (job, run_id);
INSERT INTO bench.jobs (name, done) VALUES ('er', pg_current_snapshot());
CREATE FUNCTION bench.hw_empty_run(j text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  w pg_snapshot;
  id bigint;
BEGIN
  SELECT done INTO w FROM bench.jobs WHERE name = j AND state = 'active' FOR NO KEY UPDATE;
  IF NOT FOUND THEN RAISE EXCEPTION 'job % is not active', j; END IF;
  IF EXISTS (SELECT 1 FROM bronze.er b
             WHERE b._xid >= pg_snapshot_xmin(w) AND b._xid < pg_snapshot_xmax(pg_current_snapshot())
               AND NOT pg_visible_in_snapshot(b._xid, w) LIMIT 1) THEN
    RAISE EXCEPTION 'not empty';
  END IF;
  INSERT INTO bench.job_runs (job, status, started_at, finished_at)
    VALUES (j, 'succeeded', clock_timestamp(), clock_timestamp()) RETURNING run_id INTO id;
  UPDATE bench.jobs SET last_success_at = now() WHERE name = j;
  RETURN id;
END $$;
SQL

calls() { local i; for ((i = 0; i < CALLS; i++)); do echo "SELECT $1 \\g /dev/null"; done; }
RUN_CALL="medallion.run('silver.er')"
HW_CALL="bench.hw_empty_run('er')"
per_call() {   # per_call MEASURE REP CALL
  local r wall cpu
  r=$(TIMED_CHECKPOINT=0 timed "$(calls "$3")")
  read -r wall cpu <<<"${r//|/ }"
  record "$1" "$2" "$(awk -v w="$wall" -v c="$cpu" -v n="$CALLS" 'BEGIN { printf "%.4f %.4f", w * 1000 / n, c * 1000 / n }')"
}

sql >/dev/null <<<"$(CALLS=20 calls "$RUN_CALL")
$(CALLS=20 calls "$HW_CALL")"   # warm
echo; echo "=== empty runs: $CALLS calls per side, $REPS reps, order alternating (ms per call)"
for ((rep = 1; rep <= REPS; rep++)); do
  if ((rep % 2)); then
    per_call "run() empty" "$rep" "$RUN_CALL"; per_call "hand-written empty" "$rep" "$HW_CALL"
  else
    per_call "hand-written empty" "$rep" "$HW_CALL"; per_call "run() empty" "$rep" "$RUN_CALL"
  fi
done
n=$(sql -c "SELECT count(*) FROM medallion.runs WHERE pipeline = 'silver.er' AND status = 'succeeded' AND rows_read = 0")
echo "    succeeded empty runs recorded: $n"

# The statements of one empty run: auto_explain logs each (nested ones too) with its text.
count_statements() {
  local start out=$WORK/statements.log
  start=$(stat -c %s "$LOGS/server.log")
  sql >/dev/null <<SQL
SET client_min_messages = warning;
SELECT medallion.run('silver.er');
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SELECT medallion.run('silver.er');
SQL
  tail -c +"$((start + 1))" "$LOGS/server.log" >"$out"
  STATEMENTS=$(($(grep -c 'Query Text:' "$out") - 1))   # less the top-level SELECT
  CATALOG_STATEMENTS=$(grep 'Query Text:' "$out" |
    grep -cE 'medallion\.(pipelines|runs|watermarks|expectations|pause_requests|dlq|quarantine|alerts|batches)\b' || true)
  echo "    one empty run: $STATEMENTS statements, $CATALOG_STATEMENTS on the catalog ($out)"
  grep 'Query Text:' "$out" | sed 's/.*Query Text: /      /' | cut -c1-150
}
echo; echo "=== statements of one empty run()"
count_statements

if ((EXPLAIN)); then
  EXPLAIN_MIN_MS=0 explain_nested empty "" "SELECT $RUN_CALL;
SELECT $RUN_CALL;"
fi
if ((PERF)); then
  CALLS=2000 perf_profile empty "" "$(CALLS=2000 calls "$RUN_CALL")"
fi

# ---- summary ----------------------------------------------------------------------------
echo
echo "=== summary (medians of $REPS; each rep in brackets; load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-40s %9s %9s\n' "measurement (ms per call)" wall cpu
line() { printf '%-40s %9.3f %9.3f   [%s]\n' "$1" "$(median_of "$1")" "$(median_of "$1" cpu)" "$(all_of "$1")"; }
line "run() empty"
line "hand-written empty"
e=$(median_of "run() empty")
u=$(ratio "$e" "$(median_of "hand-written empty")")
uc=$(ratio "$(median_of "run() empty" cpu)" "$(median_of "hand-written empty" cpu)")
echo "empty run(): $e ms per call (target <= $EMPTY_TARGET_MS); run()/hand-written: wall $u, cpu $uc"
echo "statements per empty run(): $STATEMENTS, on the catalog: $CATALOG_STATEMENTS"
echo
verdict "empty run() ms" "$e" "$EMPTY_TARGET_MS"
exit "$MISSED"
