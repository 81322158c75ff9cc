"""Saboteurs: small pytest plugins that each break one thing a scenario checks (tests/matrix/test_scenario_sabotage.py).

Each is loaded with ``-p tests.matrix.saboteurs.<name>`` into the scenario suite and, through
``GREENLIGHT_PLUGIN_ARGS``, into the nested pytest runs some scenarios start. They monkeypatch SQLAlchemy, driver,
pytest-asyncio and pytest-greenlight internals to emulate a real bug or misconfiguration, since the real libraries
cannot be broken on demand: assigning over methods and private attributes is their point, which is why mypy's
``method-assign`` and ``attr-defined`` checks are off for this package (pyproject.toml). No module here is named
``test_*.py``, so the project's own pytest run never collects them.
"""
