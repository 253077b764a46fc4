"""The package version, in a leaf module so any layer can name it (export fingerprints, recipe files)."""

__version__ = "0.1.0"
