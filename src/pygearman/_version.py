"""The package version (one place, read by setuptools and by pygearman.__version__)."""
__version__ = "0.1.0"
