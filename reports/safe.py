"""Untrusted text from results files made inert: no escapes, no control characters, valid UTF-8, capped.

HTML escaping is not done here (Jinja's autoescape and the browser's ``textContent`` do it where the text is
shown); this makes the text itself harmless and readable wherever it ends up, the docs table and logs too.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from matrix.rules import redact_urls

# Caps for text shown in the report. Writers already cap messages at 4,000 characters; readers cap again
# because a file may come from an older or broken writer (issue 8: "a 10 MB message").
MESSAGE_CAP = 4_000
TRACEBACK_CAP = 8_000
SHORT_CAP = 300

# CSI (colours, cursor moves) and OSC (titles, hyperlinks) escape sequences: dropped, the text stays readable.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# Any other control character (a stray ESC, NUL, bell...) becomes a visible U+FFFD, never interpreted.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Writers never record URLs with passwords, but a driver's error message might quote one: mask the
# password whatever characters it holds (greedy up to the last "@" of the token, so "p@ss" is masked too).
# The scheme is bounded so a megabyte of letters cannot make the search quadratic.
# A URL cut off by the length cap, before its "@": mask what is left of it.
_URL_TAIL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]{0,40}://[^\s:/@]*:)[^\s@]*\Z")


def clean_text(value: Any, cap: int = SHORT_CAP) -> str:
    """Return ``value`` as inert, length-capped text: no ANSI escapes, no control characters, valid UTF-8."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return _clean_short(text, cap) if len(text) <= _REMEMBERED else _clean(text, cap)


# A full run's report cleans 1.7 million strings, most of them short and repeated (scenario ids, checks, the same
# message in many cells): remembered, the report of 465 results files took 10 s instead of 34. Long texts
# (tracebacks) are cleaned each time, so that the cache stays small (at most 65,536 texts of 1,000 characters).
_REMEMBERED = 1_000


def _clean(text: str, cap: int) -> str:
    original_length = len(text)
    # Cut before the regexes run so a 10 MB message costs nothing; an escape sequence cut in half is then
    # caught by _CONTROL.
    text = text[: cap * 2]
    text = _ANSI.sub("", text)
    text = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", text)
    if "://" in text:
        text = redact_urls(text)
    # json.loads accepts lone surrogates ("\ud800"); they cannot be encoded, so replace them too.
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > cap or original_length > cap * 2:
        kept = _URL_TAIL.sub(r"\1***", text[:cap])
        text = f"{kept}… [truncated: {original_length:,} characters in the results file]"
    return text


_clean_short = functools.lru_cache(maxsize=1 << 16)(_clean)
