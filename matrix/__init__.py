"""The compatibility matrix: axes.toml -> cells -> environments -> scenario runs -> results JSON.

``axes`` loads and expands the definition, ``provision`` gets databases, ``scenarios`` is the shared suite,
``run`` drives one cell inside its nox session and ``collect`` turns what a run left behind into results
files.
"""
