from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bgjobd.store.base import Store
from tests.store.support import BACKENDS, Backend


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


@pytest.fixture
def store(backend: Backend, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each backend."""
    opened = backend(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def peer(backend: Backend, tmp_path: Path, store: Store) -> Iterator[Store]:
    """A second connection to `store`, as another process sharing it would open."""
    opened = backend(tmp_path)
    yield opened
    opened.close()
