"""Teardown-hygiene layouts: one nested run per database, unraisable exceptions and resource warnings as errors."""
