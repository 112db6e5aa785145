"""Helpers for job classes: where their own log files go.

Jobs write under the storage directory's `logs/` (the original's `storage/logs/`). Worker
processes are told where that is through `$BGJOBS_STORAGE`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def logs_dir() -> Path:
    storage = Path(os.environ.get("BGJOBS_STORAGE", "storage"))
    path = storage / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def append_line(file_name: str, text: str) -> None:
    """Append one line; newlines inside `text` are escaped so a line stays a line."""
    line = text.replace("\r", "\\r").replace("\n", "\\n")
    with (logs_dir() / file_name).open("a", encoding="utf-8") as handle:
        handle.write(f"[{now()}] {line}\n")


def append_json(file_name: str, record: dict[str, Any]) -> None:
    append_line(file_name, json.dumps(record, ensure_ascii=False))
