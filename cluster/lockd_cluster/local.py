"""The harness's LocalCluster: `lockd.local.LocalCluster` (the runner of `lockd up`) with the
harness's `Cluster` API. Its nodes share one network stack, so `supports_partitions` is False
and the fault verbs raise NotImplementedError; `NetnsCluster` builds on it to add them."""

from __future__ import annotations

from lockd.local.runner import LOG_NAME, LocalNode
from lockd.local.runner import LocalCluster as _LocalRunner
from lockd_cluster.base import Cluster

__all__ = ["LOG_NAME", "LocalCluster", "LocalNode"]


class LocalCluster(_LocalRunner, Cluster):
    """N lockd nodes as child processes on 127.0.0.1 (see `lockd.local.LocalCluster`)."""
