"""Sizes and walltimes as people, setup files and schedulers write them: one parser each.

Sizes are binary, as Slurm counts them (1 K = 1024 bytes, 1 G = 1024 MB); a
number without a unit is megabytes. Walltimes are minutes, or a Slurm time
(`MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`). Callers add their own
rules (positive, a limit) and word their own errors; these raise ValueError.
"""
from __future__ import annotations

import re
from fractions import Fraction

SIZE_FORM = "a size such as 4096 (MB), 512M, 16G or 1T"
WALLTIME_FORM = "minutes or a Slurm time (MM:SS, HH:MM:SS, D-HH:MM:SS)"

_SIZE = re.compile(r"\s*(\d*\.?\d+)\s*(?:([KMGTPE])(?:i?B)?)?\s*", re.IGNORECASE)  # "2048B" is no size
_MB_PER_UNIT = {"": Fraction(1), "K": Fraction(1, 1024), "M": Fraction(1), "G": Fraction(1024),
                "T": Fraction(1024 ** 2), "P": Fraction(1024 ** 3), "E": Fraction(1024 ** 4)}
_WALLTIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


def size_mb(value: str | int | float) -> Fraction:
    """Megabytes in `value`, exactly: `4096`, `512M`, `16G`, `16GB`, `16 GiB`, `1.5T`, `123K`."""
    if isinstance(value, bool):  # an int subclass; `min_mem: yes` is a mistake, not 1 MB
        raise ValueError(f"not {SIZE_FORM}: {value!r}")
    if isinstance(value, (int, float)):
        return Fraction(value)
    match = _SIZE.fullmatch(str(value))
    if not match:
        raise ValueError(f"not {SIZE_FORM}: {value!r}")
    return Fraction(match.group(1)) * _MB_PER_UNIT[(match.group(2) or "").upper()]


def walltime_seconds(value: str | int) -> int:
    """Seconds in a walltime: `30` (minutes), `5:00` (mm:ss), `1:00:00`, `2-12`, `2-00:30:00`."""
    if isinstance(value, bool):
        raise ValueError(f"not {WALLTIME_FORM}: {value!r}")
    match = _WALLTIME.fullmatch(str(value).strip())
    if not match:
        raise ValueError(f"not {WALLTIME_FORM}: {value!r}")
    days, a, b, c = match.groups()
    parts = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        h, m, s = (parts + [0, 0])[:3]
        return ((int(days) * 24 + h) * 60 + m) * 60 + s
    if len(parts) == 1:  # M
        return parts[0] * 60
    if len(parts) == 2:  # M:S
        return parts[0] * 60 + parts[1]
    return (parts[0] * 60 + parts[1]) * 60 + parts[2]  # H:M:S
