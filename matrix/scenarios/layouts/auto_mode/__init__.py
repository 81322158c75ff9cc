"""fixture-styles/auto-mode: a nested run of its own, with ``asyncio_mode = auto``."""
