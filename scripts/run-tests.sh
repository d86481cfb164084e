#!/usr/bin/env bash
# The whole suite. pytest's exit code 5 (no tests collected) is a failure here: the suite
# must never pass by running nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -m pytest -q -p no:cacheprovider -o addopts="" --timeout=600 -rfEs --durations=15 tests "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: the suite is missing or its files are not named test_*.py" >&2
  exit 1
fi
exit $rc
