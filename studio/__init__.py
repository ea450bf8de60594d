"""Studio: a fast text-to-audio instrument."""

__version__ = "0.1.0"
