"""What the stored pauses hold back from a claim, read the same way by every backend."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from bgjobs.model import PauseInfo, PauseKind


@dataclass(frozen=True)
class HeldBack:
    everything: bool = False
    classes: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)


NOTHING_HELD: Final = HeldBack()


def held_back(rows: Iterable[tuple[str, str]]) -> HeldBack:
    """The pauses' (kind, name) rows as a claim's exclusions. A kind this version does not
    know (written by a newer one) holds nothing back here."""
    classes: list[str] = []
    queues: list[str] = []
    for kind, name in rows:
        if kind == PauseKind.ALL:
            return HeldBack(everything=True)
        if kind == PauseKind.CLASS:
            classes.append(name)
        elif kind == PauseKind.QUEUE:
            queues.append(name)
    return HeldBack(classes=classes, queues=queues)


def pause_infos(rows: Iterable[tuple[str, str, float]]) -> list[PauseInfo]:
    """The pauses' (kind, name, since) rows, those of a kind this version knows."""
    known = {kind.value for kind in PauseKind}
    return [
        PauseInfo(kind=PauseKind(kind), name=name, since=datetime.fromtimestamp(since, UTC))
        for kind, name, since in rows
        if kind in known
    ]
