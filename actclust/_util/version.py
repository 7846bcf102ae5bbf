"""The package version, in its own module so every stage can stamp its outputs with it
without importing the package root."""

__version__ = "0.1.0"
