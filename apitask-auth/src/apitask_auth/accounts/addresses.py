"""One account per address: the rule, the queries that find and resolve breaches of it.

The database keeps one non-SSO account per address and audience, the address
compared lowercased (``users_email_partial_key``, migration 3). A database
filled before that rule existed may already break it; migration 3 then stops
with :class:`DuplicateAddressesError` and changes nothing. The two queries
here are the ones docs/service.md documents: :data:`LIST_DUPLICATES` shows the
accounts, :data:`RESOLVE_DUPLICATES` keeps one account per address and moves
the others' address aside (no row is deleted). Both run unchanged on SQLite
and PostgreSQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DUPLICATES",
    "LIST_DUPLICATES",
    "RESOLVE_DUPLICATES",
    "DuplicateAddressesError",
]

# The addresses (lowercased) with more than one account in an audience. The same
# expressions as the unique index, so what this finds is exactly what the index refuses.
DUPLICATES = """\
SELECT lower(email) AS address, aud, count(*) AS accounts
FROM users
WHERE email IS NOT NULL AND is_sso_user = false
GROUP BY lower(email), aud
HAVING count(*) > 1
ORDER BY lower(email), aud"""

# Every account involved, to decide which to keep.
LIST_DUPLICATES = """\
SELECT id, aud, email, email_confirmed_at, last_sign_in_at, created_at
FROM users
WHERE is_sso_user = false AND (lower(email), aud) IN (
  SELECT lower(email), aud FROM users
  WHERE email IS NOT NULL AND is_sso_user = false
  GROUP BY lower(email), aud HAVING count(*) > 1)
ORDER BY lower(email), aud, created_at"""

# Keeps the address on one account per (address, audience): the first confirmed,
# else the oldest. The others keep every column but get an address that cannot
# receive mail and cannot collide: "<address>.duplicate-<id>.invalid" (RFC 2606
# reserves .invalid); the original address is its prefix, so the change is
# reversible by hand.
RESOLVE_DUPLICATES = """\
UPDATE users
SET email = email || '.duplicate-' || id || '.invalid'
WHERE id IN (
  SELECT id FROM (
    SELECT id, row_number() OVER (
      PARTITION BY lower(email), aud
      ORDER BY email_confirmed_at IS NULL, email_confirmed_at, created_at, id
    ) AS rank
    FROM users
    WHERE email IS NOT NULL AND is_sso_user = false
  ) AS ranked
  WHERE rank > 1
)"""

# How many addresses the message names; the rest are counted.
_NAMED = 20


class DuplicateAddressesError(RuntimeError):
    """Migration 3 found addresses with more than one account; nothing was changed.

    Attributes:
        duplicates: ``(address, aud, accounts)`` for each address, lowercased.
    """

    def __init__(self, duplicates: Sequence[tuple[str, str, int]]) -> None:
        self.duplicates = list(duplicates)
        named = ", ".join(
            f"{address} (aud {aud!r}: {accounts} accounts)"
            for address, aud, accounts in self.duplicates[:_NAMED]
        )
        more = len(self.duplicates) - _NAMED
        if more > 0:
            named += f", and {more} more"
        super().__init__(
            "migration 3 (one account per address) stopped, nothing was changed: "
            f"{len(self.duplicates)} address(es) have more than one non-SSO account in "
            f"one audience, compared lowercased: {named}. "
            f"List the accounts with:\n{LIST_DUPLICATES};\n"
            "keep one account per address (delete or re-address the others yourself), "
            "or let this query keep the first confirmed (else the oldest) and give the "
            "others an undeliverable address '<address>.duplicate-<id>.invalid' "
            f"(no row is deleted):\n{RESOLVE_DUPLICATES};\n"
            "then run `apitask-auth migrate` again (docs/service.md, "
            '"One account per address").'
        )
