#!/usr/bin/env bash
# make setup: Debian packages, the pinned .venv, the collection link that lets ansible, pytest and
# molecule import enva.pve from this checkout, and community.proxmox (pinned) beside it.
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
# 4. community.proxmox, for its proxmox_pct_remote connection (CTs without sshd, reached by `pct exec`
# on their node). Ansible Galaxy is out of reach from here, so it comes from the pinned `ansible`
# package on PyPI (ansible 12.3.0 ships community.proxmox 1.4.0; the ansible-core 2.19 line), checked
# against its sha256 and unpacked next to enva.pve. With Galaxy: ansible-galaxy collection install
# -r requirements.yml does the same.
proxmox_version=1.4.0
bundle=ansible-12.3.0-py3-none-any.whl
bundle_sha256=cd156f82fa87f7a899212b0efa9f7ca3a24d609212de9f78428a572eb01e5414
proxmox=.cache/collections/ansible_collections/community/proxmox
have=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["collection_info"]["version"])' \
  "$proxmox/MANIFEST.json" 2>/dev/null || true)
if [[ $have != "$proxmox_version" ]]; then
  say "community.proxmox $proxmox_version from $bundle (PyPI)"
  mkdir -p .cache/downloads
  if ! echo "$bundle_sha256  .cache/downloads/$bundle" | sha256sum -c --status 2>/dev/null; then
    .venv/bin/python -m pip download -q --no-deps --disable-pip-version-check -d .cache/downloads "ansible==12.3.0" \
      2> >(grep -v "^WARNING: Location .* is ignored" >&2)
    echo "$bundle_sha256  .cache/downloads/$bundle" | sha256sum -c --quiet \
      || die ".cache/downloads/$bundle does not have the pinned sha256 $bundle_sha256"
  fi
  rm -rf "$proxmox.new"
  .venv/bin/python - ".cache/downloads/$bundle" "$proxmox.new" <<'PY'
import sys, zipfile
from pathlib import Path
prefix = "ansible_collections/community/proxmox/"
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for member in wheel.infolist():
        if member.filename.startswith(prefix) and not member.is_dir():
            target = Path(sys.argv[2]) / member.filename[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(wheel.read(member))
PY
  rm -rf "$proxmox" && mv "$proxmox.new" "$proxmox"
fi
say "ready ($(.venv/bin/ansible --version | awk 'NR == 1'))"
