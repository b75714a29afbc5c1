"""Supervising the local stack's server processes through pid files.

Why pid files with a fingerprint: ``stack down`` must stop exactly the
processes ``stack up`` started and nothing else, even after a reboot reused a
pid. Each pid file stores the pid and a marker string that must appear in that
process's command line (``/proc/<pid>/cmdline``) for us to touch it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A stack component could not be provisioned, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class ManagedProcess:
    """One server process of the stack: its pid file, log file and identifying marker."""

    name: str
    pid_file: Path
    log_file: Path
    marker: str

    def read_pid(self) -> int | None:
        """The recorded pid if that process is alive and is still ours, else None."""
        try:
            record = json.loads(self.pid_file.read_text())
            pid = int(record["pid"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        return pid if _is_ours(pid, self.marker) else None

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        """Start ``argv`` detached in its own session, logging to :attr:`log_file`."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                cwd=str(cwd) if cwd else None,
            )
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "marker": self.marker, "argv": list(argv)}))
        log.debug("started %s pid=%d", self.name, proc.pid)
        return proc.pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the process if it is ours (SIGTERM, then SIGKILL); True if something was stopped."""
        pid = self.read_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.2)
        else:
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s; sending SIGKILL", self.name, pid, timeout_s)
            _signal_group(pid, signal.SIGKILL)
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.1)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail_log(self, lines: int = 15) -> str:
        """The last lines of the log, for error messages."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log written)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _reap(pid: int, timeout_s: float = 10.0) -> None:
    """Collect the exit status if ``pid`` is our child (started by this process), so no zombie stays.

    A multithreaded process (the JVM) shows as a zombie while its other threads
    still exit, and cannot be reaped until they have: poll for a while.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            return  # not our child (reaped by init) or already collected
        if done == pid:
            return
        time.sleep(0.05)


def _is_ours(pid: int, marker: str) -> bool:
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return False
    return marker in cmdline


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def port_open(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.25) -> bool:
    """Poll ``check`` until it returns True or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # a health probe failing is the normal "not yet"
            pass
        time.sleep(interval_s)
    return False


_apt_updated = False


def ensure_debian_package(binary: str, package: str) -> str:
    """Return the path of ``binary``, installing Debian's ``package`` when missing and running as root."""
    global _apt_updated
    path = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
    if path:
        return path
    if os.geteuid() != 0:
        raise StackError(f"{binary} is not installed; run: sudo apt-get install -y {package}")
    log.info("installing Debian package %s (for %s)", package, binary)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL)
        _apt_updated = True
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        env=env,
        capture_output=True,
        text=True,
    )
    path = shutil.which(binary)
    if done.returncode != 0 or not path:
        raise StackError(f"apt-get install {package} failed (exit {done.returncode}): {done.stderr[-800:]}")
    return path
