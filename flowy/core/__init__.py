"""The pure replay core: history in, decisions out.

Nothing in this package does I/O, starts threads, reads a clock or imports an
engine; ``tests/test_purity.py`` checks it.
"""
