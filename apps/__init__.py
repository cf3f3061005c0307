"""The four applications built on :mod:`wdist`, their shared runtime, and the ``wdist`` CLI."""
