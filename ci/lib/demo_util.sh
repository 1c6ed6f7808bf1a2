# SPDX-License-Identifier: Apache-2.0
# Shell helpers of ci/demo (sourced): bounded waits, a free loopback port, the registry as a child process,
# and cleanup of every process the demo started, by pid.

# Processes started by the demo, stopped at exit (newest first).
demo_pids=()

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }

# die MESSAGE [LOG...]: prints the message and the tail of each log, exits 1.
die() {
  local message=$1
  shift
  echo "ci/demo: $message" >&2
  local log
  for log in "$@"; do
    if [ -s "$log" ]; then
      echo "--- last lines of $log:" >&2
      tail -n 25 "$log" >&2
    fi
  done
  exit 1
}

# wait_for SECONDS CMD...: runs CMD every 0.5 s until it succeeds (0); after SECONDS, returns 1.
wait_for() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      return 1
    fi
    sleep 0.5
  done
}

# show WHAT CMD...: runs CMD and prints its output indented; when CMD fails, dies naming WHAT.
show() {
  local what=$1 out
  shift
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    die "$what"
  fi
  printf '%s\n' "$out" | sed 's/^/   /'
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# track PID: stop it at exit.
track() { demo_pids=("$1" "${demo_pids[@]}"); }

# stop_pid PID [SIGNAL]: signals one process the demo started and reaps it (bounded: 10 s, then SIGKILL).
stop_pid() {
  local pid=$1 sig=${2:-TERM} i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# A cgroup the demo created for the app (removed at exit, once its processes are gone).
app_cgroup=

cleanup() {
  local pid
  for pid in "${demo_pids[@]}"; do stop_pid "$pid"; done
  if [ -n "$app_cgroup" ]; then rmdir "$app_cgroup" 2>/dev/null || true; fi
}

# make_app_cgroup NAME: a cgroup for the app, as a container runtime makes one per container, so that the
# sidecar follows the app's processes only (probe.cgroup) and not, say, this script's own curl calls.
# cgroup v2 (/sys/fs/cgroup), or the unified hierarchy of a hybrid setup, or else the v1 pids hierarchy.
# Sets app_cgroup to its directory.
make_app_cgroup() {
  local base
  for base in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/pids; do
    if [ -f "$base/cgroup.procs" ] && mkdir "$base/$1" 2>/dev/null; then
      app_cgroup="$base/$1"
      return 0
    fi
  done
  die "cannot create a cgroup $1 under /sys/fs/cgroup (cgroup v2 or v1 pids): the app needs its own cgroup"
}

# start_registry DIR ADDR: Debian's docker-registry (CNCF distribution) on ADDR with its storage in DIR/data;
# sets registry_pid. The same DIR and ADDR bring back the same content after a stop.
start_registry() {
  local dir=$1 addr=$2
  mkdir -p "$dir/data"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $addr
EOF
  docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 &
  registry_pid=$!
  track "$registry_pid"
  local deadline=$((SECONDS + 15))
  until curl -sf -o /dev/null "http://$addr/v2/"; do
    kill -0 "$registry_pid" 2>/dev/null || die "docker-registry exited before listening on $addr" "$dir/registry.log"
    [ "$SECONDS" -lt "$deadline" ] || die "docker-registry did not answer on http://$addr/v2/ within 15 s" "$dir/registry.log"
    sleep 0.2
  done
}

# metric NAME FILE: the value of an unlabelled Prometheus sample in FILE (empty when absent).
metric() {
  awk -v name="$1" '$1 == name { print $2; exit }' "$2"
}
