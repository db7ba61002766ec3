# enva.pve: one entry point for every job. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

# Stages of `make test`, in order (each is also a target of its own).
TEST_STAGES := lint sanity unit integration labtest molecule v2test

# VM nodes are PVE 9-shaped (Debian 13 trixie) unless PVE=8 (Debian 12 bookworm): make v2test PVE=8
PVE ?= 9

.PHONY: help setup test lint sanity unit promtool integration labtest molecule v2test v2watchtest clustertest demo bench build changelog freeze clean

help:
	@echo "make setup     Debian packages, pinned .venv, collection link (idempotent)"
	@echo "make demo      the main job on the lab: reproduce the CT 2017 OOM, fix it, prove it"
	@echo "make test      setup, then: $(TEST_STAGES); one summary"
	@echo "make lint | sanity | unit | integration | labtest | molecule | v2test   one stage of make test"
	@echo "make v2test PVE=8, make clustertest PVE=8   the VM stages on PVE 8-shaped (Debian 12) nodes; PVE 9 by default"
	@echo "make v2watchtest  the watch on a VM node: the stall alert with a silent kernel log (molecule test -s v2_oom_watch; not in make test)"
	@echo "make clustertest  the three-node cluster scenario (molecule test -s cluster; about 25 min, not in make test)"
	@echo "make bench     benchmarks (relay vs peers, ...) -> docs/benchmarks.md"
	@echo "make build     ansible-galaxy collection build -> build/"

# Stages run from `make test` get SETUP_DONE=1 so setup runs once per test run.
ifneq ($(SETUP_DONE),1)
lint sanity unit promtool integration labtest molecule v2test v2watchtest clustertest demo bench build changelog: setup
endif

setup:
	@tools/setup.sh

test: setup
	@tools/check.sh $(TEST_STAGES)

lint:
	ansible-lint

sanity:
	tools/sanity.sh

# tests/unit is pure: no root, no server, no lab; so are tests/bench/test_*.py (the benchmarks' own arithmetic).
# Then the watch's alert rules (promtool check and test rules).
unit:
	tools/pytest.sh tests/unit tests/bench
	tools/promtool.sh

promtool:
	tools/promtool.sh

# tests/integration: real servers on loopback (unbound, the relay, the PVE API lab over TLS), browsers.
integration:
	tools/pytest.sh tests/integration -m "not lab and not v2"

# The lab is one per host: the stages that use it hold its lock (/run/enva-lab.lock, which
# make demo takes too), so two runs wait for each other instead of colliding.
LAB_LOCK := flock $${ENVA_LAB_LOCK:-/run/enva-lab.lock} env ENVA_LAB_LOCK_HELD=1

# Tests that need root and the real lab (tests/lab/labctl): up, reproduce the OOM, down.
labtest:
	$(LAB_LOCK) tools/pytest.sh tests/integration -m lab

molecule:
	$(LAB_LOCK) tools/molecule.sh

# The lab on a cgroup v2 host: boots VM node pve1 (qemu; TCG when KVM is not usable; the image is built once
# into /var/cache/enva-lab/node), runs labctl up, status, reproduce inside it, then the molecule scenario
# v2_haproxy_dns on it (the fix from this host's controller, the flood again), labctl down, stops the node.
# Holds its own lock (one node pve1 per host); the host's lab is not touched.
v2test:
	ENVA_LAB_PVE=$(PVE) flock $${ENVA_LAB_VM_LOCK:-/run/enva-lab-vm.lock} tools/pytest.sh tests/integration/v2 -m v2 -s --durations=0

# The watch on VM node pve1 (cgroup v2; PVE=8 for bookworm): enva.pve.oom_watch with its systemd unit, node_exporter
# on the node, prometheus/alertmanager/the receiver here through an ssh tunnel; labctl reproduce holds CT 2017
# at memory.high and EnvaCtMemoryStalled must arrive while the kernel log says nothing (build/v2/watch.json).
# About 10 minutes under TCG, so not a stage of make test; holds the VM lock as v2test does.
v2watchtest:
	ENVA_LAB_PVE=$(PVE) flock $${ENVA_LAB_VM_LOCK:-/run/enva-lab-vm.lock} $(VENV)/bin/molecule test -s v2_oom_watch

# Three VM nodes as one PVE cluster (labctl cluster up; 3 x 2,560 MiB, TCG): the audit over SSH across the
# nodes, the fix for CT 2017 through pct (community.proxmox.proxmox_pct_remote, no sshd in the CT), the
# audit again, a node lost and the partial report. About 25 minutes, so not a stage of make test (which
# stays under 30); holds the VM lock as v2test does.
clustertest:
	ENVA_LAB_PVE=$(PVE) flock $${ENVA_LAB_VM_LOCK:-/run/enva-lab-vm.lock} $(VENV)/bin/molecule test -s cluster

# The main job on the lab (tools/demo.py, as root): labctl up, the CT 2017 OOM as found, the fix
# (playbooks/haproxy_dns.yml with inventories/lab), the same flood again, a before/after table.
# Holds /run/enva-lab.lock; leaves the lab up (tests/lab/labctl reset 2017 puts CT 2017 back).
demo:
	$(VENV)/bin/python tools/demo.py

# Every benchmark, each replacing its own section of docs/benchmarks.md (tests/bench/run.py).
bench:
	$(VENV)/bin/python tests/bench/run.py all --write docs/benchmarks.md

build:
	mkdir -p build
	ansible-galaxy collection build --force --output-path build/

changelog:
	antsibull-changelog lint

# Re-pin the transitive dependencies from the current .venv.
freeze:
	{ echo "# Transitive pins for requirements.txt, from 'pip freeze' of the .venv that make setup builds."; \
	  echo "# Regenerate with: make freeze"; \
	  $(VENV)/bin/pip freeze --exclude-editable | grep -v -i -E "^($$(sed -e 's/#.*//' -e '/^$$/d' -e 's/==.*//' requirements.txt | paste -sd'|'))==" ; } > constraints.txt

clean:
	rm -rf build .pytest_cache .hypothesis tests/output
