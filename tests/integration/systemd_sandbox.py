"""A real, throw-away systemd for the tests: the host's own /lib/systemd/systemd booted as PID 1
of private namespaces, on an overlay of `/` whose writes land in RAM.

The project's own helper (the repository must pass its tests alone). How it works:

1. `unshare --fork --pid --mount --uts --ipc --net` starts a shell script as PID 1 of new
   namespaces, inside a cgroup made for it under ours, which then enters a cgroup namespace
   rooted there (systemd wants a cgroup tree of its own).
2. That script mounts a tmpfs, an overlay with `/` as its lower layer and the tmpfs as its upper
   one, the API file systems (/proc with /proc/sys read-only, /sys read-only, cgroup2, a small
   /dev, /run, /tmp), binds the folders the test asks for, copies the test's files over the new
   root, gives the container a machine id and a minimal boot target, pivots into the new root
   and execs systemd. Nothing it writes reaches the host's disk.
3. The test runs commands inside with `nsenter --all`; `shutdown()` sends systemd the
   container poweroff signal (SIGRTMIN+4), and the kernel ends the rest with the namespace.

Needs root with CAP_SYS_ADMIN, overlayfs and cgroup2; `SandboxUnavailable` says which is
missing, and the tests skip on exactly that.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BOOT_TIMEOUT_S = 60.0
TMPFS_SIZE = "1G"
PR_SET_PDEATHSIG = 1
BOOT_TARGET = """[Unit]
Description=tradectl test sandbox: sysinit and sockets, no timers, gettys or host services
Requires=sysinit.target sockets.target
After=sysinit.target sockets.target
AllowIsolate=yes
"""

# PID 1 of the new namespaces. Stage 1 moves into the prepared cgroup and re-execs itself in a
# cgroup namespace rooted there (exec keeps PID 1); stage 2 builds the root and execs systemd.
PID1_SCRIPT = r"""#!/bin/sh
set -eu
if [ "${1:-}" != stage2 ]; then
  echo $$ > "$TC_CGROUP/cgroup.procs"
  exec unshare --cgroup "$0" stage2
fi
B=$TC_BASE; R=$B/root
mount -t tmpfs -o "mode=755,size=$TC_TMPFS_SIZE" tc-upper "$B/overlay"
mkdir -p "$B/overlay/upper" "$B/overlay/work"
mount -t overlay tc-root \
  -o "lowerdir=/,upperdir=$B/overlay/upper,workdir=$B/overlay/work" "$R"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro "$R/proc/sys"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=755,nosuid tc-dev "$R/dev"
for d in null zero full random urandom tty; do
  : > "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"
done
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
: > "$R/dev/console"; mount --bind /dev/null "$R/dev/console"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
for p in $TC_BIND; do mkdir -p "$R$p"; mount --rbind "$p" "$R$p"; done
mkdir -p "$R/run/systemd"; echo "$container" > "$R/run/systemd/container"
tr -d '-' < /proc/sys/kernel/random/uuid > "$R/etc/machine-id"
echo tc-sandbox > "$R/etc/hostname"
mkdir -p "$R/etc/systemd/system"
cp "$B/boot.target" "$R/etc/systemd/system/tc-sandbox.target"
if [ -n "$TC_INJECT" ]; then cp -a "$TC_INJECT/." "$R/"; fi
cd "$R"; mkdir -p .oldroot; pivot_root . .oldroot; cd /
umount -l /.oldroot; rmdir /.oldroot
# Capabilities that reach the shared host kernel or clock are dropped, as systemd-nspawn does.
exec setpriv \
  --bounding-set=-sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-block_suspend,-sys_pacct \
  /lib/systemd/systemd --system --unit=tc-sandbox.target </dev/null
"""


class SandboxUnavailable(Exception):
    """This machine cannot boot the sandbox (no root, no CAP_SYS_ADMIN, no overlayfs)."""


def _die_with_parent() -> None:
    """In the child before exec: a SIGKILLed test run takes the container with it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _check_machine() -> None:
    if os.geteuid() != 0:
        raise SandboxUnavailable("must run as root")
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise SandboxUnavailable("no overlayfs in this kernel")
    probe = subprocess.run(
        ["unshare", "--fork", "--pid", "--mount", "--cgroup", "true"],
        capture_output=True,
        timeout=10,
    )
    if probe.returncode != 0:
        raise SandboxUnavailable(
            f"unshare not permitted (needs CAP_SYS_ADMIN): {probe.stderr.decode().strip()}"
        )
    if not Path("/lib/systemd/systemd").exists():
        raise SandboxUnavailable("systemd is not installed on this machine")


