"""The postgres job end to end on the local store, against real PostgreSQL clusters."""
import json
import os
import signal
import subprocess
import time

import pytest

from fixtures.agent import AGENT
from fixtures.postgres import load_sample_data


def children_of(pid):
    """PIDs whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(d))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def store_files(agent):
    """Every file under the local store, hidden ones included."""
    found = []
    for root, _, files in os.walk(agent.store):
        for f in files:
            found.append(os.path.relpath(os.path.join(root, f), agent.store))
    return sorted(found)


def configure_pg(agent, cluster, **extra):
    keys = {"conninfo": cluster.conninfo, "destination": agent.store / "postgres"}
    keys.update(extra)
    return agent.configure(postgres=keys)


def test_backup_restore_roundtrip_equal_dumpall(local_agent, pg_factory):
    src = pg_factory()
    load_sample_data(src)
    configure_pg(local_agent, src)

    p = local_agent("run", "postgres", check=True)
    backup_id = p.stdout.strip()
    assert len(backup_id) == 16 and backup_id.endswith("Z"), p.stdout

    listing = json.loads(local_agent("list", "--json", check=True).stdout)
    assert [b["id"] for b in listing] == [backup_id]
    b = listing[0]
    assert b["job"] == "postgres" and b["encrypted"] is False
    assert b["bytes"] == sum(o["bytes"] for o in b["objects"]) > 0
    assert {"started", "finished", "objects"} <= set(b)
    obj = b["objects"][0]
    stored = local_agent.store / "postgres" / obj["name"]
    assert stored.stat().st_size == obj["bytes"]
    assert len(obj["sha256"]) == 64

    dst = pg_factory()
    local_agent("restore", "postgres", "latest", "--to", dst.conninfo, check=True)
    assert dst.dumpall() == src.dumpall()
    assert "netbox_ü_日本" in dst.databases()
    # The large object came back byte for byte.
    assert dst.psql("SELECT length(lo_get(oid)) FROM pg_largeobject_metadata", db="gitea").strip() == "105000"

    status = json.loads(local_agent("status", "--json", check=True).stdout)
    pgs = [s for s in status if s["job"] == "postgres"][0]
    assert pgs["last_result"] == "success" and pgs["last_backup_id"] == backup_id and pgs["state"] == "idle"


def test_server_down_exits_69_and_prunes_nothing(local_agent, pg_factory):
    src = pg_factory()
    configure_pg(local_agent, src, retention_days=0, keep_min=1)
    first = local_agent("run", "postgres", check=True).stdout.strip()
    time.sleep(1.1)
    second = local_agent("run", "postgres", check=True).stdout.strip()
    assert first != second
    # retention_days = 0 and keep_min = 1: the first one went when the second succeeded.
    assert [b["id"] for b in json.loads(local_agent("list", "--json").stdout)] == [second]
    before = store_files(local_agent)

    src.stop()
    p = local_agent("run", "postgres")
    assert p.returncode == 69, p.stderr
    assert "cannot reach PostgreSQL at host=127.0.0.1 port=%d" % src.port in p.stderr
    assert "is the db pod running?" in p.stderr
    assert p.stdout == ""
    assert store_files(local_agent) == before
    st = [s for s in json.loads(local_agent("status", "--json").stdout) if s["job"] == "postgres"][0]
    assert st["last_result"] == "failed" and "cannot reach PostgreSQL" in st["last_error"]
    assert st["last_backup_id"] == second


def test_wrong_password_is_refused_with_exit_77(local_agent, pg_factory, tmp_path):
    src = pg_factory(auth="scram-sha-256", password="right-password")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{src.port}:*:postgres:wrong-password\n")
    os.chmod(passfile, 0o600)
    configure_pg(local_agent, src, conninfo=f"{src.conninfo} passfile={passfile}")
    p = local_agent("run", "postgres")
    assert p.returncode == 77, p.stderr
    assert "refused the login" in p.stderr and "password authentication failed" in p.stderr

    passfile.write_text(f"127.0.0.1:{src.port}:*:postgres:right-password\n")
    assert local_agent("run", "postgres").returncode == 0


def _start_blocked_dump(local_agent, src):
    """Starts `run postgres` while another session holds an exclusive lock on a table, so pg_dumpall stops
    mid-dump. Returns (agent Popen, the locking psql Popen)."""
    locker = subprocess.Popen(
        [os.path.join(src.bindir, "psql"), "-X", "-q", "-d", f"{src.conninfo} dbname=nautobot"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    locker.stdin.write("BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);\n")
    locker.stdin.flush()
    for _ in range(100):
        if src.psql("SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' "
                    "AND relation = 'big'::regclass", db="nautobot").strip() != "0":
            break
        time.sleep(0.1)
    env = dict(local_agent.env)
    agent = subprocess.Popen([AGENT, "-c", str(local_agent.config_path), "run", "postgres"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until pg_dumpall is blocked on the lock: a waiting lock request on "big".
    for _ in range(200):
        if src.psql("SELECT count(*) FROM pg_locks WHERE NOT granted", db="nautobot").strip() != "0":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("pg_dumpall never blocked on the lock")
    return agent, locker


def _release(src, locker):
    """Ends the locking session on the server side too: killing psql alone leaves its backend asleep with
    the lock held (the server does not notice a vanished client while it sleeps)."""
    src.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             "WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()")
    locker.kill()
    locker.wait()


def test_killed_dump_leaves_no_manifest_and_next_run_cleans_up(local_agent, pg_factory):
    src = pg_factory()
    load_sample_data(src, big_rows=1000)
    configure_pg(local_agent, src)

    # 1. pg_dumpall killed under the agent: the agent reports it and leaves nothing behind.
    agent, locker = _start_blocked_dump(local_agent, src)
    dumpers = [c for c in children_of(agent.pid) if comm(c) == "pg_dumpall"]
    assert dumpers, "pg_dumpall not found under the agent"
    os.kill(dumpers[0], signal.SIGKILL)
    out, err = agent.communicate(timeout=60)
    _release(src, locker)
    assert agent.returncode != 0
    assert "pg_dumpall was killed by signal 9" in err and "no backup was written" in err
    assert out == ""
    assert json.loads(local_agent("list", "--json").stdout) == []
    assert store_files(local_agent) == []

    # 2. The agent itself killed mid-dump: a partial temporary file stays, but no manifest.
    agent, locker = _start_blocked_dump(local_agent, src)
    orphans = children_of(agent.pid)
    agent.kill()
    agent.wait()
    for pid in orphans:  # what systemd would do to the unit's cgroup
        os.killpg(pid, signal.SIGKILL)
    _release(src, locker)
    leftovers = store_files(local_agent)
    assert leftovers and not any(f.endswith(".json") for f in leftovers), leftovers
    assert json.loads(local_agent("list", "--json").stdout) == []

    # 3. The next run succeeds and removes the leftovers.
    new_id = local_agent("run", "postgres", check=True).stdout.strip()
    files = store_files(local_agent)
    assert files == [f"postgres/{new_id}.json", f"postgres/{new_id}.sql.zst"], files


def _only_object(local_agent):
    b = json.loads(local_agent("list", "--json", check=True).stdout)[0]
    return local_agent.store / "postgres" / b["objects"][0]["name"]


def test_restore_refuses_corrupt_dump(local_agent, pg_factory):
    src = pg_factory()
    load_sample_data(src, big_rows=1000)
    configure_pg(local_agent, src)
    backup_id = local_agent("run", "postgres", check=True).stdout.strip()
    path = _only_object(local_agent)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    dst = pg_factory()
    before = dst.databases()
    p = local_agent("restore", "postgres", backup_id, "--to", dst.conninfo)
    assert p.returncode == 65, p.stderr
    assert f"backup {backup_id} is damaged: SHA-256 of" in p.stderr
    assert dst.databases() == before  # nothing reached the server


def test_restore_refuses_truncated_dump(local_agent, pg_factory):
    src = pg_factory()
    load_sample_data(src, big_rows=1000)
    configure_pg(local_agent, src)
    local_agent("run", "postgres", check=True)
    path = _only_object(local_agent)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])

    dst = pg_factory()
    p = local_agent("restore", "postgres", "latest", "--to", dst.conninfo)
    assert p.returncode == 65, p.stderr
    assert "truncated or replaced" in p.stderr
    assert dst.databases() == ["postgres", "template1"]


def test_restore_unknown_id_names_the_fix(local_agent, pg_factory):
    src = pg_factory()
    configure_pg(local_agent, src)
    p = local_agent("restore", "postgres", "20200101T000000Z", "--to", src.conninfo)
    assert p.returncode == 66 and "skyforge-agent list" in p.stderr
    p = local_agent("restore", "postgres", "latest")
    assert p.returncode == 64 and "--to CONNINFO is required" in p.stderr


def _fake_old_backup(agent, template_id, new_id, started_usec):
    """Copies a real backup under an older id (data object and manifest), as if taken back then."""
    d = agent.store / "postgres"
    m = json.loads((d / f"{template_id}.json").read_text())
    obj = m["objects"][0]
    new_name = obj["name"].replace(template_id, new_id)
    (d / new_name).write_bytes((d / obj["name"]).read_bytes())
    obj["name"] = new_name
    m["id"] = new_id
    m["started_usec"] = started_usec
    m["finished_usec"] = started_usec + 1000000
    (d / f"{new_id}.json").write_text(json.dumps(m))


def test_retention_after_success_keeps_keep_min(local_agent, pg_factory):
    src = pg_factory()
    configure_pg(local_agent, src, retention_days=30, keep_min=3)
    real = local_agent("run", "postgres", check=True).stdout.strip()
    day = 86400 * 1000000
    now = int(time.time() * 1000000)
    old = []
    for i, age_days in enumerate([40, 50, 60, 70]):
        t = now - age_days * day
        bid = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t // 1000000))
        _fake_old_backup(local_agent, real, bid, t)
        old.append(bid)

    dry = local_agent("prune", "--dry-run", check=True)
    # Newest 3 kept: the real one plus the two youngest old ones; 60 and 70 days old would go.
    assert f"would delete postgres {old[2]}" in dry.stdout and f"would delete postgres {old[3]}" in dry.stdout
    assert "older than retention_days = 30" in dry.stdout
    assert f"keep   postgres {old[0]}" in dry.stdout and "keep_min" in dry.stdout
    assert len(json.loads(local_agent("list", "--json").stdout)) == 5  # dry run deleted nothing

    newest = (time.sleep(1.1), local_agent("run", "postgres", check=True).stdout.strip())[1]
    ids = [b["id"] for b in json.loads(local_agent("list", "--json").stdout)]
    # After the new success: newest 3 are newest, real, old[0]; old[1..3] are older than 30 days.
    assert ids == [newest, real, old[0]]
    remaining = set(os.listdir(local_agent.store / "postgres"))
    for bid in old[1:]:
        assert not any(f.startswith(bid) for f in remaining)


def test_all_backups_older_than_retention_keep_keep_min(local_agent, pg_factory):
    src = pg_factory()
    configure_pg(local_agent, src, retention_days=1, keep_min=2)
    real = local_agent("run", "postgres", check=True).stdout.strip()
    d = local_agent.store / "postgres"
    m = json.loads((d / f"{real}.json").read_text())
    m["started_usec"] -= 10 * 86400 * 1000000
    (d / f"{real}.json").write_text(json.dumps(m))
    dry = local_agent("prune", "--dry-run", check=True)
    assert "would delete" not in dry.stdout
    assert "0 backup(s) would be deleted" in dry.stderr


def test_cli_help_version_and_usage(local_agent):
    p = local_agent("--help")
    assert p.returncode == 0 and "\n  run " in p.stdout and "\n  restore " in p.stdout
    p = local_agent("run", "--help")
    assert p.returncode == 0 and "Usage: skyforge-agent [-c FILE] run JOB...|all" in p.stdout
    p = local_agent("--version")
    assert p.returncode == 0 and p.stdout.startswith("skyforge-agent ")
    p = local_agent("frobnicate")
    assert p.returncode == 64 and "unknown command" in p.stderr


def test_second_run_while_running_is_refused(local_agent, pg_factory):
    src = pg_factory()
    load_sample_data(src, big_rows=1000)
    configure_pg(local_agent, src)
    agent, locker = _start_blocked_dump(local_agent, src)
    try:
        p = local_agent("run", "postgres")
        assert p.returncode == 75 and "already running" in p.stderr
        st = [s for s in json.loads(local_agent("status", "--json").stdout) if s["job"] == "postgres"][0]
        assert st["state"] == "running"
    finally:
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=60)
        _release(src, locker)
    assert agent.returncode == 75 and "cancelled" in err
    assert json.loads(local_agent("list", "--json").stdout) == []
