#!/usr/bin/env bash
# make test: run every stage even when one fails, then one summary; non-zero on any failure.
set -u
cd "$(dirname "$0")/.." || exit 1
stages=("$@")
declare -A result seconds
failed=0
for stage in "${stages[@]}"; do
  printf '\n######## %s ########\n' "$stage"
  t0=$(date +%s)
  if make --no-print-directory "$stage" SETUP_DONE=1; then
    result[$stage]=PASS
  else
    result[$stage]=FAIL
    failed=1
  fi
  seconds[$stage]=$(($(date +%s) - t0))
done
printf '\n######## summary ########\n'
for stage in "${stages[@]}"; do
  printf '%-10s %s  %4ss\n' "$stage" "${result[$stage]}" "${seconds[$stage]}"
done
exit "$failed"
