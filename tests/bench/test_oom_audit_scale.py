"""The fleet-audit scale benchmark's fit and report from figures (no fleet is built, no lab, no playbook)."""

from __future__ import annotations

import bench_oom_audit_scale as scale
import pytest


def row(nodes, per_node, median_s):
    return {"nodes": nodes, "per_node": per_node, "cts": nodes * per_node, "median_s": median_s, "best_s": median_s,
            "worst_s": median_s, "runs": 1, "forks": 10, "lines": 100 * nodes * per_node, "log_bytes": 10 ** 6,
            "cts_per_s_core": nodes * per_node / median_s / 2, "cpu_s": median_s, "busy": 0.5, "resources_calls": [1],
            "build_s": 1.0}


def settings(nodes=10, per_node=10):
    rows = [dict(row(nodes, per_node, 20.0), peer=scale.Peer(5), failure=None)]
    return {"nodes": nodes, "per_node": per_node, "cts": nodes * per_node, "rows": rows}


@pytest.mark.parametrize("points", [[(100, 10000, 60.9)], [(10, 100, 6.0), (10, 1000, 9.0)]])
def test_fewer_node_counts_than_unknowns_give_no_fit(points):
    assert scale.least_squares(points) is None


def test_one_node_per_ct_ratio_fits_nodes_only_and_three_shapes_fit_both():
    fixed, per_node, per_ct, r2 = scale.least_squares([(10, 1000, 6.0), (30, 3000, 10.0)])
    assert per_ct is None and per_node == pytest.approx(0.2) and fixed == pytest.approx(4.0)
    fixed, per_node, per_ct, r2 = scale.least_squares([(10, 1000, 7.0), (30, 3000, 11.0), (100, 1000, 16.0)])
    assert (fixed, per_node, per_ct) == pytest.approx((5.0, 0.1, 0.001)) and r2 == pytest.approx(1.0)


def test_one_shape_writes_the_table_and_says_there_is_no_fit():
    text = scale.render([row(100, 100, 60.9)], settings(), ((0.1, 0.1, 0.1), (0.2, 0.2, 0.2)))
    assert "| 100 x 100 | 10,000 |" in text
    assert "**No fit.** 1 shape(s) measured, all at 100 node(s)" in text
    assert "**The fit.**" not in text and "Extrapolated" not in text
