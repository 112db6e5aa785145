"""Text from jobs and users made safe to write to a log line or a terminal.

Escaped: the C0 controls and DEL, the C1 controls (U+0080-U+009F: U+009B is a CSI that
many terminals obey), the bidirectional controls that reorder what a reader sees (U+061C,
U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), the Unicode line and paragraph separators,
and lone surrogates (which no UTF-8 stream can carry). Each becomes a visible `\\xNN` /
`\\uNNNN` escape, so nothing is lost and nothing acts.
"""

from __future__ import annotations

from typing import Final

_BIDI: Final = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_TABLE: Final[dict[int, str]] = {
    **{code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]},
    **{code: f"\\u{code:04x}" for code in [*_BIDI, 0x2028, 0x2029]},
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}
_KEEP_LINES: Final = {**_TABLE, ord("\n"): "\n", ord("\t"): "\t"}


def escape_controls(text: str, *, keep_lines: bool = False) -> str:
    """Every control, bidi control and lone surrogate in `text` escaped. `keep_lines`
    leaves newlines and tabs as they are (for multi-line output on a terminal)."""
    if text.isprintable():  # every character escaped here is unprintable: the common case
        return text
    escaped = text.translate(_KEEP_LINES if keep_lines else _TABLE)
    return without_surrogates(escaped)


def without_surrogates(text: str) -> str:
    """`text` with each lone surrogate written as `\\udXXX` (it could not be encoded)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def cap(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} characters cut)"
