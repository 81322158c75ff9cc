"""The files of the nested pytest runs (:mod:`matrix.scenarios.nested`): real modules, so ruff and mypy check them.

A scenario copies them into a temporary directory and runs pytest there: ``inner_conftest.py`` becomes
``conftest.py``, ``<module>.py`` becomes ``test_<module>.py``. None is named ``test_*.py`` or ``conftest.py`` here,
so the outer scenario run, which collects ``matrix/scenarios``, never collects or loads them. Each directory is one
nested configuration (a group of modules run by one pytest process, or a scenario's own run).
"""
