"""The ``ganvas`` command: a thin layer over the Python API."""
