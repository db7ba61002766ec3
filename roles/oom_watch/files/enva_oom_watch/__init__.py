# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""enva-oom-watch: every CT's OOM kills, stalls at memory.high and headroom as node_exporter textfile metrics.

One stdlib process per PVE node (Python 3.9+). It reads the CTs' memory cgroups (v1 or v2), follows
the kernel log (/dev/kmsg), keeps counters monotonic across CT restarts (state on disk), flags stalls
with PSI triggers where the kernel has them, writes a flight record (process census, cgroup files,
kernel lines) when a CT stalls, is OOM-killed or forks fast, and writes one ``*.prom`` file by atomic
rename. The collection's parsers (``ansible_collections.enva.pve.plugins.module_utils``) are shipped
beside this package and imported from there: one home for each parser.
"""

VERSION = "1.0.0"
