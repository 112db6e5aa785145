"""The tables of the jobs page: which columns each shows, and the signatures by which the
page's script knows whether a table needs redrawing."""

from __future__ import annotations

import json
from typing import Any, Final

Columns = list[tuple[str, str]]
"""(cell kind, heading) pairs; the page's script reads the kinds from the table."""

SECTIONS: Final[list[tuple[str, str, str, Columns]]] = [
    (
        "running",
        "Running",
        "Nothing is running.",
        [("id", "ID"), ("job", "Job"), ("params", "Params"), ("progress", "Progress"),
         ("attempt", "Attempt"), ("when", "Elapsed"), ("node", "Node"), ("worker", "Worker"),
         ("actions", "")],
    ),
    (
        "scheduled",
        "Scheduled",
        "Nothing is scheduled.",
        [("id", "ID"), ("job", "Job"), ("params", "Params"), ("when", "Due"),
         ("attempt", "Attempt"), ("actions", "")],
    ),
    (
        "queued",
        "Queued, in dispatch order",
        "The queue is empty.",
        [("position", "#"), ("id", "ID"), ("job", "Job"), ("params", "Params"),
         ("priority", "Priority"), ("when", "Waiting"), ("actions", "")],
    ),
    (
        "recent",
        "Recently finished",
        "No job has finished yet.",
        [("id", "ID"), ("job", "Job"), ("params", "Params"), ("state", "Outcome"),
         ("duration", "Duration"), ("when", "Finished"), ("node", "Node"),
         ("error", "Error or reason")],
    ),
    (
        "failed",
        "Failed",
        "No failed jobs.",
        [("id", "ID"), ("job", "Job"), ("params", "Params"), ("error", "Error"),
         ("attempt", "Attempts"), ("when", "Failed"), ("node", "Node"), ("actions", "")],
    ),
]  # fmt: skip
"""The overview's sections: key, title, text when empty, columns."""


def signature(value: Any) -> str:
    """`JSON.stringify(value)` as the page's script computes it (if it differs now and then,
    the script merely redraws once): the script redraws a part of the page only when the data
    it shows changed, so the first live refresh does not redraw what the server rendered and
    a button is not replaced under the pointer."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def table_signature(rows: list[dict[str, Any]]) -> str:
    """The part of listed jobs that a table shows, but for the ticking times; the twin of
    `signature` in dashboard.js."""
    keys = ("id", "state", "attempts", "worker_pid", "error_text", "position", "held",
            "progress_text", "node")  # fmt: skip
    return signature(
        [
            [*(row.get(key) for key in keys), row["when"]["tick"], row["when"]["at"],
             row["duration_text"]]
            for row in rows
        ]
    )  # fmt: skip


def nodes_signature(rows: list[dict[str, Any]]) -> str:
    """What the nodes panel shows, but for the ticking heartbeat ages; the twin of
    `nodesSignature` in dashboard.js."""
    keys = ("name", "host", "pid", "this", "expired", "busy_text")
    return signature([[*(row[key] for key in keys), row["heartbeat"]["at"]] for row in rows])


def listing_columns(order: str) -> Columns:
    columns = [("id", "ID"), ("job", "Job"), ("params", "Params"), ("state", "State"),
               ("attempt", "Attempt"), ("when", "When"), ("node", "Node"),
               ("actions", "")]  # fmt: skip
    return [("position", "#"), *columns] if order == "dispatch" else columns
