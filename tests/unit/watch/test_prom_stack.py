"""prom_stack.py's configuration for a node_exporter elsewhere (the VM scenario): the scrape target and tunnel."""

from __future__ import annotations

import json

from support import prom_stack


def test_a_remote_node_exporter_is_scraped_through_the_tunnel(tmp_path):
    prom_stack.configs(str(tmp_path), "/rules.yml", "127.0.0.1:19200")
    config = json.loads((tmp_path / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19200"]
    argvs = prom_stack.commands(str(tmp_path), "", "", ["ssh", "-N", "-L", "127.0.0.1:19200:127.0.0.1:9100"])
    assert argvs["tunnel"][:2] == ["ssh", "-N"]
    assert prom_stack.ready_url("tunnel", "127.0.0.1:19200") == "http://127.0.0.1:19200/metrics"


def test_the_local_node_exporter_by_default(tmp_path):
    prom_stack.configs(str(tmp_path), "/rules.yml")
    config = json.loads((tmp_path / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:%d" % prom_stack.PORTS["node_exporter"]]
    assert prom_stack.commands(str(tmp_path), "/tf", "")["tunnel"] is None
