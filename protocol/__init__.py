"""Ensemblenet protocol core: identities, wire format, signing, transport, ledger, consensus.

Importing this package has no side effects (no I/O, no directories created).
"""

__version__ = "0.1.0"
