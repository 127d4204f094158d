"""The ``flowy`` command."""
