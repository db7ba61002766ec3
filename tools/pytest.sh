#!/usr/bin/env bash
# pytest, with "no tests collected" (exit 5) turned into a failure that says so:
# a selection that finds nothing is a broken selection, never a pass.
set -u
cd "$(dirname "$0")/.." || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [[ $rc == 5 ]]; then
  echo "pytest: no tests collected for: $*  (treated as a failure)" >&2
  exit 1
fi
exit "$rc"
