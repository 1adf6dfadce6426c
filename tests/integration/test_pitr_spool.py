"""restore_command without the agent's configuration (issue 18): the agent, as root, fetches the WAL
(decrypted, decompressed, checked) into a spool in the data directory, and the server, recovering as the
postgres user, takes it from there with `wal-fetch --spool`, which reads no configuration. The
configuration, the store and the age identity are root's alone (0600/0700), as on a node. Real PostgreSQL 15
servers; waits are on events (the server's state, the agent's log lines, files appearing), never on the
clock."""
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from fixtures.age import age_keypair
from fixtures.agent import AGENT
from fixtures.postgres import free_port
from test_pitr import pitr, usec_to_text, wait_for  # noqa: F401 (fixture)


def private(p):
    """The store, the configuration and (when there) the identity: root's, no access for anyone else."""
    os.chmod(p.store, 0o700)
    os.chmod(p.conf, 0o600)
    for path in (p.store, p.conf):
        assert os.stat(path).st_uid == 0 and os.stat(path).st_mode & 0o077 == 0
    # The server's user really cannot read them (the bug: its restore_command needed to).
    r = subprocess.run(["runuser", "-u", "postgres", "--", "cat", p.conf], capture_output=True)
    assert r.returncode != 0


def spool_of(d):
    return os.path.join(d, "skyforge-wal")


def segments_in(spool):
    return sorted(n for n in os.listdir(spool) if len(n) == 24 and all(c in "0123456789ABCDEF" for c in n))


def psql_at(p, port, sql):
    r = subprocess.run([os.path.join(p.pg.bindir, "psql"), "-X", "-At", "-d",
                        f"host=127.0.0.1 port={port} user=postgres dbname=postgres", "-c", sql],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def test_restore_to_a_time_with_start_as_postgres_without_access_to_config_store_or_identity(pitr):
    p = pitr()
    identity, recipient = age_keypair(pathlib.Path(p.root), "age.key")
    p.configure(1, recipients=recipient, identity_file=identity)
    private(p)
    assert os.stat(identity).st_mode & 0o077 == 0
    p.start_stream()
    p.insert_rows(1, 50)
    p.agent("run", "basebackup")
    p.insert_rows(51, 150)
    times = p.commit_times()
    k = next(i for i in range(100, 150) if times[i + 1] - times[i] >= 2)
    target = times[k] + (times[k + 1] - times[k]) // 2
    p.insert_rows(151, 200)
    f = p.current_file()
    p.pg.psql("SELECT pg_switch_wal()")
    wait_for(lambda: f + ".zst.age" in p.stored(), f"segment {f} encrypted in the store")
    assert all(n.endswith(".age") for n in p.stored())

    d, port = p.restore_and_start("--time", usec_to_text(target))
    assert p.rows_of(port) == list(range(1, k + 1))
    with open(os.path.join(d, "postgresql.auto.conf")) as f:
        auto = f.read()
    # The spool is gone once recovery is over, and so is the restore_command that named it (which named no
    # configuration either: the offline test sees it before recovery).
    assert "restore_command" not in auto and p.conf not in auto, auto
    assert not os.path.exists(spool_of(d))


def test_look_ahead_never_holds_more_than_wal_prefetch_segments(pitr):
    p = pitr()
    p.configure(1, wal_prefetch=2)
    private(p)
    lsn = p.history_with_an_lsn(step=10, switch=False)
    # Six more segments after the target: far more than the look-ahead may fetch.
    for i in range(6):
        p.insert_rows(100 + 10 * i, 109 + 10 * i)
        p.switch_and_wait()

    d = p.new_datadir()
    port = free_port()
    log = os.path.join(p.root, "restore.log")
    env = dict(p.env, SKYFORGE_LOG_LEVEL="debug")
    # The server pauses at the target: it asks for no more WAL, so what the spool holds then is what the
    # look-ahead fetched beyond its last request.
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [AGENT, "-c", p.conf, "restore", "postgres", "--lsn",
             lsn, "--to-datadir", d, "--start", "--set", f"port={port}", "--set",
             f"unix_socket_directories={p.sockets}", "--set", "listen_addresses=127.0.0.1", "--set",
             "recovery_target_action=pause"], stdout=subprocess.DEVNULL, stderr=out, env=env)
    try:
        wait_for(lambda: proc.poll() is not None or psql_at(p, port, "SELECT pg_get_wal_replay_pause_state()")
                 == "paused", "the restored server to pause at the target", timeout=300)
        assert proc.poll() is None, open(log).read()

        def look_ahead_lines():
            return [line for line in open(log).read().splitlines()
                    if "Prefetched " in line or "WAL look-ahead full" in line]

        # The look-ahead's last word: full, with two segments waiting (and none fetched beyond).
        wait_for(lambda: look_ahead_lines() and "WAL look-ahead full: 2 segment(s)" in look_ahead_lines()[-1],
                 "the look-ahead to be full")
        assert len(segments_in(spool_of(d))) == 2, os.listdir(spool_of(d))
        for line in look_ahead_lines():
            if "Prefetched " in line:
                assert "(1 of at most 2 " in line or "(2 of at most 2 " in line, line
        assert psql_at(p, port, "SELECT pg_wal_replay_resume()") is not None
        assert proc.wait(timeout=300) == 0, open(log).read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert p.rows_of(port) == list(range(1, 21))
    assert not os.path.exists(spool_of(d))


