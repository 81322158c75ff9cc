"""Copied as ``test_zzz_session_end.py``: runs last (pytest collects files in name order), so session-scoped
finalizers fail in its teardown, not in the teardown of whichever scenario module happened to run last."""


def test_session_end() -> None:
    pass
