"""Docker's size units: parse "8g", "512MiB", "1.5GB" to bytes, and format bytes back.

Docker treats every unit as binary (k = KB = KiB = 1024), so devbox does too: a size means
what it means in `docker run --shm-size`.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# Docker keeps every size in an int64: ShmSize, Memory and the storage size beyond it are
# refused at create (or overflow into "can not be less than 0"). 8 EiB - 1 byte.
MAX_SIZE = 2**63 - 1
# More integer digits than this is past MAX_SIZE whatever the unit: not worth converting
# (Python refuses int() of over 4300 digits anyway).
_MAX_DIGITS = 24
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_BARE_B_RE = re.compile(r"^\s*(\d+)\s*b\s*$", re.IGNORECASE)


def parse_size(value: object) -> int | None:
    """Bytes for a docker size (int bytes or a string with a unit); None when it is not one.

    Exact (no float rounding) and never raising: a size too big for Docker comes back as
    some number above MAX_SIZE, for the caller to refuse with its own words.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if not isinstance(value, str):
        return None
    bare = _BARE_B_RE.match(value)
    if bare:
        return _bytes(bare.group(1), 1)
    match = _SIZE_RE.match(value)
    if not match:
        return None
    number, unit = match.groups()
    return _bytes(number, _UNITS[unit.lower()])


def _bytes(number: str, unit: int) -> int | None:
    whole, _, fraction = number.partition(".")
    whole = whole.lstrip("0") or "0"
    if len(whole) > _MAX_DIGITS:
        return MAX_SIZE + 1
    # Integers only, so "1.5g" is exact; 24 decimals are finer than a byte of any unit.
    fraction = fraction[:24]
    size = int(whole) * unit + (int(fraction or "0") * unit) // 10 ** len(fraction)
    return size if size > 0 else None


def format_size(size: int) -> str:
    """The shortest exact docker spelling of `size` bytes: 8589934592 → "8g"."""
    if size == 0:
        return "0"
    for unit in ("t", "g", "m", "k"):
        factor = _UNITS[unit]
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}b"


def human_size(size: int) -> str:
    """A rounded size for people: 1.5 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} TiB"
