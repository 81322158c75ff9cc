"""Strict-mode layouts of several categories (fixture styles, fixture scopes): one nested run per database."""
