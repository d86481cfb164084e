#!/usr/bin/env bash
# The whole suite, or (with arguments) one pytest run of what they select.
#
# The whole suite is three pytest runs. The real-QEMU tests (-m vm) and everything else run side
# by side: on CI's two cores one mostly runs guests while the other runs the servers under test.
# Then tests/functional/test_vm_power.py runs alone, because it checks that a busy guest gets more
# than half of a CPU. Each run has a time limit, so a hang ends the suite with a failure. A run
# that collects no tests (pytest's exit code 5) is a failure: the suite must never pass by
# running nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SIDE_BY_SIDE_SECONDS=${EC2GW_TEST_SECONDS:-2700}
ALONE=tests/functional/test_vm_power.py

pytest_run() {
  local limit=$1
  shift
  timeout --kill-after=60 "$limit" "$PY" -m pytest -q -p no:cacheprovider -o addopts="" --timeout=600 -rfEs \
    --durations=15 "$@"
}

verdict() {  # name rc -> 0 when the run passed
  case $2 in
    0) return 0 ;;
    5) echo "$1: pytest collected no tests: the suite is missing or its files are not named test_*.py" >&2 ;;
    124|137) echo "$1: did not finish within its time limit (a test or a daemon hangs); see its last output above" >&2 ;;
    *) echo "$1: failed (pytest exit code $2); the failures are listed above" >&2 ;;
  esac
  return 1
}

if [ $# -gt 0 ]; then
  pytest_run "$SIDE_BY_SIDE_SECONDS" "$@"
  rc=$?
  verdict "pytest $*" $rc
  exit $?
fi

vm_log=$(mktemp /tmp/ec2gw-vm-tests.XXXXXX.log)
pytest_run "$SIDE_BY_SIDE_SECONDS" tests -m vm --ignore="$ALONE" >"$vm_log" 2>&1 &
vm_pid=$!
echo "== tests without real guests (the real-QEMU tests run beside them; their output follows)"
pytest_run "$SIDE_BY_SIDE_SECONDS" tests -m "not vm"
rest_rc=$?
wait $vm_pid
vm_rc=$?
echo
echo "== real-QEMU tests (-m vm), run beside the others"
cat "$vm_log"
rm -f "$vm_log"
echo
echo "== $ALONE, alone"
pytest_run 1200 "$ALONE"
alone_rc=$?

failed=0
verdict "tests without real guests" $rest_rc || failed=1
verdict "real-QEMU tests" $vm_rc || failed=1
verdict "$ALONE" $alone_rc || failed=1
exit $failed
