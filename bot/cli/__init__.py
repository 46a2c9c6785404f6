"""The ``modelbot`` command line."""
