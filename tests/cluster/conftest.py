from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tests.support.cluster import Cluster
from tests.support.workspace import Workspace

MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(workspace: Workspace) -> Iterator[MakeCluster]:
    """`make_cluster(extra, names=("a", "b"))`: nodes on one store in the test's workspace
    (not started); their clients are closed, and their daemons stopped, when it ends."""
    made: list[Cluster] = []

    def make(extra: dict[str, Any] | None = None, names: Sequence[str] = ("a", "b")) -> Cluster:
        cluster = Cluster(workspace, names, extra)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()
