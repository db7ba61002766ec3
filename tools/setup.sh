#!/usr/bin/env bash
# make setup: Debian packages, the pinned .venv, and the collection link that
# lets ansible, pytest and molecule import enva.pve from this checkout.
# Idempotent; when everything is in place it only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# 1. Debian packages -------------------------------------------------------
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' tools/debian-packages.txt)
missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  [[ $status == ii* ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || die "missing Debian packages (${missing[*]}); run 'make setup' as root"
  say "installing Debian packages: ${missing[*]}"
  # Package scripts must not start daemons (unbound, dnsdist) on this host:
  # the lab and the benchmarks start their own instances on their own addresses.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Python virtual environment with pinned packages -------------------------
py=/usr/bin/python3
stamp=.venv/.enva-requirements.sha256
want=$(cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
  say "building .venv from requirements.txt + constraints.txt"
  [[ -x .venv/bin/python ]] || "$py" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check \
    -r requirements.txt -c constraints.txt 2> >(grep -v "^WARNING: Location .* is ignored" >&2)
  echo "$want" >"$stamp"
fi

# 3. The collection as ansible_collections/enva/pve (a link to this checkout) -
link=.cache/collections/ansible_collections/enva/pve
if [[ "$(readlink "$link" 2>/dev/null)" != "$top" ]]; then
  mkdir -p "$(dirname "$link")"
  ln -sfn "$top" "$link"
fi
say "ready ($(.venv/bin/ansible --version | awk 'NR == 1'))"
