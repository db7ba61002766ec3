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
# The scenarios leave the lab up for each other; a lab this stage brought up it takes down at the end
# (CTs, bridge, cgroups, processes: labctl down), one that was up before stays as it was found.
lab_state=${ENVA_LAB_DIR:-/var/lib/enva-lab}/state.json
lab_was_up=0
[[ -e $lab_state ]] && lab_was_up=1
failed=()
for s in "${scenarios[@]}"; do
  echo "=== molecule test -s $s"
  .venv/bin/molecule test -s "$s" || failed+=("$s")
done
if ((lab_was_up == 0)) && [[ -e $lab_state ]]; then
  echo "molecule: the lab was not up before this stage: tests/lab/labctl down"
  tests/lab/labctl down >/dev/null || { echo "molecule: labctl down failed" >&2; failed+=("(labctl down)"); }
fi
if ((${#failed[@]})); then
  echo "molecule: failed scenarios: ${failed[*]}" >&2
  exit 1
fi
echo "molecule: ${#scenarios[@]} scenario(s) passed: ${scenarios[*]}"
