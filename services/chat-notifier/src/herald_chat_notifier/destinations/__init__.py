"""The chat notifier's destinations, one module per platform."""
