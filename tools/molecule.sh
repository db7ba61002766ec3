#!/usr/bin/env bash
# Every molecule scenario under extensions/molecule/ (where molecule 26 looks in a collection), one
# after the other (they share the lab). The scenario named default holds no instances (molecule loads
# it before every run); it is not run. Scenarios named v2_* need a VM node: make v2test runs them;
# cluster needs three: make clustertest runs it.
# MOLECULE_SCENARIOS="a b" runs only those.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
mapfile -t all < <(find extensions/molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' \
  | xargs -rn1 basename | grep -vx default | grep -vx cluster | grep -v '^v2_' | sort)
read -r -a scenarios <<<"${MOLECULE_SCENARIOS:-${all[*]:-}}"
if ((${#scenarios[@]} == 0)); then
  echo "molecule: no scenarios under extensions/molecule/ yet"
  exit 0
fi
failed=()
for s in "${scenarios[@]}"; do
  echo "=== molecule test -s $s"
  .venv/bin/molecule test -s "$s" || failed+=("$s")
done
if ((${#failed[@]})); then
  echo "molecule: failed scenarios: ${failed[*]}" >&2
  exit 1
fi
echo "molecule: ${#scenarios[@]} scenario(s) passed: ${scenarios[*]}"
