"""The compatibility report: results JSON (see SCHEMA.md) -> HTML report, badge and docs table."""
