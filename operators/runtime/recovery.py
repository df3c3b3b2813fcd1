"""Recovery as a run configures it, and the check a flow makes when it is built.

Bytewax takes recovery from `python -m bytewax.run ... -r DIR -s SECONDS -b SECONDS`, whose
defaults are the variables BYTEWAX_RECOVERY_DIRECTORY, BYTEWAX_SNAPSHOT_INTERVAL and
BYTEWAX_RECOVERY_BACKUP_INTERVAL. `Settings` mirrors the variables (all three or none); when this
process is `bytewax.run`, the flags on its command line win, as they do for Bytewax itself.

`check_recovery` runs when a flow is built, before any worker starts: a recovery directory that
does not exist or holds no partitions stops the run with a message naming the command that creates
them (`python -m bytewax.recovery DIR N`), instead of Bytewax's error from inside the workers.
Partitions of two different stores mixed in one directory are refused too. A directory may hold
only some of the partitions (each process may mount its own); Bytewax checks at start that the
cluster as a whole has them all.

A store Bytewax could not write is refused before it is opened, with what is wrong: the directory
is on a read-only filesystem, its filesystem is full, or this process may not read or write the
directory or a partition (Bytewax writes snapshots and SQLite's `-wal`/`-shm` files there). None
of these messages advises recreating the store: the partitions may be healthy and hold the state
of every key. Only a file that is not a Bytewax partition at all is named as such, with advice to
restore it from a backup. Every refusal carries a `reason` (see `RecoveryConfigurationError`).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sqlite3
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Optional

from operators.config.process import RecoverySettings
from operators.errors import ConfigurationError

log = logging.getLogger(__name__)

PARTITION_FILE = re.compile(r"^part-(\d+)\.sqlite3$")
"""Names of the partition files `python -m bytewax.recovery` creates."""


MIN_FREE_BYTES = 1024 * 1024
"""Free space below which the recovery filesystem counts as full (no room for snapshots)."""

RecoveryProblem = Literal[
    "missing", "no_partitions", "mixed", "read_only", "full", "permissions", "not_a_partition",
    "unreadable",
]  # fmt: skip

UNCHANGED = (
    "the partitions were not changed: do not recreate the store, it may hold every key's state"
)


class RecoveryConfigurationError(ConfigurationError):
    """The recovery store a run asks for cannot be used as it is; `reason` says why."""

    def __init__(self, message: str, reason: RecoveryProblem) -> None:
        super().__init__(message)
        self.reason: RecoveryProblem = reason


@dataclass(frozen=True)
class RecoveryOptions:
    """Recovery of one run: the store, the snapshot and backup intervals, and the workers."""

    directory: Optional[Path] = None
    snapshot_interval_seconds: Optional[int] = None
    backup_interval_seconds: Optional[int] = None
    workers: Optional[int] = None
    """All workers of the cluster (`-w` times the processes of `-a`), when the command says."""

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    @classmethod
    def from_settings(cls, recovery: RecoverySettings) -> RecoveryOptions:
        return cls(
            recovery.directory, recovery.snapshot_interval_seconds, recovery.backup_interval_seconds
        )

    def with_command_line(self, argv: Sequence[str]) -> RecoveryOptions:
        """These options with the `-r/-s/-b/-w/-a` flags of a `bytewax.run` command applied."""
        flags, _ = _run_flags().parse_known_args(list(argv))
        workers = None
        if flags.workers_per_process is not None or flags.addresses is not None:
            processes = len(flags.addresses.split(";")) if flags.addresses else 1
            workers = (flags.workers_per_process or 1) * processes
        given = {
            "directory": flags.recovery_directory,
            "snapshot_interval_seconds": flags.snapshot_interval,
            "backup_interval_seconds": flags.backup_interval,
        }
        flagged = {name: value for name, value in given.items() if value is not None}
        return replace(self, **flagged, workers=workers)


def _run_flags() -> argparse.ArgumentParser:
    """The recovery and scaling flags of `python -m bytewax.run` (its other arguments ignored)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-r", "--recovery-directory", type=Path)
    parser.add_argument("-s", "--snapshot-interval", type=int)
    parser.add_argument("-b", "--backup-interval", type=int)
    parser.add_argument("-w", "--workers-per-process", type=int)
    parser.add_argument("-i", "--process-id", type=int)
    parser.add_argument("-a", "--addresses")
    return parser


