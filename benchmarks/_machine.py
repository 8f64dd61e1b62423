"""What a benchmark ran on: printed first by every script, pasted into the README with it.

Figures from two machines (or two filesystems) are not comparable, and the one thing that
decides most of them is how long an fsync takes on the disk under the database file, so the
block names that filesystem as well as the CPU and the library versions.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["MEMORY_FILESYSTEMS", "filesystem_of", "machine_info", "print_machine"]

MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "devtmpfs"})
"""Filesystems where fsync costs nothing: commit figures measured there mean little."""

_PACKAGES = ("durable", "msgspec", "aiosqlite", "anyio", "structlog")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _cores() -> str:
    total = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return str(total)
    return str(total) if usable == total else f"{usable} usable of {total}"


def _load() -> str:
    """The load average when the run began: other work on the machine skews every figure."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min, at the start)"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    """The commit of the checkout the benchmarks live in (``+dirty`` with local changes)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}+dirty" if dirty else rev


def filesystem_of(directory: str | os.PathLike[str]) -> dict[str, str]:
    """Device, type and mount point of the filesystem holding ``directory`` (via ``df``)."""
    try:
        out = subprocess.run(
            ["df", "-PT", os.fspath(directory)],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.splitlines()
        fields = out[-1].split()
        # Filesystem Type 1024-blocks Used Available Capacity Mounted-on
        return {"device": fields[0], "type": fields[1], "mount": fields[-1]}
    except (OSError, subprocess.SubprocessError, IndexError):
        return {"device": "unknown", "type": "unknown", "mount": "unknown"}


def machine_info(directory: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Facts about this machine and the filesystem of ``directory`` (the temp dir if None)."""
    where = os.fspath(directory) if directory is not None else tempfile.gettempdir()
    fs = filesystem_of(where)
    info: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": _cores(),
        "memory": _memory_total(),
        "load": _load(),
        "sqlite": sqlite3.sqlite_version,
    }
    for package in _PACKAGES:
        info[package] = _version(package)
    info["git"] = _git_revision()
    info["directory"] = where
    info["filesystem"] = f"{fs['type']} on {fs['device']} (mounted at {fs['mount']})"
    info["fs_type"] = fs["type"]
    return info


def print_machine(
    directory: str | os.PathLike[str] | None = None, *, file: Any = None
) -> dict[str, Any]:
    """Print the machine block; returns what it printed."""
    out = file if file is not None else sys.stdout
    info = machine_info(directory)
    where = info["directory"]
    shown = {key: value for key, value in info.items() if key != "fs_type"}
    width = max(len(key) for key in shown)
    print("machine", file=out)
    for key, value in shown.items():
        print(f"  {key:<{width}}  {value}", file=out)
    if info["fs_type"] in MEMORY_FILESYSTEMS:
        print(
            f"  WARNING: {where} is on {info['fs_type']}, where fsync is free: commit figures "
            "measured there are not those of a real disk",
            file=out,
        )
    return info
