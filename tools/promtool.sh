#!/usr/bin/env bash
# make promtool (part of make unit): the watch's Prometheus rules, checked and unit-tested with promtool
# (Debian's prometheus package, installed by make setup).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v promtool >/dev/null || { echo "promtool: not found; run make setup (Debian package prometheus)" >&2; exit 1; }
promtool check rules roles/oom_watch/files/enva-oom-watch.rules.yml
promtool test rules tests/prometheus/*.test.yml
