"""The package version, in a leaf module so nothing needs to import the package ``__init__``."""

__version__ = "0.1.0"
