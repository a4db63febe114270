"""
Unit tests: the mirror in memory (a fake upstream through C{treq.testing}, a
C{Clock}, work done synchronously), or on loopback sockets inside the test
process.  C{pytest tests/unit} is the loop to keep open: seconds.
"""
