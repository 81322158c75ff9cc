"""implicit-io/report-lists-sites: a nested run of its own, whose end-of-run report the scenario reads."""
