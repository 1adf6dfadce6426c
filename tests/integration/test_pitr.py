"""Point-in-time recovery against real PostgreSQL 15 servers (wal_level=replica, the initdb default, with
initdb's replication lines in pg_hba.conf): `wal-stream` stores WAL from a physical slot, `run basebackup`
stores a base backup, and `restore postgres --to-datadir` brings a fresh data directory to a moment, its
WAL fetched by the agent (root, with a root-only configuration, store and identity) into a spool that
restore_command (`wal-fetch --spool`, as the postgres user) takes it from. Waits are on events (objects appearing in the store, positions
reported by the server), never on the clock."""
import decimal
import os
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import datetime, timezone

import pytest

from fixtures.agent import AGENT, write_config
from fixtures.postgres import as_postgres, free_port


def wait_for(cond, what, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Pitr:
    """A cluster, an agent configuration and a local store, both root's alone (mode 0700/0600, as on a node:
    restore_command runs as the server's user and takes the WAL from the spool the agent fills)."""

    def __init__(self, cluster, flush_seconds=1):
        self.pg = cluster
        self.root = tempfile.mkdtemp(prefix="skyforge-pitr-")
        os.chmod(self.root, 0o755)
        self.store = os.path.join(self.root, "store")
        os.mkdir(self.store, 0o700)
        self.conf = os.path.join(self.root, "agent.conf")
        self.sockets = os.path.join(self.root, "sockets")
        os.mkdir(self.sockets)
        shutil.chown(self.sockets, "postgres")
        self.configure(flush_seconds)
        self.streams = []
        self.restored = []
        self.env = dict(os.environ)
        self.env.pop("JOURNAL_STREAM", None)
        self.env["SKYFORGE_NO_PROGRESS"] = "1"

    def configure(self, flush_seconds, agent=None, **postgres):
        from pathlib import Path
        write_config(Path(self.conf), {
            "agent": {"state_dir": os.path.join(self.root, "state"), **(agent or {})},
            "postgres": {"conninfo": self.pg.conninfo, "destination": self.store,
                         "wal_flush_seconds": flush_seconds, **postgres},
        })
        os.chmod(self.conf, 0o600)

    def agent(self, *args, check=True, timeout=300):
        p = subprocess.run([AGENT, "-c", self.conf] + [str(a) for a in args], capture_output=True, text=True,
                           env=self.env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{args} exited {p.returncode}:\n{p.stderr}")
        return p

    def start_stream(self):
        log = open(os.path.join(self.root, f"stream-{len(self.streams)}.log"), "w+")
        p = subprocess.Popen([AGENT, "-c", self.conf, "wal-stream"], stdout=subprocess.DEVNULL, stderr=log,
                             env=self.env)
        p.log = log
        self.streams.append(p)
        # The slot is active once START_REPLICATION ran.
        wait_for(lambda: p.poll() is not None or self.pg.psql(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'skyforge' AND active").strip() == "1",
            "the WAL stream to start")
        assert p.poll() is None, self.stream_log(p)
        return p

    def stream_log(self, p):
        p.log.seek(0)
        return p.log.read()

    def wal_dir(self, tli=1):
        return os.path.join(self.store, "wal", f"{tli:08X}")

    def stored(self, tli=1):
        d = self.wal_dir(tli)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def current_file(self):
        return self.pg.psql("SELECT pg_walfile_name(pg_current_wal_lsn())").strip()

    def switch_and_wait(self):
        """Completes the current segment and waits until the stream has stored it whole."""
        f = self.current_file()
        self.pg.psql("SELECT pg_switch_wal()")
        wait_for(lambda: f + ".zst" in self.stored(), f"segment {f} in the store")
        return f

    def insert_rows(self, first, last):
        """One transaction per row."""
        self.pg.psql("".join(f"INSERT INTO r (i) VALUES ({i});\n" for i in range(first, last + 1)))

    def commit_times(self):
        """{row: commit time in usec since the epoch}, from the server (track_commit_timestamp)."""
        out = self.pg.psql("SELECT i, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM r ORDER BY i")
        times = {}
        for line in out.split("\n"):
            if line:
                i, t = line.split("|")
                times[int(i)] = int(decimal.Decimal(t) * 1000000)
        return times

    def fetch(self, name, path):
        return subprocess.run([AGENT, "-c", self.conf, "wal-fetch", name, path], capture_output=True, text=True,
                              env=self.env)

    def new_datadir(self):
        d = os.path.join(self.root, f"restored-{len(self.restored)}")
        os.mkdir(d, 0o700)
        shutil.chown(d, "postgres")
        self.restored.append(d)
        return d

    def restore_and_start(self, *target):
        d = self.new_datadir()
        port = free_port()
        r = self.agent("restore", "postgres", *target, "--to-datadir", d, "--start", "--set", f"port={port}",
                       "--set", f"unix_socket_directories={self.sockets}", "--set", "listen_addresses=127.0.0.1",
                       timeout=600, check=False)
        if r.returncode != 0:
            log = os.path.join(d, "skyforge-restore.log")
            raise AssertionError(f"restore exited {r.returncode}:\n{r.stderr}\n" +
                                 (open(log).read() if os.path.exists(log) else ""))
        return d, port

    def history_with_an_lsn(self, step=20, switch=True):
        """Rows 1 to 3 x step, one transaction each, a base backup after row step; returns the insert
        position after row 2 x step. switch: the last segment switched and in the store too."""
        self.start_stream()
        self.insert_rows(1, step)
        self.agent("run", "basebackup")
        self.insert_rows(step + 1, 2 * step)
        lsn = self.pg.psql("SELECT pg_current_wal_insert_lsn()").strip()
        self.insert_rows(2 * step + 1, 3 * step)
        if switch:
            self.switch_and_wait()
        return lsn

    def start_copy(self, d, log_name):
        """Starts the restored data directory d as the postgres user, as an operator would (no agent runs),
        and waits until it is promoted; returns its port."""
        port = free_port()
        log = os.path.join(self.sockets, log_name)
        started = subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(self.pg.bindir, "pg_ctl"), "-D",
                                  d, "-l", log, "-w", "-o",
                                  f"-p {port} -k {self.sockets} -c listen_addresses=127.0.0.1", "start"],
                                 capture_output=True, text=True)
        assert started.returncode == 0, started.stderr + (open(log).read() if os.path.exists(log) else "")

        def promoted():
            r = subprocess.run([os.path.join(self.pg.bindir, "psql"), "-X", "-At", "-d",
                                f"host=127.0.0.1 port={port} user=postgres dbname=postgres", "-c",
                                "SELECT pg_is_in_recovery()"], capture_output=True, text=True)
            return r.returncode == 0 and r.stdout.strip() == "f"
        wait_for(promoted, "the copy to be promoted")
        return port

    def rows_of(self, port):
        p = subprocess.run([os.path.join(self.pg.bindir, "psql"), "-X", "-At", "-d",
                            f"host=127.0.0.1 port={port} user=postgres dbname=postgres", "-c",
                            "SELECT i FROM r ORDER BY i"], capture_output=True, text=True, check=True)
        return [int(x) for x in p.stdout.split()]

    def cleanup(self):
        for p in self.streams:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.log.close()
        for d in self.restored:
            if os.path.exists(os.path.join(d, "postmaster.pid")):
                subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(self.pg.bindir, "pg_ctl"), "-D", d,
                                "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def pitr(pg_factory):
    made = []

    def make(flush_seconds=1):
        # wal_keep_size: the server keeps its WAL files after the slot lets go of them (a checkpoint on a
        # slow machine would otherwise remove what the tests compare the stored segments with).
        c = pg_factory(settings={"track_commit_timestamp": "on", "wal_keep_size": "1GB"})
        c.psql("CREATE TABLE r (i int PRIMARY KEY, payload text DEFAULT repeat('x', 100))")
        p = Pitr(c, flush_seconds)
        made.append(p)
        return p

    yield make
    for p in made:
        p.cleanup()


def usec_to_text(usec):
    t = datetime.fromtimestamp(usec // 1000000, tz=timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S") + f".{usec % 1000000:06d}+00"


def test_restore_to_time_has_exactly_the_rows_committed_before_it(pitr):
    p = pitr()
    p.start_stream()
    p.insert_rows(1, 50)
    bb = p.agent("run", "basebackup")
    base_id = bb.stdout.strip()
    p.insert_rows(51, 150)
    times = p.commit_times()
    # A moment strictly between two commits, in the middle of the writes after the base backup.
    k = next(i for i in range(100, 150) if times[i + 1] - times[i] >= 2)
    target = times[k] + (times[k + 1] - times[k]) // 2
    p.insert_rows(151, 200)
    p.switch_and_wait()

    d, port = p.restore_and_start("--time", usec_to_text(target))
    assert p.rows_of(port) == list(range(1, k + 1))
    # The base backup's manifest names what the restore needed.
    m = p.agent("list", "--json", check=False)
    with open(os.path.join(p.store, f"{base_id}.json")) as f:
        text = f.read()
    assert '"job":"basebackup"' in text.replace(" ", "") and "start_lsn" in text and "end_lsn" in text


def test_restore_to_lsn_and_latest(pitr):
    p = pitr()
    lsn = p.history_with_an_lsn()

    _, port = p.restore_and_start("--lsn", lsn)
    assert p.rows_of(port) == list(range(1, 41))
    _, port = p.restore_and_start("latest")
    assert p.rows_of(port) == list(range(1, 61))


def test_base_backup_restored_without_start_passes_pg_verifybackup(pitr):
    p = pitr()
    p.start_stream()
    p.agent("run", "basebackup")
    p.switch_and_wait()
    d = p.new_datadir()
    p.agent("restore", "postgres", "--to-datadir", d)
    v = subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(p.pg.bindir, "pg_verifybackup"), "-n",
                        "-i", "postgresql.auto.conf", "-i", "recovery.signal", "-i", "skyforge-wal", d],
                       capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    with open(os.path.join(d, "postgresql.auto.conf")) as f:
        auto = f.read()
    assert f"wal-fetch --spool {d}/skyforge-wal %f %p" in auto and "recovery_target_action = 'promote'" in auto
    assert os.path.exists(os.path.join(d, "recovery.signal"))
    # A directory that is not empty is refused, and left alone.
    r = p.agent("restore", "postgres", "--to-datadir", d, check=False)
    assert r.returncode == 73 and "not empty" in r.stderr


def test_kill_9_mid_segment_then_restart_leaves_no_gap_and_rewrites_nothing(pitr):
    p = pitr(flush_seconds=1)
    s = p.start_stream()
    p.insert_rows(1, 30)
    p.agent("run", "basebackup")
    p.insert_rows(31, 60)
    before = p.switch_and_wait()
    p.insert_rows(61, 90)
    mid = p.current_file()
    # Mid-segment: its partial is stored, the segment is not complete.
    wait_for(lambda: mid + ".partial.zst" in p.stored(), f"the partial segment {mid}")
    s.kill()
    s.wait()
    full_before = {n: open(os.path.join(p.wal_dir(), n), "rb").read() for n in p.stored() if
                   not n.endswith(".partial.zst")}
    assert before + ".zst" in full_before
    # What a kill in the middle of writing a segment leaves: a hidden temporary file. The restarted stream
    # removes it (the job runs, which share the location, leave the stream's files alone).
    leftover = os.path.join(p.wal_dir(), f".{mid}.zst.tmp.0badf00d")
    with open(leftover, "wb") as f:
        f.write(b"cut")
    p.agent("run", "basebackup")
    assert os.path.exists(leftover)

    p.insert_rows(91, 120)
    p.start_stream()
    wait_for(lambda: not os.path.exists(leftover), "the restarted stream to remove its leftover")
    last = p.switch_and_wait()
    names = p.stored()
    full = [n[:24] for n in names if n.endswith(".zst") and not n.endswith(".partial.zst")]
    # No gap: consecutive segment numbers from the first to the last.
    nums = [int(n[8:], 16) for n in full]
    assert nums == list(range(nums[0], nums[-1] + 1)), names
    assert mid in full and last in full
    # A segment stored before the kill is never written again (same bytes), and no partial is left beside
    # a complete segment.
    for n, data in full_before.items():
        assert open(os.path.join(p.wal_dir(), n), "rb").read() == data, n
    # The partial goes right after its complete segment is committed (in that order).
    wait_for(lambda: not any(n.endswith(".partial.zst") and n[:24] in full for n in p.stored()),
             "the partials of complete segments to go")
    # The segment that was cut by the kill holds what the server wrote.
    out = os.path.join(p.root, "mid")
    assert p.fetch(mid, out).returncode == 0
    with open(out, "rb") as a, open(os.path.join(p.pg.data, "pg_wal", mid), "rb") as b:
        assert a.read() == b.read()
    # And the whole chain replays.
    _, port = p.restore_and_start("latest")
    assert p.rows_of(port) == list(range(1, 121))


def test_sigterm_stores_the_partial_segment_and_exits_0(pitr):
    p = pitr(flush_seconds=3600)
    s = p.start_stream()
    p.insert_rows(1, 40)
    f = p.current_file()
    lsn = p.pg.psql("SELECT pg_current_wal_lsn()").strip()
    # The stream reports what it holds as its write position.
    try:
        wait_for(lambda: p.pg.psql(f"SELECT write_lsn >= '{lsn}' FROM pg_stat_replication").strip() == "t",
                 "the stream to receive the rows")
    except BaseException:
        # No walsender row at all means the stream died: its log says why.
        print("pg_stat_replication:", p.pg.psql("SELECT * FROM pg_stat_replication"))
        print("stream log:", p.stream_log(s))
        raise
    assert f + ".partial.zst" not in p.stored()
    s.send_signal(signal.SIGTERM)
    assert s.wait(timeout=60) == 0, p.stream_log(s)
    assert f + ".partial.zst" in p.stored(), (p.stored(), p.stream_log(s))
    out = os.path.join(p.root, "partial")
    assert p.fetch(f, out).returncode == 0
    offset = int(lsn.split("/")[1], 16) % (16 * 1024 * 1024)
    with open(out, "rb") as a, open(os.path.join(p.pg.data, "pg_wal", f), "rb") as b:
        got, want = a.read(), b.read()
    assert len(got) == 16 * 1024 * 1024
    assert got[:offset] == want[:offset]


def test_wal_fetch_exit_status_tells_missing_from_failure(pitr):
    p = pitr()
    out = os.path.join(p.root, "x")
    r = p.fetch("0000000100000000000000AA", out)
    assert r.returncode == 1 and not os.path.exists(out)
    r = p.fetch("00000005.history", out)
    assert r.returncode == 1 and not os.path.exists(out)
    # An object that cannot be read is no "missing file": PostgreSQL must stop, not end recovery there.
    os.makedirs(p.wal_dir(), exist_ok=True)
    with open(os.path.join(p.wal_dir(), "0000000100000000000000AB.zst"), "wb") as f:
        f.write(b"not zstd at all")
    r = p.fetch("0000000100000000000000AB", out)
    assert r.returncode == 126, r.stderr
    assert not os.path.exists(out)


def test_stopped_stream_slot_holds_wal_warns_and_catches_up(pitr):
    p = pitr()
    p.configure(1, wal_warn_bytes="16MiB")
    s = p.start_stream()
    s.send_signal(signal.SIGTERM)
    assert s.wait(timeout=60) == 0
    # While the agent is away the slot keeps the server's WAL: three segments' worth.
    first = p.current_file()
    for i in range(3):
        p.insert_rows(10 * i + 1, 10 * i + 10)
        p.pg.psql("SELECT pg_switch_wal()")
    held = int(p.pg.psql("SELECT pg_current_wal_lsn() - restart_lsn FROM pg_replication_slots "
                         "WHERE slot_name = 'skyforge'").strip())
    assert held > 32 * 1024 * 1024
    last = p.current_file()
    s = p.start_stream()
    wait_for(lambda: "more than wal_warn_bytes" in p.stream_log(s), "the slot warning")
    # It catches up: every segment up to the last switched one, and says the slot is back under the limit.
    wait_for(lambda: all(f"{first[:16]}{n:08X}.zst" in p.stored()
                         for n in range(int(first[16:], 16), int(last[16:], 16))), "the stream to catch up")
    wait_for(lambda: "back under wal_warn_bytes" in p.stream_log(s), "the all-clear")
    # The server lets go of what is stored (the acknowledgement follows each commit).
    wait_for(lambda: int(p.pg.psql("SELECT pg_current_wal_lsn() - restart_lsn FROM pg_replication_slots "
                                   "WHERE slot_name = 'skyforge'").strip()) < 16 * 1024 * 1024,
             "the slot to release the stored WAL")


class Standby:
    """A streaming standby of cluster: pg_basebackup -R, started on its own port."""

    def __init__(self, primary):
        self.primary = primary
        self.bindir = primary.bindir
        self.dir = tempfile.mkdtemp(prefix="skyforge-standby-")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.password = None
        as_postgres([os.path.join(self.bindir, "pg_basebackup"), "-d", primary.conninfo, "-D", self.data, "-R",
                     "-X", "stream", "-c", "fast"])
        as_postgres([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w",
                     "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start"])

    conninfo = property(lambda self: f"host=127.0.0.1 port={self.port} user=postgres")

    def psql(self, sql):
        p = subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d",
                            self.conninfo], input=sql, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return p.stdout

    def destroy(self):
        subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m",
                        "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def standby():
    made = []

    def make(primary):
        s = Standby(primary)
        made.append(s)
        return s

    yield make
    for s in made:
        s.destroy()


