#!/usr/bin/env bash
# Run the tests while CPU-bound processes compete for the cores (issue 25 item 7: `make test` failed,
# and left a torchrun rank running, on a loaded 2-core machine).
#
#   tools/test_under_load.sh                          # two busy loops beside `make test`
#   LOAD_PROCESSES=4 tools/test_under_load.sh .venv/bin/python -m pytest tests/test_train.py
#
# The busy loops run in their own process group and are stopped on any exit (success, failure,
# Ctrl-C, SIGTERM). Prints the command's exit status, the wall time and whether the loops were
# stopped; exits with the command's status.
set -u

load_processes=${LOAD_PROCESSES:-2}
command=("$@")
[ ${#command[@]} -gt 0 ] || command=(make test)

setsid bash -c 'for _ in $(seq "$1"); do (while :; do :; done) & done; wait' busy "$load_processes" &
load_group=$!

load_alive() {  # live (not zombie) members of the busy loops' process group
    ps -e -o pgid=,stat= | awk -v group="$load_group" '$1 == group && $2 !~ /^Z/' | grep -q .
}

stop_load() {
    kill -KILL -- "-$load_group" 2>/dev/null
    wait "$load_group" 2>/dev/null
    for _ in $(seq 50); do load_alive || return 0; sleep 0.1; done
}
interrupted() {  # $1: the signal; the command gets it too, then the loops stop
    [ -n "${test_pid:-}" ] && kill -"$1" "$test_pid" 2>/dev/null && wait "$test_pid" 2>/dev/null
    stop_load
    exit "$2"
}
trap 'interrupted INT 130' INT
trap 'interrupted TERM 143' TERM
trap stop_load EXIT

echo "test_under_load: $load_processes busy loop(s) in process group $load_group; running: ${command[*]}"
start=$(date +%s)
"${command[@]}" &  # in the background, so that a signal reaches the trap at once
test_pid=$!
wait "$test_pid"
status=$?
elapsed=$(( $(date +%s) - start ))
stop_load
if load_alive; then stopped="NOT stopped"; else stopped="stopped"; fi
echo "test_under_load: '${command[*]}' exited with status $status after ${elapsed} s beside $load_processes busy loop(s) (loops $stopped)"
exit "$status"
