"""A recovery store on a read-only, full or forbidden filesystem is refused for what is wrong,
and never with advice to recreate it: the store is healthy and serves the next run unchanged.

The conditions are real: a tmpfs mounted small (then filled) or remounted read-only, and file
modes that deny access. Tests may run as root, whom modes do not stop and who may mount; they
run the check in a user namespace (`unshare`, util-linux) instead, which works the same for root
and for other users: `unshare -Urm` gives a mount namespace to mount the tmpfs in, `unshare -U`
(no uid mapped) drops every privilege over the files, so modes apply.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.flows.flow_runs import embedded_settings
from tests.flows.recovery_runs import ROOT, flow_env, init_recovery

PROBE = f"{shlex.quote(sys.executable)} -m tests.support.recovery_probe"
CREATE = f"{shlex.quote(sys.executable)} -m bytewax.recovery"
OLD_ADVICE = ("recreate the store with", "is not a Bytewax recovery partition")


def in_namespace(script: str, *, mounts: bool) -> list[str]:
    """Run the shell `script` in a new user namespace (mapped to root with a mount namespace of
    its own when `mounts`, else with no uid mapped); its output lines."""
    flags = ["-Urm"] if mounts else ["-U"]
    env = {**flow_env(embedded_settings()), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        ["unshare", *flags, "sh", "-c", script], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def verdicts(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def check_refused(verdict: dict[str, Any], reason: str, words: str) -> None:
    message = verdict.get("message", "")
    assert verdict.get("reason") == reason, verdict
    assert words in message, message
    assert not any(advice in message for advice in OLD_ADVICE), message
    assert "do not recreate the store" in message, message


def test_a_read_only_filesystem_is_named_and_the_store_is_kept(tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    store = mount / "store"
    logs = tmp_path / "flow.log"
    script = f"""set -e
mount -t tmpfs -o size=4m tmpfs {mount}
mkdir {store} && {CREATE} {store} 2 >/dev/null
mount -o remount,ro {mount}
{PROBE} {store}
{shlex.quote(sys.executable)} -m bytewax.run flows.shipments -r {store} -s 1 -b 0 \
  >{logs} 2>&1 && echo flow-ran || echo flow-refused
mount -o remount,rw {mount}
{PROBE} {store}
"""
    lines = in_namespace(script, mounts=True)
    refused, healthy = verdicts(lines)
    check_refused(refused, "read_only", "is on a read-only filesystem")
    assert "flow-refused" in lines, "bytewax.run started on a read-only store"
    log = logs.read_text()
    assert "read-only filesystem" in log and not any(a in log for a in OLD_ADVICE), log[-2000:]
    assert healthy == {"partitions": 2}, "the store was healthy all along"


def test_a_full_filesystem_is_named_and_the_store_is_kept(tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    store = mount / "store"
    script = f"""set -e
mount -t tmpfs -o size=2m tmpfs {mount}
mkdir {store} && {CREATE} {store} 2 >/dev/null
dd if=/dev/zero of={mount}/filler bs=64k 2>/dev/null || true
{PROBE} {store}
rm {mount}/filler
{PROBE} {store}
"""
    refused, healthy = verdicts(in_namespace(script, mounts=True))
    check_refused(refused, "full", "is full")
    assert healthy == {"partitions": 2}


def test_a_directory_or_partition_this_user_may_not_write_is_named(tmp_path: Path) -> None:
    store = init_recovery(tmp_path / "store", 2)
    part = store / "part-1.sqlite3"
    part.chmod(0o444)
    (file_refused,) = verdicts(in_namespace(f"{PROBE} {store}", mounts=False))
    check_refused(file_refused, "permissions", f"{part} is not readable and writable")
    part.chmod(0o644)
    store.chmod(0o555)
    try:
        (dir_refused,) = verdicts(in_namespace(f"{PROBE} {store}", mounts=False))
    finally:
        store.chmod(0o755)
    check_refused(dir_refused, "permissions", "is not readable and writable by this process")
    (healthy,) = verdicts(in_namespace(f"{PROBE} {store}", mounts=False))
    assert healthy == {"partitions": 2}


def test_a_file_that_is_not_a_partition_is_named_without_recreating_the_store(
    tmp_path: Path,
) -> None:
    store = init_recovery(tmp_path / "store", 2)
    (store / "part-1.sqlite3").write_bytes(b"not sqlite at all" * 100)
    (verdict,) = verdicts(in_namespace(f"{PROBE} {store}", mounts=False))
    assert verdict["reason"] == "not_a_partition", verdict
    assert "restore this partition from a backup" in verdict["message"], verdict
    assert "recreate the store with" not in verdict["message"], verdict
