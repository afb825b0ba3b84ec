"""Human-readable sizes in seed 000's style: 1013645672 -> "966.69 MB", 64424509440 -> "60.0 GB".

Units are powers of 1024 with the seed's labels (KB, MB, GB, TB), rounded to two decimals.
"""

from __future__ import annotations

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def readable_size(num_bytes: int | float) -> str:
    value = float(num_bytes)
    if value < 1024:
        return f"{int(value)} B"
    index = 0
    while value >= 1024 and index < len(_UNITS) - 1:
        value /= 1024
        index += 1
    return f"{round(value, 2)} {_UNITS[index]}"


def mib_per_second(bytes_per_second: float) -> float:
    """Throughput in MB/s as the seed reports it (`"mbps": 125.5`), binary megabytes."""
    return round(bytes_per_second / (1024 * 1024), 2)


def readable_rate(bytes_per_second: float) -> str:
    return f"{mib_per_second(bytes_per_second)} MB/s"
