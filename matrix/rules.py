"""The one definition of each rule the matrix and the report share: statuses, verdicts, the support tiers, what a
plugin regression is, when a run is not the complete default matrix, the text cap and URL-password redaction.

Standard library only and no other matrix import: the scenario suite (inside each cell's environment), the runner
and ``reports`` (which reads results, later in the flow) all import it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

# A results file's status, a scenario's outcome and its verdict (reports/SCHEMA.md).
STATUSES = ("completed", "install-failed", "interpreter-missing", "crashed", "infra-error", "excluded")
OUTCOMES = ("passed", "failed", "error", "skipped", "timeout", "not-run")
VERDICTS = ("works", "broken", "skipped", "not-run")
# The tiers whose cells make up the support set: canary (pre-releases) and legacy (end-of-life Pythons) are shown,
# never counted, and their regressions do not fail a run.
SUPPORT_TIERS = ("support", "floor")
TIERS = ("support", "floor", "canary", "legacy")

# How an expectation that also accepts a pass is written before its ``raises:`` part ("pass or raises:X"): for
# races where the clean error and right results are both correct outcomes, depending on timing.
PASS_OR = "pass or "

# Every text that came from a scenario run (messages, tracebacks, reasons) is capped at this many characters.
CAP = 4000

# A URL's password: ``scheme://user:PASSWORD@``, up to the last ``@`` before whitespace. Bounded quantifiers: the
# pattern runs over untrusted text and must stay linear.
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]{0,40}://[^\s:/@]{0,256}:)(?P<password>[^\s]{0,512})@", re.I)


def redact_urls(text: str) -> str:
    """Every URL password in ``text`` becomes ``***``."""
    return URL_PASSWORD.sub(r"\g<head>***@", text)


def make_redactor(secrets: Iterable[str] = ()) -> Callable[[str], str]:
    """A function that replaces every given secret (raw and URL-quoted) and any URL password with ``***``."""
    variants: set[str] = set()
    for secret in secrets:
        if secret:
            variants.update({secret, quote(secret, safe=""), unquote(secret)})
    ordered = sorted((v for v in variants if v), key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, "***")
        return redact_urls(text)

    return redact


def cap(text: str, limit: int = CAP) -> str:
    if len(text) <= limit:
        return text
    marker = f"\n… [truncated {len(text) - limit + 40} characters]"
    return text[: limit - len(marker)] + marker


def is_support_tier(tier: str) -> bool:
    return tier in SUPPORT_TIERS


def comparison_kind(plugin: str, baseline: str) -> str:
    """A scenario's plugin verdict next to the baseline's: ``fix`` (baseline broken, plugin works), ``regression``
    (the plugin breaks what works without it: in a support-set cell this fails the run) or ``same``."""
    if plugin == "works" and baseline == "broken":
        return "fix"
    if plugin == "broken" and baseline == "works":
        return "regression"
    return "same"


def why_incomplete(manifest: Mapping[str, Any]) -> str:
    """What keeps a run's manifest (``build/run.json``) from being the complete default matrix, the only run the
    tracked docs table is rewritten from: said by the run at its end and by the report that leaves the table alone."""
    scope = (
        "the default matrix"
        if manifest.get("default_matrix")
        else "not the default matrix (--smoke or GREENLIGHT_AXES)"
    )
    return (
        f"{scope}, {len(manifest.get('cells_written') or [])} of {manifest.get('cells_listed')} cells written, "
        f"{len(manifest.get('cells_missing') or [])} missing, {len(manifest.get('cells_interrupted') or [])} "
        f"interrupted, {len(manifest.get('cells_partial') or [])} without every database or interpreter"
    )