def _cgroup2_root(base: Path) -> tuple[Path, Path | None]:
    """Where cgroup2 is mounted on the host (mounting it in `base` when nowhere)."""
    found = subprocess.run(
        ["findmnt", "-n", "-t", "cgroup2", "-o", "TARGET"], capture_output=True, text=True
    ).stdout.split()
    if found:
        return Path(found[0]), None
    mount_point = base / "cgroup2"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "cgroup2", "none", str(mount_point)], check=True)
    return mount_point, mount_point


def _own_cgroup() -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:].rstrip("/")
    return ""


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Sandbox:
    launcher: subprocess.Popen[bytes]
    pid: int  # the container's systemd, as the host sees it
    base: Path
    cgroup: Path
    mounted_cgroup2: Path | None
    log: Path
    closed: bool = field(default=False)

    @classmethod
    def boot(cls, inject_dir: Path, bind: list[Path]) -> Sandbox:
        """Boot systemd with `inject_dir` copied onto its root and `bind` folders shared
        read-write at the same paths; returns once `systemctl is-system-running` says so."""
        _check_machine()
        base = Path(tempfile.mkdtemp(prefix="tc-sdns.", dir="/tmp"))
        (base / "overlay").mkdir()
        (base / "root").mkdir()
        (base / "boot.target").write_text(BOOT_TARGET)
        pid1 = base / "pid1.sh"
        pid1.write_text(PID1_SCRIPT)
        pid1.chmod(0o755)
        cgroup2, mounted = _cgroup2_root(base)
        cgroup = Path(f"{cgroup2}{_own_cgroup()}/{base.name}")
        cgroup.mkdir()
        log = base / "launcher.log"
        env = {
            "container": "tc-sandbox",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "TC_BASE": str(base),
            "TC_CGROUP": str(cgroup),
            "TC_TMPFS_SIZE": TMPFS_SIZE,
            "TC_INJECT": str(inject_dir),
            "TC_BIND": " ".join(str(p) for p in bind),
        }
        with log.open("wb") as out:
            launcher = subprocess.Popen(
                [
                    "unshare",
                    "--fork",
                    "--pid",
                    "--mount",
                    "--uts",
                    "--ipc",
                    "--net",
                    "--propagation",
                    "private",
                    "--kill-child",
                    str(pid1),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        box = cls(launcher, 0, base, cgroup, mounted, log)
        try:
            box.pid = box._wait_for_systemd()
            state = box.run("systemctl", "is-system-running", "--wait", check=False)
            if state.stdout.strip() != "running":
                failed = box.run("systemctl", "--no-pager", "--failed", check=False).stdout
                raise RuntimeError(f"sandbox systemd is {state.stdout.strip()!r}:\n{failed}")
        except BaseException:
            box.shutdown()
            raise
        return box

    def _wait_for_systemd(self) -> int:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.launcher.poll() is not None:
                raise RuntimeError(f"sandbox launcher exited:\n{self.log.read_text()}")
            for pid in _children(self.launcher.pid):
                comm = Path(f"/proc/{pid}/comm")
                with contextlib.suppress(OSError):
                    if comm.read_text().strip() == "systemd" and self._has_private_socket(pid):
                        return pid
            time.sleep(0.05)
        raise RuntimeError(f"systemd did not come up within {BOOT_TIMEOUT_S} s")

    @staticmethod
    def _has_private_socket(pid: int) -> bool:
        probe = subprocess.run(
            ["nsenter", "--target", str(pid), "--all", "test", "-S", "/run/systemd/private"],
            capture_output=True,
            timeout=5,
        )
        return probe.returncode == 0

    def run(
        self, *command: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["nsenter", "--target", str(self.pid), "--all", *command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)}: exit {result.returncode}\n{result.stdout}{result.stderr}"
            )
        return result

    def prop(self, unit: str, name: str) -> str:
        return self.run("systemctl", "show", "-P", name, unit).stdout.strip()

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "-u", unit, "--no-pager", "-o", "cat").stdout

    def shutdown(self) -> None:
        """Power the container off; whatever is left dies with its PID namespace."""
        if self.closed:
            return
        self.closed = True
        if self.pid and _alive(self.pid):
            os.kill(self.pid, signal.SIGRTMIN + 4)  # what `systemctl poweroff` is to a container
            deadline = time.monotonic() + BOOT_TIMEOUT_S
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        try:
            self.launcher.wait(10)
        except subprocess.TimeoutExpired:
            self.launcher.kill()
            self.launcher.wait(5)
        for folder in sorted(self.cgroup.glob("**/"), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if self.mounted_cgroup2 is not None:
            subprocess.run(["umount", str(self.mounted_cgroup2)], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.base)], check=False)


def wait_for(check: Callable[[], T], timeout: float = 60.0, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"not reached within {timeout} s (last: {last!r})")


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=True)
