"""The shared scenario suite: real pytest scenarios that the matrix runs in every cell, per database and driver.

``core`` declares scenarios and their expectations, ``recorder`` turns each run into one JSON line of
``reports/SCHEMA.md``, ``support`` holds database helpers, ``nested`` runs scenarios that need a pytest
configuration of their own, and the ``test_*`` modules are the catalogue (see ``README.md``).
"""
