"""fixture-styles/anyio-marker: a nested run of its own (a runner left in a bad state would break later scenarios)."""