def bytewax_run_argv() -> Optional[list[str]]:
    """The arguments of this process when it is `python -m bytewax.run`, else `None`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or spec.name != "bytewax.run":
        return None
    return sys.argv[1:]


def recovery_options(
    recovery: RecoverySettings, argv: Optional[Sequence[str]] = None
) -> RecoveryOptions:
    """The recovery this run uses: the settings, overridden by `argv` (`bytewax.run`'s flags)."""
    options = RecoveryOptions.from_settings(recovery)
    return options if argv is None else options.with_command_line(argv)


def partition_count(directory: Path) -> int:
    """The number of partitions the store in `directory` was created with.

    Raises `RecoveryConfigurationError` when the directory is missing, on a read-only or full
    filesystem, not readable and writable by this process, holds no partition, holds a file that
    is not a partition, or holds partitions of stores created with different counts.
    """
    hint = f"python -m bytewax.recovery {directory} N"
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise RecoveryConfigurationError(
            f"recovery directory {directory} {what}; create it and its partitions once "
            f"with `mkdir -p {directory} && {hint}` (N = the most workers you will ever run)",
            "missing",
        )
    check_writable(directory)
    files = sorted(p for p in directory.iterdir() if PARTITION_FILE.match(p.name))
    if not files:
        raise RecoveryConfigurationError(
            f"recovery directory {directory} holds no recovery partitions (part-*.sqlite3); "
            f"create them once with `{hint}` (N = the most workers you will ever run)",
            "no_partitions",
        )
    for path in files:
        _check_file_access(path)
    counts = {path.name: _declared_count(path) for path in files}
    if len(set(counts.values())) != 1:
        raise RecoveryConfigurationError(
            f"recovery directory {directory} mixes partitions of different stores "
            f"({', '.join(f'{name}: {n}' for name, n in counts.items())} partitions); keep one "
            "dataflow's partitions per directory",
            "mixed",
        )
    return next(iter(counts.values()))


def check_writable(directory: Path) -> None:
    """Refuse a recovery directory Bytewax could not write: on a read-only filesystem, on a full
    one (under `MIN_FREE_BYTES` or no free inode), or not readable and writable by this process."""
    fs = os.statvfs(directory)
    if fs.f_flag & os.ST_RDONLY:
        raise RecoveryConfigurationError(
            f"recovery directory {directory} is on a read-only filesystem; Bytewax writes a "
            "snapshot there every snapshot interval: mount it read-write; " + UNCHANGED,
            "read_only",
        )
    if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
        raise RecoveryConfigurationError(
            f"recovery directory {directory} is not readable and writable by this process "
            f"({_owner_and_mode(directory)}); Bytewax writes its snapshots and SQLite's -wal/-shm "
            "files there: give the user the flow runs as read and write access (e.g. chown -R "
            "the directory to it); " + UNCHANGED,
            "permissions",
        )
    free = fs.f_bavail * fs.f_frsize
    if free < MIN_FREE_BYTES or (fs.f_files > 0 and fs.f_favail == 0):
        left = f"{free} bytes" if free < MIN_FREE_BYTES else "no inode"
        raise RecoveryConfigurationError(
            f"the filesystem of recovery directory {directory} is full ({left} free; snapshots "
            f"need at least {MIN_FREE_BYTES} bytes): free space or grow the volume; " + UNCHANGED,
            "full",
        )


def _check_file_access(path: Path) -> None:
    """Refuse a partition (or its -wal/-shm file) this process may not read and write."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and not os.access(file, os.R_OK | os.W_OK):
            raise RecoveryConfigurationError(
                f"recovery partition file {file} is not readable and writable by this process "
                f"({_owner_and_mode(file)}): give the user the flow runs as read and write access "
                "to every file of the directory; " + UNCHANGED,
                "permissions",
            )


def _owner_and_mode(path: Path) -> str:
    info = path.stat()
    return (
        f"owned by uid {info.st_uid} gid {info.st_gid}, mode {stat.filemode(info.st_mode)}; "
        f"this process runs as uid {os.geteuid()} gid {os.getegid()}"
    )


NOT_A_PARTITION = {"SQLITE_NOTADB", "SQLITE_ERROR"}
"""SQLite errors that mean the file is not a Bytewax partition (not SQLite; no `parts` table)."""


def _declared_count(path: Path) -> int:
    """The partition count recorded in one partition file (Bytewax's `parts` table)."""
    restore = (
        "restore this partition from a backup of the store (docs/OPERATIONS.md, Backing up the "
        "partitions) or move the file out of the directory; the other partitions are not affected"
    )
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            row = db.execute("SELECT part_count FROM parts LIMIT 1").fetchone()
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorname", "unknown")
        if code in NOT_A_PARTITION:
            raise RecoveryConfigurationError(
                f"{path} is not a Bytewax recovery partition ({exc}); {restore}", "not_a_partition"
            ) from exc
        raise RecoveryConfigurationError(
            f"{path} could not be read ({code}: {exc}); check its filesystem (mounted, free "
            "space, permissions, disk errors) and the processes that may hold it open; "
            + UNCHANGED,
            "unreadable",
        ) from exc
    if row is None:
        raise RecoveryConfigurationError(
            f"{path} records no partition count (its `parts` table is empty), so Bytewax never "
            f"finished creating it; {restore}",
            "not_a_partition",
        )
    return int(row[0])


def check_recovery(
    recovery: RecoverySettings, argv: Optional[Sequence[str]] = None
) -> Optional[RecoveryOptions]:
    """Check the recovery store this run uses, when it uses one; return its options.

    `argv` defaults to this process's `bytewax.run` arguments (none when it is not
    `bytewax.run`, e.g. in tests). Raises `RecoveryConfigurationError` for a store that cannot
    be used; logs a warning when the run has more workers than the store has partitions.
    """
    options = recovery_options(recovery, bytewax_run_argv() if argv is None else argv)
    if not options.enabled or options.directory is None:
        return None
    partitions = partition_count(options.directory)
    if options.workers is not None and options.workers > partitions:
        log.warning(
            "%d workers but %d recovery partitions in %s: the partition count is fixed when the "
            "store is created; make it the most workers you will ever run",
            options.workers,
            partitions,
            options.directory,
        )
    log.info(
        "recovery: %s (%d partitions), snapshot every %s s, backups kept %s s",
        options.directory,
        partitions,
        options.snapshot_interval_seconds,
        options.backup_interval_seconds,
    )
    return options
