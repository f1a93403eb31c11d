"""The package version, in a module of its own so every part can read it without importing the package root.

>>> isinstance(__version__, str)
True
"""

__version__ = "0.1.0"
