"""Money and fixed-point units of the ledger. Money is always a Python ``int`` of base units."""

from __future__ import annotations

#: Base units per token (like rao per TAO): 9 decimals keep fees and emissions integral.
UNITS_PER_TOKEN = 10**9

#: Upper bound on total issuance. Every balance, stake and total then fits a signed 64-bit
#: integer (SQLite INTEGER, msgpack int, numpy int64) with no overflow anywhere.
MAX_SUPPLY = 2**63 - 1

#: Fractions stored as u16 "proportions" (value / 65535), as the reference chain does.
U16_ONE = 65_535
