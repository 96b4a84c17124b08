"""Adapters between the clock engine and the outside world: the store, metrics, notifiers."""
