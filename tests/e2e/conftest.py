"""End-to-end tests of the Debian package in a booted systemd (PRODUCT.md section 6, issue 7).

The package is built from a clean copy of the source tree, a minimal Debian 12 root file system is made
with debootstrap (cached in CACHE_DIR and reused), and each test module boots a copy of it with
systemd-nspawn sharing the host's network; commands run inside with nsenter. Needs root, debootstrap,
systemd-container and the Debian mirror of /etc/apt/sources.list.d/debian.sources. Nothing is skipped:
a missing tool or an unreachable mirror fails the run with the reason.
"""
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE_DIR = os.environ.get("SKYFORGE_E2E_CACHE", "/var/cache/skyforge-e2e")
SUITE = "bookworm"
SOURCES = "/etc/apt/sources.list.d/debian.sources"
CONTAINER_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# The integration tests' PostgreSQL recipe (initdb/pg_ctl as postgres on a random loopback port).
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from fixtures.postgres import Cluster  # noqa: E402

_timings = []
_t0 = time.monotonic()


class timed:
    """Records how long a step took, for the summary at the end of the run."""

    def __init__(self, what):
        self.what = what

    def __enter__(self):
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc):
        _timings.append((self.what, time.monotonic() - self.start))


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    tr.section("e2e timing")
    for what, secs in _timings:
        tr.write_line(f"{secs:7.1f} s  {what}")
    tr.write_line(f"{time.monotonic() - _t0:7.1f} s  total (limit 600 s)")


def run(cmd, timeout=600, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}\nstdout:\n{p.stdout[-4000:]}\n"
                             f"stderr:\n{p.stderr[-4000:]}")
    return p


def mirror():
    """The host's Debian mirror: the first URIs: line of its deb822 sources."""
    assert os.path.exists(SOURCES), f"{SOURCES} is missing: no Debian mirror to debootstrap from"
    with open(SOURCES) as f:
        for line in f:
            m = re.match(r"URIs:\s*(\S+)", line)
            if m:
                return m.group(1)
    raise AssertionError(f"no URIs: line in {SOURCES}")


@pytest.fixture(scope="session", autouse=True)
def _requirements():
    assert os.geteuid() == 0, "the e2e tests boot containers and need root"
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "dpkg-buildpackage", "lintian"):
        assert shutil.which(tool), f"{tool} is missing (tests/deps.sh installs it)"


