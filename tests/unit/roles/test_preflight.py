"""The roles' preflight: one assert per concern, each failing with a message that names its variable,
and what meta/argument_specs.yml enforces (choices) left to it, not repeated.

One ansible-playbook run on localhost (connection local, nothing changed): each case includes a role's
preflight (tasks_from, so no argument spec runs) or its main entry point (argument spec first) with one
bad input, and records the failure message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
UPSTREAM = {"dns_relay_upstreams": ["192.0.2.53:53"]}
HAPROXY = {"haproxy_dns_upstreams": ["192.0.2.53:53"]}

# (case, role, entry point, vars, words the message must hold)
CASES = [
    ("relay_port", "dns_relay", "preflight", {**UPSTREAM, "dns_relay_port": 70000}, ["dns_relay_port", "70000"]),
    ("relay_no_upstream", "dns_relay", "preflight", {}, ["dns_relay_upstreams", "empty"]),
    ("relay_upstream_name", "dns_relay", "preflight", {"dns_relay_upstreams": ["sins.example.org:53"]},
     ["dns_relay_upstreams", "sins.example.org:53"]),
    ("relay_listen_port", "dns_relay", "preflight", {**UPSTREAM, "dns_relay_listen_addresses": ["192.0.2.17:53"]},
     ["dns_relay_listen_addresses", "192.0.2.17:53"]),
    ("relay_timeout", "dns_relay", "preflight", {**UPSTREAM, "dns_relay_timeout": 0}, ["dns_relay_timeout"]),
    ("relay_inflight", "dns_relay", "preflight", {**UPSTREAM, "dns_relay_max_inflight": 0},
     ["dns_relay_max_inflight"]),
    ("relay_tasks_max", "dns_relay", "preflight", {**UPSTREAM, "dns_relay_tasks_max": 0}, ["dns_relay_tasks_max"]),
    ("relay_watchdog", "dns_relay", "preflight", {**UPSTREAM, "dns_relay_watchdog_sec": 1},
     ["dns_relay_watchdog_sec"]),
    ("relay_memory_max", "dns_relay", "preflight", {**UPSTREAM, "dns_relay_memory_max": "64 MiB"},
     ["dns_relay_memory_max", "64 MiB"]),
    ("relay_nothing_to_retire", "dns_relay", "preflight",
     {**UPSTREAM, "dns_relay_retire_commands": [], "dns_relay_retire_units": []},
     ["dns_relay_retire_commands", "dns_relay_retire_units"]),
    ("relay_query_without_name", "dns_relay", "preflight",
     {**UPSTREAM, "dns_relay_validate_queries": [{"type": "A"}]}, ["dns_relay_validate_queries"]),
    ("relay_state_spec", "dns_relay", "main", {**UPSTREAM, "dns_relay_state": "gone"},
     ["dns_relay_state", "present, absent"]),
    ("relay_log_level_spec", "dns_relay", "main", {**UPSTREAM, "dns_relay_log_level": "loud"},
     ["dns_relay_log_level"]),
    ("relay_protocols_spec", "dns_relay", "main", {**UPSTREAM, "dns_relay_validate_protocols": ["udp", "doh"]},
     ["dns_relay_validate_protocols"]),
    ("haproxy_no_upstream", "haproxy_dns", "preflight", {}, ["haproxy_dns_upstreams", "empty"]),
    ("haproxy_upstream_without_port", "haproxy_dns", "preflight", {"haproxy_dns_upstreams": ["192.0.2.53"]},
     ["haproxy_dns_upstreams", "192.0.2.53"]),
    ("haproxy_memory", "haproxy_dns", "preflight", {**HAPROXY, "haproxy_dns_memory_mb": 8},
     ["haproxy_dns_memory_mb", "8"]),
    ("haproxy_swap", "haproxy_dns", "preflight", {**HAPROXY, "haproxy_dns_swap_mb": -1}, ["haproxy_dns_swap_mb"]),
    ("audit_no_format", "oom_audit", "preflight", {"oom_audit_report_formats": []}, ["oom_audit_report_formats"]),
    ("audit_report_name", "oom_audit", "preflight", {"oom_audit_report_name": "a/b"},
     ["oom_audit_report_name", "a/b"]),
    ("audit_report_dir", "oom_audit", "preflight", {"oom_audit_report_dir": ""}, ["oom_audit_report_dir"]),
    ("audit_pve_node", "oom_audit", "preflight", {"oom_audit_pve_node": ""}, ["oom_audit_pve_node"]),
    ("audit_max_mb", "oom_audit", "preflight", {"oom_audit_remediate_max_mb": 8}, ["oom_audit_remediate_max_mb"]),
    ("audit_vmids", "oom_audit", "preflight", {"oom_audit_remediate_vmids": [-5]}, ["oom_audit_remediate_vmids"]),
    ("audit_format_spec", "oom_audit", "main", {"oom_audit_report_formats": ["pdf"]},
     ["oom_audit_report_formats", "pdf"]),
]


def playbook():
    tasks = []
    for case, role, entry, variables, _words in CASES:
        tasks.append({
            "name": case,
            "block": [{
                "ansible.builtin.import_role": {"name": f"enva.pve.{role}", "tasks_from": entry},
                "vars": variables,
            }, {
                "ansible.builtin.set_fact": {"__results": "{{ __results | combine({%r: 'passed'}) }}" % case},
            }],
            "rescue": [{
                "ansible.builtin.set_fact": {
                    "__results": "{{ __results | combine({%r: ansible_failed_result.msg}) }}" % case},
            }],
        })
    tasks.append({"ansible.builtin.copy": {"content": "{{ __results | to_json }}", "dest": "{{ out }}",
                                           "mode": "0644"}})
    return [{"name": "preflight cases", "hosts": "localhost", "gather_facts": False,
             "vars": {"__results": {}}, "tasks": tasks}]


@pytest.fixture(scope="module")
def messages(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("preflight")
    (tmp / "play.yml").write_text(yaml.safe_dump(playbook(), sort_keys=False), encoding="utf-8")
    out = tmp / "results.json"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
         "-e", f"out={out}", "-e", f"ansible_python_interpreter={sys.executable}", str(tmp / "play.yml")],
        capture_output=True, text=True, env=env, cwd=str(tmp), check=False)
    assert out.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case, role, entry, words", [(c[0], c[1], c[2], c[4]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_a_bad_input_fails_naming_its_variable(messages, case, role, entry, words):
    message = messages[case]
    assert message != "passed", f"{role} {entry} accepted the bad input of {case}"
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"
    if entry == "main":
        assert "Validation of arguments failed" in message, "choices are the argument spec's to check"
