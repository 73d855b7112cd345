"""`lockd up` serves /metrics on every node: the runner it uses (lockd.local.LocalCluster with
metrics=True) gives each node a free loopback port for `lockd serve --metrics-address`."""

from __future__ import annotations

import urllib.request

import pytest

from lockd.local import LocalCluster

pytestmark = pytest.mark.cluster


def test_every_local_node_serves_prometheus_metrics(tmp_path):
    with LocalCluster(3, tmp_path, metrics=True) as c:
        c.wait_for_leader(timeout=60)
        addresses = [n.metrics_address for n in c.nodes]
        assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
        for a in addresses:
            with urllib.request.urlopen(f"http://{a}/metrics", timeout=10) as resp:
                body = resp.read().decode()
            assert resp.status == 200 and "lockd_" in body


def test_without_metrics_no_node_gets_a_metrics_flag(tmp_path):
    c = LocalCluster(1, tmp_path)
    assert c.nodes[0].metrics_address == "" and "--metrics-address" not in c.command(0)