def test_a_damaged_segment_stops_recovery_with_the_reason_not_early(pitr):
    p = pitr()
    private(p)
    p.start_stream()
    p.insert_rows(1, 10)
    p.agent("run", "basebackup")
    files = []
    for i in range(4):
        p.insert_rows(100 + 10 * i, 109 + 10 * i)
        files.append(p.switch_and_wait())
    # The store breaks in the middle of the WAL: a segment's object is cut and garbled.
    bad = os.path.join(p.wal_dir(), files[2] + ".zst")
    with open(bad, "r+b") as f:
        data = bytearray(f.read())
        for i in range(len(data) // 2, len(data) // 2 + 64):
            data[i] ^= 0x5A
        f.seek(0)
        f.write(data)
    d = p.new_datadir()
    port = free_port()
    r = p.agent("restore", "postgres", "latest", "--to-datadir", d, "--start", "--set", f"port={port}", "--set",
                f"unix_socket_directories={p.sockets}", "--set", "listen_addresses=127.0.0.1", check=False,
                timeout=600)
    assert r.returncode != 0, r.stderr
    assert "could not fetch: " in r.stderr and files[2] in r.stderr, r.stderr
    # Stopped, not promoted at an earlier moment: the copy is still in recovery and not running.
    assert not os.path.exists(os.path.join(d, "postmaster.pid"))
    assert os.path.exists(os.path.join(d, "recovery.signal"))
    with open(os.path.join(d, "skyforge-restore.log")) as f:
        server_log = f.read()
    assert f'FATAL:  could not restore file "{files[2]}"' in server_log, server_log
    assert "selected new timeline" not in server_log, server_log


def test_restore_without_start_fetches_all_wal_up_front_and_pg_ctl_start_recovers(pitr):
    p = pitr()
    private(p)
    p.start_stream()
    p.insert_rows(1, 40)
    p.agent("run", "basebackup")
    p.insert_rows(41, 80)
    lsn = p.pg.psql("SELECT pg_current_wal_insert_lsn()").strip()
    p.insert_rows(81, 120)
    last = p.switch_and_wait()

    d = p.new_datadir()
    r = p.agent("restore", "postgres", "--lsn", lsn, "--to-datadir", d)
    assert "wait in" in r.stderr, r.stderr
    spool = spool_of(d)
    held = segments_in(spool)
    assert last in held and os.path.exists(os.path.join(spool, "complete")), held
    assert all(os.stat(os.path.join(spool, n)).st_uid == os.stat(d).st_uid for n in os.listdir(spool))
    with open(os.path.join(d, "postgresql.auto.conf")) as f:
        auto = f.read()
    # No configuration in restore_command: it runs as the server's user.
    assert "recovery_end_command" in auto and f"--spool {spool} %f %p" in auto and p.conf not in auto, auto

    # No agent runs now: the operator starts the copy by hand, as the postgres user.
    port = p.start_copy(d, "offline.log")
    assert p.rows_of(port) == list(range(1, 81))
    # recovery_end_command removed the spool.
    assert not os.path.exists(spool)


def test_restore_without_start_refuses_wal_that_does_not_fit_before_writing(pitr):
    p = pitr()
    private(p)
    p.start_stream()
    p.insert_rows(1, 10)
    p.agent("run", "basebackup")
    for i in range(3):
        p.insert_rows(20 + i, 20 + i)
        p.switch_and_wait()
    small = tempfile.mkdtemp(prefix="skyforge-small-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", small]).returncode != 0:
        os.rmdir(small)
        pytest.skip("cannot mount a tmpfs here")
    try:
        d = os.path.join(small, "data")
        os.mkdir(d, 0o700)
        shutil.chown(d, "postgres")
        r = p.agent("restore", "postgres", "--to-datadir", d, check=False)
        assert r.returncode == 73, r.stderr
        assert "do not fit" in r.stderr and "--start" in r.stderr and "nothing was written" in r.stderr
        assert os.listdir(d) == []
    finally:
        subprocess.run(["umount", small])
        shutil.rmtree(small, ignore_errors=True)