def test_stream_follows_a_timeline_switch_and_restore_follows_it_too(pitr, standby):
    p = pitr()
    p.insert_rows(1, 10)
    b = standby(p.pg)
    # The agent follows the standby: base backup and WAL from it.
    p.pg = b
    p.configure(1)
    s = p.start_stream()
    p.agent("run", "basebackup")
    b.primary.psql("".join(f"INSERT INTO r (i) VALUES ({i});\n" for i in range(11, 30)))
    lsn = b.primary.psql("SELECT pg_current_wal_lsn()").strip()
    wait_for(lambda: b.psql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'").strip() == "t", "the standby to replay")
    t0 = time.monotonic()
    try:
        wait_for(lambda: p.pg.psql(f"SELECT write_lsn >= '{lsn}' FROM pg_stat_replication").strip() == "t",
                 "the stream to receive the rows")
        print("DIAGT waited", time.monotonic() - t0)
    except BaseException:
        print("DIAG primary lsn", lsn, b.primary.psql("SELECT pg_current_wal_lsn()"))
        print("DIAG standby", b.psql("SELECT pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()"))
        print("DIAG repl", p.pg.psql("SELECT * FROM pg_stat_replication"))
        print("DIAG slots", p.pg.psql("SELECT * FROM pg_replication_slots"))
        print("DIAG log", p.stream_log(s))
        raise
    hi, lo = (int(x, 16) for x in b.psql("SELECT pg_last_wal_replay_lsn()").strip().split("/"))
    segno = ((hi << 32) | lo) // (16 * 1024 * 1024)
    switch_file = f"00000001{segno // 256:08X}{segno % 256:08X}"

    # Promotion: the standby ends timeline 1; the stream stores its last segment as .partial, the history
    # file of timeline 2, and goes on on timeline 2.
    as_postgres([os.path.join(b.bindir, "pg_ctl"), "-D", b.data, "-w", "promote"])
    wait_for(lambda: "00000002.history.zst" in p.stored(2), "the history file of timeline 2")
    assert switch_file + ".partial.zst" in p.stored(1), p.stored(1)
    b.psql("".join(f"INSERT INTO r (i) VALUES ({i});\n" for i in range(30, 50)))
    f = b.psql("SELECT pg_walfile_name(pg_current_wal_lsn())").strip()
    assert f.startswith("00000002")
    b.psql("SELECT pg_switch_wal()")
    wait_for(lambda: f + ".zst" in p.stored(2), f"segment {f} of timeline 2")
    assert s.poll() is None, p.stream_log(s)
    out = os.path.join(p.root, "history")
    assert p.fetch("00000002.history", out).returncode == 0
    with open(out) as h, open(os.path.join(b.data, "pg_wal", "00000002.history")) as want:
        assert h.read() == want.read()

    # A base backup taken on timeline 1 replays across the switch to the end of timeline 2.
    _, port = p.restore_and_start("latest")
    assert p.rows_of(port) == list(range(1, 50))


def test_retention_deletes_the_wal_before_the_oldest_kept_base_backup(pitr):
    p = pitr()
    p.configure(1, retention_days=0, keep_min=1)
    p.start_stream()
    p.insert_rows(1, 10)
    first = p.agent("run", "basebackup").stdout.strip()
    p.insert_rows(11, 20)
    p.switch_and_wait()
    p.insert_rows(21, 30)
    p.switch_and_wait()
    before = p.stored()
    second = p.agent("run", "basebackup").stdout.strip()
    assert second != first
    assert not os.path.exists(os.path.join(p.store, f"{first}.json"))
    with open(os.path.join(p.store, f"{second}.json")) as f:
        import json
        start = json.load(f)["details"]["start_wal_file"]
    # BASE_BACKUP switches segments as it starts: the stream may store that last one, start - 1, after the
    # retention ran (the next run deletes it). Everything older is gone.
    keep_from = f"{start[:16]}{int(start[16:], 16) - 1:08X}"
    after = [n for n in p.stored() if n.endswith(".zst")]
    assert all(n[:24] >= keep_from for n in after), (start, after)
    assert any(n[:24] < start for n in before), (start, before)
    # What is left is enough: the second base backup replays to the end.
    p.insert_rows(31, 40)
    p.switch_and_wait()
    _, port = p.restore_and_start("latest")
    assert p.rows_of(port) == list(range(1, 41))


def test_verify_basebackup_checks_the_wal_chain_for_gaps(pitr):
    p = pitr()
    p.start_stream()
    p.agent("run", "basebackup")
    files = []
    for i in range(3):
        p.insert_rows(10 * i + 1, 10 * i + 10)
        files.append(p.switch_and_wait())
    ok = p.agent("verify", "basebackup", check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Plain `verify` leaves base backups alone (most nodes have none).
    assert "basebackup" not in p.agent("verify", check=False).stdout
    os.remove(os.path.join(p.wal_dir(), files[1] + ".zst"))
    bad = p.agent("verify", "basebackup", check=False)
    assert bad.returncode == 65, bad.stdout + bad.stderr
    assert f"WAL gap: {files[1]} missing" in bad.stdout + bad.stderr


def test_stream_through_s3_faults_stores_every_segment_exactly(pitr, s3_server, s3_bucket, s3_fault_proxy):
    """10 % of the requests to a real S3 server (moto, signatures checked) fail (503, SlowDown, resets, cut
    bodies): the stream retries, and every segment lands whole, in order."""
    from pathlib import Path
    proxy = s3_fault_proxy(rate=0.10, seed=11)
    p = pitr()
    secret = os.path.join(p.root, "minio.secret")
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(s3_server.secret_key + "\n")
    write_config(Path(p.conf), {
        "agent": {"state_dir": os.path.join(p.root, "state")},
        "remote.minio": {"endpoint": proxy.endpoint, "region": "us-east-1", "access_key_id": s3_server.access_key,
                         "secret_access_key_file": secret, "path_style": "yes", "max_attempts": 8},
        "postgres": {"conninfo": p.pg.conninfo, "destination": f"minio:{s3_bucket}/pg/", "wal_flush_seconds": 1},
    })
    s = p.start_stream()
    client = s3_server.client()

    def stored(f):
        try:
            client.head_object(Bucket=s3_bucket, Key=f"pg/wal/00000001/{f}.zst")
            return True
        except Exception:
            return False

    files = []
    for i in range(4):
        p.insert_rows(20 * i + 1, 20 * i + 20)
        files.append(p.current_file())
        p.pg.psql("SELECT pg_switch_wal()")
    for f in files:
        wait_for(lambda: stored(f), f"segment {f} in the bucket", timeout=180)
    assert s.poll() is None, p.stream_log(s)
    for f in files:
        out = os.path.join(p.root, f)
        r = p.fetch(f, out)
        assert r.returncode == 0, r.stderr
        with open(out, "rb") as a, open(os.path.join(p.pg.data, "pg_wal", f), "rb") as b:
            assert a.read() == b.read(), f
    assert sum(proxy.faults.values()) >= 2, proxy.faults
    s.send_signal(signal.SIGTERM)
    assert s.wait(timeout=120) == 0, p.stream_log(s)


def test_encrypted_wal_and_base_backup_restore_and_open_with_stock_tools(pitr):
    from pathlib import Path
    from fixtures.age import age_keypair
    p = pitr()
    identity, recipient = age_keypair(Path(p.root), "age.key")
    assert os.stat(identity).st_uid == 0 and os.stat(identity).st_mode & 0o077 == 0  # root's alone
    p.configure(1, recipients=recipient, identity_file=identity)
    p.start_stream()
    p.insert_rows(1, 10)
    base = p.agent("run", "basebackup").stdout.strip()
    p.insert_rows(11, 20)
    f = p.current_file()
    p.pg.psql("SELECT pg_switch_wal()")
    wait_for(lambda: f + ".zst.age" in p.stored(), f"segment {f} encrypted in the store")
    assert not any(n.endswith(".zst") for n in p.stored()), p.stored()
    assert os.path.exists(os.path.join(p.store, f"{base}.base", "base.tar.zst.age"))
    # age -d | zstd -d gives the server's WAL file back: no need for this tool to read it.
    plain = subprocess.run(f"age -d -i {identity} {p.wal_dir()}/{f}.zst.age | zstd -dc", shell=True,
                           capture_output=True, check=True).stdout
    with open(os.path.join(p.pg.data, "pg_wal", f), "rb") as w:
        assert plain == w.read()
    _, port = p.restore_and_start("latest")
    assert p.rows_of(port) == list(range(1, 21))
