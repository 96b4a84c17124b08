"""NHS numbers that arrive in an event: checked, then refused or turned into a pseudonym.

An NHS number is ten digits whose last is a modulus-11 check digit over the first nine
(weights 10 down to 2; a check value of 11 is 0, one of 10 makes the number invalid). The
API either refuses an event that carries one, or replaces it by a keyed pseudonym: the
HMAC-SHA256 of the number under a secret key (``MHST_API_PSEUDONYM_KEY``), in hex (64
characters, the contract's longest ``referral_id``). The same number under the same key
always gives the same pseudonym, and nobody without the key can go from one to the other.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

NHS_NUMBER_LENGTH: Final = 10
_WEIGHTS: Final = tuple(range(10, 1, -1))
_DIGITS: Final = frozenset("0123456789")


def is_valid_nhs_number(value: str) -> bool:
    """Whether ``value`` is ten ASCII digits with a correct modulus-11 check digit (spaces
    between the groups, as in ``943 476 5919``, are allowed)."""
    digits = value.replace(" ", "")
    if len(digits) != NHS_NUMBER_LENGTH or not _DIGITS.issuperset(digits):
        return False
    total = sum(int(digit) * weight for digit, weight in zip(digits, _WEIGHTS, strict=False))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[-1])


def pseudonym(nhs_number: str, key: bytes) -> str:
    """The keyed pseudonym of a valid NHS number (spaces ignored): 64 hex characters."""
    digits = nhs_number.replace(" ", "").encode()
    return hmac.new(key, digits, hashlib.sha256).hexdigest()
