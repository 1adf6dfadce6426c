"""restore_command is skyforge-wal-fetch, a helper that links against libc alone (recovery runs it once per WAL
file, and the full agent with its 53 libraries took 0.05-0.09 s just to start), and `skyforge-agent wal-fetch
--spool` still does the same for data directories restored before it. The spool protocol (jobs/wal-spool.h) is
driven here by hand for both programs: this test plays the agent (it holds the spool's flock and answers), so
every answer can be given on demand. Waits are on files appearing, never on the clock."""
import fcntl
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from fixtures.agent import AGENT, BUILDDIR
from test_pitr import pitr, wait_for  # noqa: F401 (fixture)

LEAN = os.path.join(BUILDDIR, "skyforge-wal-fetch")
SEG = "000000010000000000000003"


def needed(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def test_wal_fetch_helper_links_against_libc_alone():
    assert os.access(LEAN, os.X_OK), LEAN
    # A sanitizer build (./configure --enable-sanitizers) adds its runtimes to every program; nothing else may.
    libs = [n for n in needed(LEAN) if not re.match(r"lib(asan|ubsan|lsan|tsan)\.so", n)]
    assert libs == ["libc.so.6"], needed(LEAN)
    # The full agent, for scale: the point of the helper.
    assert len(needed(AGENT)) > 10


@pytest.fixture(params=["skyforge-wal-fetch", "skyforge-agent wal-fetch"])
def fetch(request):
    """Runs restore_command's side the way postgresql.auto.conf names it: the helper, or (older data
    directories) the agent's own verb."""
    argv = [LEAN] if request.param == "skyforge-wal-fetch" else [AGENT, "wal-fetch"]
    root = tempfile.mkdtemp(prefix="skyforge-walfetch-")
    spool = os.path.join(root, "skyforge-wal")
    os.mkdir(spool, 0o700)

    class Fetch:
        pass

    f = Fetch()
    f.root, f.spool = root, spool
    f.out = os.path.join(root, "pg_wal_RECOVERYXLOG")

    def run(*args, wait=True):
        cmd = argv + ["--spool", spool] + list(args)
        if not wait:
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def serve():
        """Plays the agent: holds the spool's flock (restore_command waits only while it is held)."""
        fd = os.open(spool, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def put(name, data):
        tmp = os.path.join(spool, "." + name + ".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
        os.rename(tmp, os.path.join(spool, name))

    f.run, f.serve, f.put = run, serve, put
    yield f
    shutil.rmtree(root, ignore_errors=True)


def test_wal_fetch_moves_a_ready_segment_and_copies_a_history_file(fetch):
    fd = fetch.serve()
    try:
        fetch.put(SEG, b"W" * 8192)
        r = fetch.run(SEG, fetch.out)
        assert r.returncode == 0, r.stderr
        assert open(fetch.out, "rb").read() == b"W" * 8192
        assert not os.path.exists(os.path.join(fetch.spool, SEG))  # moved, not copied
        # PostgreSQL reads a history file more than once: it stays.
        fetch.put("00000002.history", b"1\t0/3000000\tno recovery target specified\n")
        r = fetch.run("00000002.history", fetch.out)
        assert r.returncode == 0, r.stderr
        assert open(fetch.out, "rb").read().startswith(b"1\t0/3000000")
        assert os.path.exists(os.path.join(fetch.spool, "00000002.history"))
        assert not [n for n in os.listdir(fetch.root) if n.endswith(".skyforge-tmp")]
    finally:
        os.close(fd)


def test_wal_fetch_exit_1_for_missing_126_for_error_and_waits_for_the_answer(fetch):
    fd = fetch.serve()
    try:
        # The agent's answer "the store does not hold it": exit 1, the end of WAL.
        fetch.put(SEG + ".missing", b"")
        r = fetch.run(SEG, fetch.out)
        assert r.returncode == 1, r.stderr
        assert not os.path.exists(fetch.out) and not os.path.exists(os.path.join(fetch.spool, SEG + ".missing"))
        # "could not fetch it, and why": exit 126 (PostgreSQL stops) with the reason on stderr.
        fetch.put(SEG + ".error", b"cannot read WAL object 000000010000000000000003.zst: broken pipe")
        r = fetch.run(SEG, fetch.out)
        assert r.returncode == 126, r.stderr
        assert "WAL file 000000010000000000000003: cannot read WAL object" in r.stderr, r.stderr
        assert not os.path.exists(fetch.out)
        # Not there yet: it asks (FILE.want) and waits for the file.
        p = fetch.run(SEG, fetch.out, wait=False)
        want = os.path.join(fetch.spool, SEG + ".want")
        wait_for(lambda: os.path.exists(want) or p.poll() is not None, "the request")
        assert p.poll() is None, p.communicate()
        fetch.put(SEG, b"late")
        assert p.wait(timeout=60) == 0, p.communicate()
        assert open(fetch.out, "rb").read() == b"late"
        # Files recovery may ask for that the archive never holds (backup history files): not found.
        r = fetch.run("000000010000000000000002.00000028.backup", fetch.out)
        assert r.returncode == 1, r.stderr
    finally:
        os.close(fd)
    # A spool filled up front ("complete"): what is not there, the store does not hold.
    fetch.put("complete", b"")
    r = fetch.run("000000010000000000000009", fetch.out)
    assert r.returncode == 1, r.stderr


def test_wal_fetch_without_an_agent_serving_the_spool_is_no_end_of_wal(fetch):
    # Nobody holds the flock and nothing answers: exit 126, never 1 (which would end recovery early).
    r = fetch.run(SEG, fetch.out)
    assert r.returncode == 126, r.stderr
    assert "no skyforge-agent serves the WAL spool" in r.stderr, r.stderr
    # A spool that is gone (the restore is over).
    shutil.rmtree(fetch.spool)
    r = fetch.run(SEG, fetch.out)
    assert r.returncode == 126 and "cannot open the WAL spool" in r.stderr, r.stderr
    # Usage errors are failures too, never "not found".
    r = fetch.run(SEG)
    assert r.returncode == 126, r.stderr


def test_wal_fetch_clean_keeps_a_served_spool_and_removes_a_finished_one(fetch):
    fetch.put(SEG, b"x")
    fd = fetch.serve()
    try:
        r = fetch.run("--clean")
        assert r.returncode == 0, r.stderr
        assert os.path.exists(os.path.join(fetch.spool, SEG))  # the agent that serves it removes it
    finally:
        os.close(fd)
    r = fetch.run("--clean")
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(fetch.spool)


def test_restore_writes_the_helper_into_restore_command_and_recovery_uses_it(pitr):
    p = pitr()
    lsn = p.history_with_an_lsn()

    d = p.new_datadir()
    p.agent("restore", "postgres", "--lsn", lsn, "--to-datadir", d)
    spool = os.path.join(d, "skyforge-wal")
    with open(os.path.join(d, "postgresql.auto.conf")) as f:
        auto = f.read()
    assert f"restore_command = '{LEAN} --spool {spool} %f %p'" in auto, auto
    assert f"recovery_end_command = '{LEAN} --spool {spool} --clean'" in auto, auto

    # The server, as postgres, recovers through the helper alone (no agent runs now).
    port = p.start_copy(d, "offline.log")
    assert not os.path.exists(spool)  # recovery_end_command removed it
    assert p.rows_of(port) == list(range(1, 41))
