"""Time helpers. Every node stamps with the system clock (shared by all processes)."""

import time

from builtin_interfaces.msg import Time


def now_ns() -> int:
    """Return the current system time in nanoseconds (the ROS system clock)."""
    return time.time_ns()


def to_msg(ns: int) -> Time:
    """Convert nanoseconds since the epoch to builtin_interfaces/Time."""
    if ns <= 0:
        return Time()
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def from_msg(stamp: Time) -> int:
    """Convert builtin_interfaces/Time to nanoseconds (0 means unset)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ms_between(start_ns: int, end_ns: int) -> float:
    """Milliseconds from start to end, NaN if either is unset."""
    if start_ns <= 0 or end_ns <= 0:
        return float('nan')
    return (end_ns - start_ns) / 1e6
