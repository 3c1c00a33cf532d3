"""The ``epochal`` command line."""
