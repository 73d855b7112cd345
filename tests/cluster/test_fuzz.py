"""The fuzzer's CI sample: ~200 random and adversarial cases against a live 3-node cluster.

The long run is `python -m lockd_cluster.fuzz --cases 10000` (docs/security.md).
"""

import pytest

from lockd_cluster.fuzz import run_fuzz

pytestmark = pytest.mark.cluster


def test_fuzzed_rpcs_never_crash_a_node_or_answer_internal_and_replicas_agree(cluster):
    # A fixed seed keeps CI reproducible; the long run (random seeds) explores further.
    verdict = run_fuzz(cluster, cases=200, seed=20261123, max_seconds=45, log=print)
    print(verdict.to_dict())
    assert verdict.cases >= 50
    assert verdict.ok, verdict.to_dict()
    assert len(verdict.checked) == 2      # the replicas were compared; the lock cycle ran
