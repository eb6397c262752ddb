# shellcheck shell=bash disable=SC2034  # (variables used by the scripts that source it)
# test/lib.sh — what test/run, demo/run and the benchmarks (test/bench/) share; sourced,
# not run.
#
# The caller sets ME (its name, the prefix of its messages) and PORT, sources this file,
# then calls in order:
#   stop_server_on_exit   EXIT/INT/TERM traps: the scratch server is stopped on every way
#                         out; then the caller's at_exit RC runs, if it defines one
#   install_packages      as root: apt-get install whatever of PACKAGES is missing
#   make_workdir PREFIX   a temp dir PREFIX.XXXXXX holding a copy of the tree (no .git):
#                         sets WORK, TREE, SOCK, PGDATA_DIR, LOGS and PSQL
#   build_install         build with WARN_CFLAGS, make install, chown WORK to postgres,
#                         cd to TREE; non-zero (build log printed) if that failed
#   start_server [LINE…]  initdb + start a server on PORT, listening only on a unix socket
#                         in WORK, with the settings of SERVER_CONF (the test suites' by
#                         default); each LINE is added to its postgresql.conf
# A benchmark calls bench_cluster instead of the last three (see there).
# Everything that touches the server runs as `postgres` through as_pg (the checkout may
# sit where postgres cannot read), from the copy in WORK.

# MEDALLION_PGBIN: another PostgreSQL 15 installation's bin directory (e.g. a
# relocated copy, so that several checkouts can build, install and test at once).
PGBIN=${MEDALLION_PGBIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=$PGBIN/pg_config
PGXS_DIR=$(cd "$PGBIN/../lib/pgxs" 2>/dev/null && pwd || echo /usr/lib/postgresql/15/lib/pgxs)
WARN_CFLAGS='-Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers'
PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-pgtap pgtap
          libtap-parser-sourcehandler-pgtap-perl libcurl4-openssl-dev libipc-run-perl
          perl make gcc python3)
# The caller's stdout/stderr: an interrupt trap runs inside whatever function it lands in,
# with that function's redirections (a suite log); exit handlers report through these.
exec 3>&1 4>&2

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
unset LANGUAGE LC_CTYPE LC_COLLATE LC_MESSAGES LC_MONETARY LC_NUMERIC LC_TIME
export LANG=C.UTF-8 LC_ALL=C.UTF-8

WORK='' TREE='' SOCK='' PGDATA_DIR='' LOGS=''
# The scratch server's settings besides its socket and port: the test suites'.
SERVER_CONF=("shared_preload_libraries = 'medallion,pg_cron'" 'cron.use_background_workers = on'
             'max_worker_processes = 32' 'fsync = off' "log_line_prefix = '%m [%p] %q%a '")
note() { printf '\n=== %s\n' "$*"; }

# as_pg [VAR=value…] COMMAND…: run as postgres (when root). Fds 3 and 4 are not passed on,
# so that no server started from here holds the caller's output open.
if [[ $(id -u) == 0 ]]; then
  as_pg() { runuser -u postgres -- env "PATH=$PATH" "$@" 3>&- 4>&-; }
else
  as_pg() { env "$@" 3>&- 4>&-; }
fi

server_running() { [[ -n $PGDATA_DIR && -f $PGDATA_DIR/postmaster.pid ]]; }
stop_server() {
  if server_running; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null 2>&1 \
      || as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
  fi
}
show_server_log() {
  note "server log (tail): $LOGS/server.log"
  tail -n 30 "$LOGS/server.log"
}

# on_exit: stop the server, then at_exit RC (the caller's, if any; it may exit itself).
on_exit() {
  local rc=$?
  trap - EXIT
  stop_server
  if declare -F at_exit >/dev/null; then at_exit "$rc"; fi
  exit "$rc"
}
stop_server_on_exit() {
  trap on_exit EXIT
  trap 'exit 130' INT TERM
}

# ---- packages ---------------------------------------------------------------------------
install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
      echo "$ME: missing packages (run as root to install): ${missing[*]}" >&2; exit 1
    fi
    note "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  id postgres >/dev/null 2>&1 || { echo "$ME: no 'postgres' user" >&2; exit 1; }
}

# ---- copy, build, install ---------------------------------------------------------------
make_workdir() {
  WORK=$(mktemp -d "$1.XXXXXX")
  TREE=$WORK/tree SOCK=$WORK PGDATA_DIR=$WORK/data LOGS=$WORK/logs
  PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres)
  mkdir -p "$TREE" "$LOGS"
  tar -C "$ROOT" --exclude=./.git -cf - . | tar -C "$TREE" -xf -
}

build_install() {
  local ok=1
  note "build (PG_CFLAGS=$WARN_CFLAGS)"
  {
    make -C "$TREE" -s PG_CONFIG="$PG_CONFIG" clean >/dev/null &&
    make -C "$TREE" PG_CONFIG="$PG_CONFIG" PG_CFLAGS="$WARN_CFLAGS" &&
    make -C "$TREE" PG_CONFIG="$PG_CONFIG" install
  } >"$LOGS/build.log" 2>&1 || ok=0
  chown -R postgres:postgres "$WORK" 2>/dev/null || true
  if ((!ok)); then
    cat "$LOGS/build.log"
    echo "$ME: build or install failed"
    return 1
  fi
  grep -E 'warning:|error:' "$LOGS/build.log" || true
  echo "built and installed"
  cd "$TREE" || return
}

# ---- scratch server ---------------------------------------------------------------------
start_server() {
  note "scratch server: socket $SOCK port $PORT"
  as_pg "$PGBIN/initdb" -E UTF8 --locale=C.UTF-8 -A trust -U postgres -D "$PGDATA_DIR" \
    >"$LOGS/initdb.log" 2>&1 || { cat "$LOGS/initdb.log"; return 1; }
  {
    printf '\n# --- %s scratch server ---\n' "$ME"
    cat <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
CONF
    printf '%s\n' "${SERVER_CONF[@]}"
    if (($#)); then printf '%s\n' "$@"; fi
  } >>"$PGDATA_DIR/postgresql.conf"
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOGS/server.log" -w -t 60 start >/dev/null 2>&1 \
    || { echo "server did not start:"; tail -n 40 "$LOGS/server.log"; return 1; }
  echo "started"
}

# ---- benchmarks (test/bench/) -----------------------------------------------------------
# bench_cluster NAME BUILD LINE…: the scratch cluster of a benchmark, once install_packages
# ran.  The work dir is ${MEDALLION_BENCH_TMP:-/tmp}/medallion-NAME.XXXXXX (WORK; the server's
# data in $WORK/pgdata, LOGS), stopped on exit (the caller's at_exit RC then decides what
# of WORK to keep); medallion is built and installed from a copy of the tree unless BUILD
# is 0; the server runs with exactly the settings LINE… besides its socket and port (no
# suite defaults: a benchmark states what it measures under).  PSQL is then psql -At.
# Exits 2 (a harness error) if the build or the start fails.
bench_cluster() {
  local name=$1 build=$2
  shift 2
  make_workdir "${MEDALLION_BENCH_TMP:-/tmp}/medallion-$name"
  PGDATA_DIR=$WORK/pgdata
  chmod 755 "$WORK"
  stop_server_on_exit
  echo "$ME: work dir $WORK"
  if ((build)); then
    (build_install) >/dev/null || { cat "$LOGS/build.log"; echo "$ME: build failed" >&2; exit 2; }
    echo "built and installed medallion from $ROOT"
  fi
  chown -R postgres:postgres "$WORK" 2>/dev/null || true
  SERVER_CONF=("$@")
  start_server || exit 2
  PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres)
}