def _clean_copy(dest):
    """The source tree without build products: the files git knows about (tracked, or new and not
    ignored), as they are in the working tree. Without git (a release tarball) the whole tree."""
    if os.path.isdir(os.path.join(TOP, ".git")) or os.path.isfile(os.path.join(TOP, ".git")):
        files = run(["git", "-C", TOP, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
        for rel in filter(None, files.split("\0")):
            src = os.path.join(TOP, rel)
            if not os.path.lexists(src):
                continue  # deleted in the working tree
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)
    else:
        shutil.copytree(TOP, dest, symlinks=True, dirs_exist_ok=True)


@pytest.fixture(scope="session")
def package():
    """Builds the .deb with dpkg-buildpackage from a clean copy; returns (deb, changes) paths."""
    work = tempfile.mkdtemp(prefix="skyforge-e2e-build-", dir="/var/tmp")
    src = os.path.join(work, "skyforge-agent")
    os.makedirs(src)
    with timed("package build (dpkg-buildpackage -b, clean copy)"):
        _clean_copy(src)
        # The unit tests ran in `make check` already; here only the build and the packaging count.
        env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2")
        p = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env, check=False, timeout=900)
        assert p.returncode == 0, f"dpkg-buildpackage failed:\n{p.stdout[-6000:]}\n{p.stderr[-3000:]}"
    debs = glob.glob(os.path.join(work, "skyforge-agent_*.deb"))
    changes = glob.glob(os.path.join(work, "skyforge-agent_*.changes"))
    assert len(debs) == 1 and len(changes) == 1, os.listdir(work)
    yield debs[0], changes[0]
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def rootfs():
    """A minimal bookworm with systemd and dbus, made once by debootstrap and kept in CACHE_DIR."""
    cached = os.path.join(CACHE_DIR, SUITE)
    os.makedirs(CACHE_DIR, exist_ok=True)
    with open(os.path.join(CACHE_DIR, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one debootstrap even when two runs start together
        if os.path.exists(os.path.join(cached, "etc", "debian_version")):
            _timings.append((f"debootstrap {SUITE} (cached in {cached})", 0.0))
            return cached
        url = mirror()
        partial = tempfile.mkdtemp(prefix=f"{SUITE}.", dir=CACHE_DIR)
        os.chmod(partial, 0o755)  # it becomes the container's /: mkdtemp's 0700 locks out every daemon user
        with timed(f"debootstrap {SUITE} from {url} into {cached}"):
            p = run(["debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus", SUITE, partial,
                     url], check=False, timeout=900)
        if p.returncode != 0:
            log = os.path.join(partial, "debootstrap", "debootstrap.log")
            detail = open(log, errors="replace").read()[-3000:] if os.path.exists(log) else ""
            shutil.rmtree(partial, ignore_errors=True)
            pytest.fail(f"debootstrap from {url} failed (exit {p.returncode}); is the mirror reachable?\n"
                        f"{p.stdout[-2000:]}\n{p.stderr[-2000:]}\n{detail}")
        os.rename(partial, cached)
        return cached


class Container:
    """A copy of the cached root file system booted with systemd-nspawn --boot; shares the host's
    network, so servers on the host's 127.0.0.1 are reachable from inside."""

    def __init__(self, rootfs, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"skyforge-e2e-{name}-", dir="/var/tmp")
        self.root = os.path.join(self.dir, "root")
        with timed(f"{name}: copy the root file system"):
            run(["cp", "-a", "--reflink=auto", rootfs, self.root])
        # apt inside uses the host's mirror; downloaded packages are kept across runs.
        os.remove(os.path.join(self.root, "etc", "apt", "sources.list"))
        shutil.copy(SOURCES, os.path.join(self.root, "etc", "apt", "sources.list.d", "debian.sources"))
        self.archives = os.path.join(CACHE_DIR, "apt-archives")
        os.makedirs(os.path.join(self.archives, "partial"), exist_ok=True)
        self.log = open(os.path.join(self.dir, "console.log"), "w")
        self.nspawn = None
        self.pid = None

    def boot(self):
        with timed(f"{self.name}: boot to is-system-running"):
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "-D", self.root, "-M", self.name, "--register=no", "--keep-unit", "--boot",
                 f"--bind={self.archives}:/var/cache/apt/archives"],
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
            self.pid = self._find_init()
            # Until systemd has its private socket up, systemctl cannot connect and prints no state;
            # until it has made /run/systemd/system (sd_booted()), systemctl prints "offline".
            # Both mean "not yet": the new PID 1 is found within milliseconds of its exec.
            deadline = time.monotonic() + 120
            while True:
                p = self.exec(["systemctl", "is-system-running", "--wait"], check=False, timeout=120)
                state = p.stdout.strip()
                if state not in ("", "offline") or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert state in ("running", "degraded"), \
                f"container {self.name} did not boot: {state} {p.stderr}\n{self.console()}"

    def _find_init(self):
        """The container's PID 1: the child of the nspawn process that runs systemd."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.nspawn.poll() is None, f"systemd-nspawn exited: {self.console()}"
            for child in _children(self.nspawn.pid):
                try:
                    with open(f"/proc/{child}/comm") as f:
                        if f.read().strip() == "systemd":
                            return child
                except FileNotFoundError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"no systemd in container {self.name}: {self.console()}")

    def console(self):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return f.read()[-3000:]

    def exec(self, argv, user=None, check=True, timeout=300, input=None):
        """Runs argv inside all the container's namespaces with a clean environment; user= runs it
        as that user (setpriv, without any supplementary group)."""
        env = ["env", "-i", f"PATH={CONTAINER_PATH}", "LANG=C.UTF-8", "HOME=/root", "TERM=dumb",
               "SYSTEMD_PAGER=", "DEBIAN_FRONTEND=noninteractive"]
        if user:
            env = ["/bin/sh", "-c", 'exec setpriv --reuid="$0" --regid="$(id -g "$0")" --clear-groups "$@"',
                   user] + env
        return run(["nsenter", "-t", str(self.pid), "-a", "--"] + env + list(argv), check=check,
                   timeout=timeout, input=input)

    def sh(self, script, **kw):
        return self.exec(["/bin/sh", "-c", script], **kw)

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    def write(self, p, text, mode=0o644):
        with open(self.path(p), "w") as f:
            f.write(text)
        os.chmod(self.path(p), mode)

    def install(self, deb):
        """apt-get installs the package and its dependencies from the mirror."""
        # /tmp inside is a fresh tmpfs after boot; /root is on the copied file system.
        shutil.copy(deb, self.path("/root"))
        with timed(f"{self.name}: apt-get update + install the .deb"):
            self.exec(["apt-get", "update", "-q"], timeout=300)
            return self.exec(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                              "/root/" + os.path.basename(deb)], timeout=600)

    def unit(self, unit):
        out = self.exec(["systemctl", "show", unit, "-p",
                         "ActiveState,SubState,Result,ExecMainStatus,InvocationID,StatusText"]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_unit_done(self, unit, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            u = self.unit(unit)
            if u["ActiveState"] in ("inactive", "failed"):
                return u
            time.sleep(0.2)
        raise AssertionError(f"{unit} still running after {timeout} s: {self.unit(unit)}")

    def journal(self, *args):
        # What journald has received but not yet processed is not visible to readers yet.
        self.exec(["journalctl", "--sync"], check=False)
        out = self.exec(["journalctl", "--no-pager", "-o", "json"] + list(args)).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def stop(self):
        if self.nspawn and self.nspawn.poll() is None:
            self.exec(["systemctl", "poweroff"], check=False, timeout=30)
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.nspawn.send_signal(signal.SIGKILL)
                self.nspawn.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except FileNotFoundError:
        return []


@pytest.fixture(scope="module")
def container_factory(rootfs):
    made = []

    def make(name):
        c = Container(rootfs, name)
        made.append(c)  # stopped and removed at the end even when booting fails
        c.boot()
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture(scope="module")
def host_pg():
    """A PostgreSQL cluster on the host's loopback, reachable from the containers."""
    c = Cluster()
    yield c
    c.destroy()
