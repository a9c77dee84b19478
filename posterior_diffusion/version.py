"""The package version, in a module of its own so that any floor may record it."""

__version__ = "0.1.0"
