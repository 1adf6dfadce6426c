"""verify: stored objects against manifests, and the restore test into a throwaway cluster, against real
PostgreSQL clusters on the local store."""
import json
import os
import pathlib
import signal
import subprocess
import time

import shutil
import tempfile

import pytest

from fixtures.agent import AGENT
from fixtures.postgres import load_sample_data


@pytest.fixture
def work():
    """work_dir for the throwaway cluster: not under pytest's tmp_path, which the postgres user cannot
    enter."""
    d = tempfile.mkdtemp(prefix="skyforge-work-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def configure_pg(agent, cluster, work_dir=None, **extra):
    keys = {"conninfo": cluster.conninfo, "destination": agent.store / "postgres"}
    keys.update(extra)
    if work_dir:
        return agent.configure(postgres=keys, agent={"work_dir": work_dir})
    return agent.configure(postgres=keys)


def backups(agent):
    return json.loads(agent("list", "--json", check=True).stdout)


def last_verify(agent, job="postgres"):
    st = json.loads((agent.state_dir / f"{job}.json").read_text())
    return json.loads(st["last_verify"])


def three_backups(agent, cluster):
    ids = []
    for _ in range(3):
        ids.append(agent("run", "postgres", check=True).stdout.strip())
        time.sleep(1.05)
    return ids


def dump_path(agent, backup_id):
    m = json.loads((agent.store / "postgres" / f"{backup_id}.json").read_text())
    return agent.store / "postgres" / m["objects"][0]["name"]


def postgres_processes_under(directory):
    """PIDs of processes whose command line mentions directory (a leftover server)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if directory.encode() in f.read():
                    found.append(int(d))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def test_verify_passes_on_good_backups(local_agent, pg):
    load_sample_data(pg, big_rows=1000)
    configure_pg(local_agent, pg)
    ids = three_backups(local_agent, pg)

    p = local_agent("verify", check=True)
    assert f"postgres {ids[-1]} ok" in p.stdout and ids[0] not in p.stdout
    p = local_agent("verify", "postgres", "--all", check=True)
    for i in ids:
        assert f"postgres {i} ok" in p.stdout
    v = last_verify(local_agent)
    assert v["result"] == "ok" and v["checked"] == 3 and v["damaged"] == 0
    assert [b["id"] for b in v["backups"]] == ids[::-1] and all(b["ok"] for b in v["backups"])
    p = local_agent("verify", "postgres", ids[0], check=True)
    assert f"postgres {ids[0]} ok" in p.stdout
    st = [s for s in json.loads(local_agent("status", "--json", check=True).stdout) if s["job"] == "postgres"][0]
    assert st["last_verify"]["result"] == "ok" and st["last_verify"]["backups"][0]["id"] == ids[0]


def test_verify_reports_flipped_truncated_missing_per_backup(local_agent, pg):
    load_sample_data(pg, big_rows=1000)
    configure_pg(local_agent, pg)
    ids = three_backups(local_agent, pg)
    flipped, truncated, missing = (dump_path(local_agent, i) for i in ids)
    data = bytearray(flipped.read_bytes())
    data[len(data) // 3] ^= 0x40
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-10])
    missing.unlink()

    # The default is the newest backup only: the missing one.
    p = local_agent("verify")
    assert p.returncode == 65, p.stderr
    assert f"postgres {ids[2]} DAMAGED" in p.stdout and f"{missing.name} is missing" in p.stdout
    assert ids[0] not in p.stdout

    p = local_agent("verify", "--all")
    assert p.returncode == 65, p.stderr
    assert f"postgres {ids[0]} DAMAGED" in p.stdout and "(corrupt)" in p.stdout
    assert f"postgres {ids[1]} DAMAGED" in p.stdout and "(truncated or replaced)" in p.stdout
    assert f"postgres {ids[2]} DAMAGED" in p.stdout
    assert "3 of 3 backup(s) of postgres damaged" in p.stderr
    v = last_verify(local_agent)
    assert v["result"] == "damaged" and v["damaged"] == 3
    by_id = {b["id"]: b for b in v["backups"]}
    assert "SHA-256" in by_id[ids[0]]["problems"][0]
    assert "truncated" in by_id[ids[1]]["problems"][0]
    assert "missing" in by_id[ids[2]]["problems"][0]

    # One good backup among damaged ones still fails the whole run, and names only the damaged.
    local_agent("run", "postgres", check=True)
    p = local_agent("verify", "--all")
    assert p.returncode == 65 and "3 of 4 backup(s)" in p.stderr


def test_verify_unknown_id_and_usage(local_agent, pg):
    configure_pg(local_agent, pg)
    p = local_agent("verify", "postgres", "20200101T000000Z")
    assert p.returncode == 66 and "skyforge-agent list" in p.stderr
    assert local_agent("verify", "mirror").returncode == 64
    assert local_agent("verify", "postgres", "latest", "--all").returncode == 64


def source_counts(cluster):
    """{db: (tables, rows)} counted on the source, the same way the restore test counts."""
    out = {}
    for db in cluster.databases():
        tables = cluster.psql("SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
                              "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND "
                              "n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'", db=db).split()
        rows = sum(int(cluster.psql(f"SELECT count(*) FROM {t}", db=db)) for t in tables)
        out[db] = (len(tables), rows)
    return out


def test_restore_test_records_table_and_row_counts(local_agent, pg, work):
    load_sample_data(pg, big_rows=3000)
    pg.psql("CREATE SCHEMA extra; CREATE TABLE extra.t (x int); INSERT INTO extra.t SELECT generate_series(1, 7);",
            db="gitea")
    configure_pg(local_agent, pg, work)
    backup_id = local_agent("run", "postgres", check=True).stdout.strip()

    p = local_agent("verify", "--restore-test", check=True)
    assert f"postgres {backup_id} restore test ok" in p.stdout
    rt = last_verify(local_agent)["restore_test"]
    assert rt["result"] == "ok" and rt["backup_id"] == backup_id and rt["missing_databases"] == []
    got = {d["name"]: (d["tables"], d["rows"]) for d in rt["databases"]}
    expected = source_counts(pg)
    assert got == expected
    assert got["nautobot"] == (1, 3000) and got["gitea"] == (2, 1007) and got["netbox_ü_日本"] == (1, 5000)
    # The throwaway cluster is gone: no directory, no server.
    assert [f for f in os.listdir(work) if f.startswith("restore-test-")] == []
    assert postgres_processes_under(work) == []


def test_restore_test_missing_database_fails_65(local_agent, pg, work):
    load_sample_data(pg, big_rows=100)
    configure_pg(local_agent, pg, work)
    backup_id = local_agent("run", "postgres", check=True).stdout.strip()
    mpath = local_agent.store / "postgres" / f"{backup_id}.json"
    m = json.loads(mpath.read_text())
    m["details"]["databases"].append("lost_db")
    mpath.write_text(json.dumps(m))
    p = local_agent("verify", "--restore-test")
    assert p.returncode == 65, p.stderr
    assert '"lost_db"' in p.stderr and "missing after the restore" in p.stderr
    rt = last_verify(local_agent)["restore_test"]
    assert rt["result"] == "failed" and rt["missing_databases"] == ["lost_db"]


def _replace_dump(agent, backup_id, sql):
    """Swaps the dump of a backup for other SQL with a matching manifest entry (checksums pass)."""
    import hashlib
    path = dump_path(agent, backup_id)
    data = subprocess.run(["zstd", "-q", "-c"], input=sql.encode(), capture_output=True, check=True).stdout
    path.write_bytes(data)
    mpath = agent.store / "postgres" / f"{backup_id}.json"
    m = json.loads(mpath.read_text())
    m["objects"][0]["bytes"] = len(data)
    m["objects"][0]["sha256"] = hashlib.sha256(data).hexdigest()
    mpath.write_text(json.dumps(m))


def test_restore_test_cleans_up_after_a_bad_dump(local_agent, pg, work):
    configure_pg(local_agent, pg, work)
    backup_id = local_agent("run", "postgres", check=True).stdout.strip()
    _replace_dump(local_agent, backup_id, "CREATE TABLE ok (x int);\nTHIS IS NOT SQL;\n")
    p = local_agent("verify", "--restore-test")
    assert p.returncode != 0 and p.returncode != 65, p.stderr
    assert "psql reported 1 error(s)" in p.stderr and "syntax error" in p.stderr
    rt = last_verify(local_agent)["restore_test"]
    assert rt["result"] == "failed" and "psql reported" in rt["error"]
    assert [f for f in os.listdir(work) if f.startswith("restore-test-")] == []
    assert postgres_processes_under(work) == []


def test_restore_test_cleans_up_on_sigterm(local_agent, pg, work):
    configure_pg(local_agent, pg, work)
    backup_id = local_agent("run", "postgres", check=True).stdout.strip()
    # A dump that keeps the restore busy long enough to be interrupted.
    _replace_dump(local_agent, backup_id, "SELECT pg_sleep(120);\n")
    agent = subprocess.Popen([AGENT, "-c", str(local_agent.config_path), "verify", "--restore-test"],
                             env=local_agent.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any("psql" in open(f"/proc/{p}/comm").read() for p in postgres_processes_under(work)
               if os.path.exists(f"/proc/{p}/comm")):
            break
        time.sleep(0.2)
    else:
        agent.kill()
        raise AssertionError("the restore never started: " + agent.communicate()[1])
    assert postgres_processes_under(work)
    agent.send_signal(signal.SIGTERM)
    out, err = agent.communicate(timeout=60)
    assert agent.returncode == 75, err
    assert [f for f in os.listdir(work) if f.startswith("restore-test-")] == []
    # The throwaway server's processes end with the agent's pg_ctl stop; give a loaded machine time.
    deadline = time.monotonic() + 30
    while postgres_processes_under(work) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert postgres_processes_under(work) == []


def test_restore_test_removes_leftovers_of_a_killed_run(local_agent, pg, work):
    configure_pg(local_agent, pg, work)
    local_agent("run", "postgres", check=True)
    stale = pathlib.Path(work) / "restore-test-dead01"
    (stale / "data").mkdir(parents=True)
    (stale / "data" / "PG_VERSION").write_text("15\n")
    local_agent("verify", "--restore-test", check=True)
    assert not stale.exists()


def test_dbus_last_verify_shows_the_restore_test(local_agent, pg, work, system_bus, tmp_path):
    from test_daemon import Daemon, get_property

    load_sample_data(pg, big_rows=500)
    configure_pg(local_agent, pg, work)
    backup_id = local_agent("run", "postgres", check=True).stdout.strip()
    os.makedirs(local_agent.state_dir, exist_ok=True)
    d = Daemon(system_bus, str(local_agent.state_dir), str(tmp_path))
    try:
        assert get_property(system_bus, "postgres", "LastVerify") == ""
        local_agent("verify", "--restore-test", check=True)
        deadline = time.monotonic() + 10
        while get_property(system_bus, "postgres", "LastVerify") == "" and time.monotonic() < deadline:
            time.sleep(0.1)
        v = json.loads(get_property(system_bus, "postgres", "LastVerify"))
        assert v["result"] == "ok" and v["backups"][0]["id"] == backup_id
        dbs = {x["name"]: x["rows"] for x in v["restore_test"]["databases"]}
        assert dbs["nautobot"] == 500 and dbs["gitea"] == 1000
        # A backup run afterwards keeps the verify result.
        local_agent("run", "postgres", check=True)
        assert json.loads(get_property(system_bus, "postgres", "LastVerify"))["result"] == "ok"
    finally:
        d.kill()


class InitdbGate:
    """pg_bindir with the real server binaries, except an initdb that tells the test it was started (a
    line on the fifo "entered") and then waits for the test to open the fifo "release": a restore test
    held at a known point, with its locks taken, for as long as the test needs."""

    def __init__(self):
        from fixtures.postgres import _bindir
        real = _bindir()
        self.dir = tempfile.mkdtemp(prefix="skyforge-gate-")
        os.chmod(self.dir, 0o755)
        self.bindir = os.path.join(self.dir, "bin")
        os.mkdir(self.bindir)
        for name in os.listdir(real):
            if name != "initdb":
                os.symlink(os.path.join(real, name), os.path.join(self.bindir, name))
        self.entered = os.path.join(self.dir, "entered")
        self.release_fifo = os.path.join(self.dir, "release")
        for f in (self.entered, self.release_fifo):
            os.mkfifo(f)
            os.chmod(f, 0o666)
        wrapper = os.path.join(self.bindir, "initdb")
        with open(wrapper, "w") as f:
            f.write(f"""#!/bin/sh
[ "$1" = "--version" ] && exec {real}/initdb "$@"
echo entered > {self.entered}
read x < {self.release_fifo}
exec {real}/initdb "$@"
""")
        os.chmod(wrapper, 0o755)

    def wait_entered(self, proc, timeout=120):
        fd = os.open(self.entered, os.O_RDONLY | os.O_NONBLOCK)
        try:
            import select
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 1)
                if ready and os.read(fd, 64):
                    return
                assert proc.poll() is None, "verify ended before the restore test started: " + \
                    proc.communicate()[1]
            raise AssertionError("the restore test never reached initdb")
        finally:
            os.close(fd)

    def release(self, proc):
        """Lets the held initdb go on (as soon as it opens the fifo; nothing to do when proc is gone)."""
        while proc.poll() is None:
            try:
                fd = os.open(self.release_fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: initdb has not opened its end yet
                time.sleep(0.05)
                continue
            os.write(fd, b"go\n")
            os.close(fd)
            return

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def test_backup_runs_and_prune_waits_during_a_restore_test(local_agent, pg, work):
    """A verify --restore-test holds only the job's read lock: a backup of the same job due at the same
    time runs (its retention is deferred instead of deleting what the verify reads), and `prune` waits
    for the verify, then deletes."""
    gate = InitdbGate()
    try:
        configure_pg(local_agent, pg, work, pg_bindir=gate.bindir, retention_days=0, keep_min=1)
        first = local_agent("run", "postgres", check=True).stdout.strip()
        verify = subprocess.Popen([AGENT, "-c", str(local_agent.config_path), "verify", "--restore-test"],
                                  env=local_agent.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        prune = None
        try:
            gate.wait_entered(verify)
            # The restore test of `first` is under way: the nightly backup must not be refused.
            p = local_agent("run", "postgres", timeout=120)
            assert p.returncode == 0, p.stderr
            second = p.stdout.strip()
            assert second != first
            assert "Retention of postgres deferred" in p.stderr
            assert first in [b["id"] for b in backups(local_agent)]
            state = json.loads((local_agent.state_dir / "postgres.json").read_text())
            assert state["last_result"] == "success" and state["last_backup_id"] == second

            # prune would delete `first`, which the verify is reading: it waits, and says so.
            prune = subprocess.Popen([AGENT, "-c", str(local_agent.config_path), "prune", "postgres"],
                                     env=local_agent.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
            line = prune.stderr.readline()
            assert "are being read" in line and "waiting up to" in line, line
            assert prune.poll() is None
            assert first in [b["id"] for b in backups(local_agent)]
        finally:
            gate.release(verify)
        out, err = verify.communicate(timeout=300)
        assert verify.returncode == 0, err
        assert f"postgres {first} restore test ok" in out
        out, err = prune.communicate(timeout=120)
        assert prune.returncode == 0, err
        assert f"deleted postgres {first}" in out
        assert [b["id"] for b in backups(local_agent)] == [second]
        # Neither run erased the other's record in the state.
        state = json.loads((local_agent.state_dir / "postgres.json").read_text())
        assert state["last_backup_id"] == second
        assert last_verify(local_agent)["restore_test"]["backup_id"] == first
    finally:
        gate.close()
