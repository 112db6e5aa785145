"""The jobs page's filters: state, class, queue, search and page, from and to query
strings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final
from urllib.parse import urlencode

from bgjobs.model import JobState
from bgjobs.text import without_surrogates

PER_PAGE_CHOICES: Final = (10, 25, 50, 100)
MAX_SEARCH: Final = 200
FINISHED: Final = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
STATE_GROUPS: Final[Mapping[str, tuple[JobState, ...]]] = {
    "finished": FINISHED,
    "live": (JobState.WAITING, JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING),
}


class BadFilter(ValueError):
    pass


@dataclass(frozen=True)
class Filters:
    state: str = ""
    """A state's value, a group name from STATE_GROUPS, or "" for every state."""
    class_name: str = ""
    search: str = ""
    """An id, or text to find in the params."""
    page: int = 1
    per_page: int = 25
    queue: str = ""
    """A named queue, or "" for every queue."""

    @property
    def states(self) -> tuple[JobState, ...]:
        if not self.state:
            return ()
        return STATE_GROUPS.get(self.state) or (JobState(self.state),)

    @property
    def active(self) -> bool:
        return bool(self.state or self.class_name or self.search or self.queue)

    def query(self, **changes: Any) -> str:
        """The query string of these filters with some changed (for links)."""
        values = asdict(replace(self, **changes))
        params = {
            "state": values["state"],
            "class": values["class_name"],
            "queue": values["queue"],
            "q": values["search"],
            "page": values["page"] if values["page"] != 1 else "",
            "per_page": values["per_page"] if values["per_page"] != 25 else "",
        }
        return urlencode({key: value for key, value in params.items() if value})

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "class": self.class_name,
            "queue": self.queue,
            "q": self.search,
            "page": self.page,
            "per_page": self.per_page,
        }


def parse_filters(query: Mapping[str, str]) -> Filters:
    state = query.get("state", "").strip()
    if state and state not in STATE_GROUPS and state not in JobState.__members__.values():
        raise BadFilter(f"state: {state!r} is not a state")
    # A query string may decode to lone surrogates, which no UTF-8 text (nor SQLite) takes.
    search = without_surrogates(query.get("q", "").strip())
    class_name = without_surrogates(query.get("class", "").strip())
    queue = without_surrogates(query.get("queue", "").strip())
    if max(len(search), len(class_name), len(queue)) > MAX_SEARCH:
        raise BadFilter(f"search, class and queue are limited to {MAX_SEARCH} characters")
    page = _number(query, "page", 1)
    per_page = _number(query, "per_page", 25)
    if page < 1:
        raise BadFilter("page: must be 1 or more")
    if per_page not in PER_PAGE_CHOICES:
        raise BadFilter(f"per_page: one of {', '.join(map(str, PER_PAGE_CHOICES))}")
    return Filters(state, class_name, search, page, per_page, queue)


def _number(query: Mapping[str, str], key: str, default: int) -> int:
    text = query.get(key, "").strip()
    if not text:
        return default
    if not is_number(text, 9):
        raise BadFilter(f"{key}: not a number")
    return int(text)


def is_number(text: str, max_digits: int) -> bool:
    """ASCII digits only: `'²'.isdigit()` is true, but `int('²')` fails."""
    return text.isascii() and text.isdigit() and len(text) <= max_digits
