"""Base backups in `list` and `prune`, and `recover`'s physical path (issue 18 items 2-3), against real
PostgreSQL 15 servers: the newest complete base backup + the stored WAL go into [postgres] data_directory,
replayed by a local server that is stopped again, and `pg_ctl start` on that directory shows every row
the stream stored; --plan says which path and why, --postgres-from forces one."""
import json
import os
import pwd
import signal
import subprocess

from fixtures.postgres import as_postgres, free_port
from test_pitr import pitr, wait_for  # noqa: F401 (fixture)


def test_base_backups_are_listed_and_pruned_with_their_wal(pitr):
    p = pitr()
    p.configure(1, retention_days=0, keep_min=5)
    p.start_stream()
    p.insert_rows(1, 10)
    dump = p.agent("run", "postgres").stdout.strip()
    first = p.agent("run", "basebackup").stdout.strip()
    p.insert_rows(11, 20)
    p.switch_and_wait()
    second = p.agent("run", "basebackup").stdout.strip()
    p.insert_rows(21, 30)
    p.switch_and_wait()

    listed = json.loads(p.agent("list", "--json").stdout)
    assert [(b["job"], b["id"]) for b in listed] == [("basebackup", second), ("basebackup", first),
                                                      ("postgres", dump)]
    assert listed[0]["details"]["start_wal_file"].startswith("00000001")
    assert [b["id"] for b in json.loads(p.agent("list", "basebackup", "--json").stdout)] == [second, first]
    assert [b["id"] for b in json.loads(p.agent("list", "postgres", "--json").stdout)] == [dump]
    text = p.agent("list").stdout
    assert any(line.startswith("basebackup") and second in line for line in text.splitlines()), text

    # keep_min 1 now: the older base backup goes, and with it the WAL only it needed; the dump stays.
    p.configure(1, retention_days=0, keep_min=1)
    start = listed[0]["details"]["start_wal_file"]
    dry = json.loads(p.agent("prune", "--dry-run", "--json").stdout)
    (bb,) = [r for r in dry if r["job"] == "basebackup"]
    assert [(b["id"], b["action"]) for b in bb["backups"]] == [(second, "keep"), (first, "would-delete")]
    assert bb["more"] and all(line.startswith("would delete ") for line in bb["more"]), bb
    (pg,) = [r for r in dry if r["job"] == "postgres"]
    assert [(b["id"], b["action"]) for b in pg["backups"]] == [(dump, "keep")]
    before = p.stored()
    assert any(n[:24] < start for n in before)

    out = p.agent("prune").stdout
    assert f"deleted basebackup {first}" in out and f"keep   basebackup {second}" in out, out
    assert not os.path.exists(os.path.join(p.store, f"{first}.json"))
    assert os.path.exists(os.path.join(p.store, f"{second}.json"))
    assert os.path.exists(os.path.join(p.store, f"{dump}.json"))
    assert all(n[:24] >= start for n in p.stored() if n.endswith(".zst")), (start, p.stored())
    assert p.agent("prune", "nonsense", check=False).returncode == 64


def test_recover_restores_the_newest_base_backup_and_wal_into_data_directory(pitr, kube_api):
    p = pitr()
    # The database's workload, scaled to 0 through its Scale for the copy and back afterwards.
    kube_api.storage.add_deployment("db", "postgres", replicas=1)
    scaled_while = []
    kube_api.storage.on_scale = lambda kind, ns, name, n: scaled_while.append(
        (kind, ns, name, n, os.path.exists(os.path.join(data, "PG_VERSION"))))
    workload = {"workload": "db/deployment/postgres"}
    agent = {"kubeconfig": kube_api.kubeconfig()}
    data = os.path.join(p.root, "pgdata")
    # As on a rebuilt node: the pod has made a fresh, empty cluster on the new volume. It is moved aside.
    os.mkdir(data, 0o700)
    os.chown(data, *(lambda pw: (pw.pw_uid, pw.pw_gid))(__import__("pwd").getpwnam("postgres")))
    as_postgres([os.path.join(p.pg.bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres"])
    p.start_stream()
    p.insert_rows(1, 20)
    dump = p.agent("run", "postgres").stdout.strip()
    base = p.agent("run", "basebackup").stdout.strip()
    p.insert_rows(21, 60)
    p.switch_and_wait()

    # Without data_directory the physical path is not there: the plan says why, forcing it fails.
    plan = p.agent("recover", "--plan", "--step", "postgres").stdout
    assert "postgres   logical (physical: [postgres] data_directory is not set" in plan, plan
    forced = p.agent("recover", "--plan", "--step", "postgres", "--postgres-from", "physical", check=False)
    assert forced.returncode == 66 and "data_directory is not set" in forced.stdout + forced.stderr

    p.configure(1, agent=agent, data_directory=data, **workload)
    plan = p.agent("recover", "--plan", "--step", "postgres").stdout
    assert "postgres   physical (physical is newer: the stored WAL reaches" in plan, plan
    assert f"restore base backup {base}" in plan and data in plan and f"dump {dump}" in plan
    forced = p.agent("recover", "--plan", "--step", "postgres", "--postgres-from", "logical").stdout
    assert "postgres   logical (--postgres-from logical)" in forced and f"restore backup {dump}" in forced
    assert p.agent("recover", "--postgres-from", "sideways", check=False).returncode == 64

    r = p.agent("recover", "--step", "postgres", timeout=600, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "postgres   done" in r.stdout and f"restored base backup {base}" in r.stdout, r.stdout
    # Down to 0 before the old cluster went aside, back to 1 with the recovered one in place.
    assert scaled_while == [("deployments", "db", "postgres", 0, True), ("deployments", "db", "postgres", 1, True)]
    assert kube_api.storage.workloads[("deployments", "db", "postgres")]["spec"]["replicas"] == 1
    aside = [n for n in os.listdir(p.root) if n.startswith("pgdata.skyforge-before-recover-")]
    assert len(aside) == 1 and os.path.exists(os.path.join(p.root, aside[0], "PG_VERSION"))
    # Recovered, stopped, and its own again: no recovery settings of ours left behind.
    with open(os.path.join(data, "postgresql.auto.conf")) as f:
        auto = f.read()
    assert "restore_command" not in auto and "skyforge" not in auto, auto
    # Still the server's: a postgresql.auto.conf it cannot read, it skips (with its ALTER SYSTEM settings).
    assert os.stat(os.path.join(data, "postgresql.auto.conf")).st_uid == pwd.getpwnam("postgres").pw_uid
    # The WAL spool is gone.
    assert not os.path.exists(os.path.join(data, "skyforge-wal"))
    assert not os.path.exists(os.path.join(data, "recovery.signal"))
    assert not os.path.exists(os.path.join(data, "postmaster.pid"))

    port = free_port()
    log = os.path.join(p.sockets, "recovered.log")
    started = subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(p.pg.bindir, "pg_ctl"), "-D", data,
                              "-l", log, "-w", "-o", f"-p {port} -k {p.sockets} -c listen_addresses=127.0.0.1",
                              "start"], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr + (open(log).read() if os.path.exists(log) else "")
    p.restored.append(data)
    assert p.rows_of(port) == list(range(1, 61))

    # Safe to rerun: the same base backup is in place.
    r = p.agent("recover", "--step", "postgres")
    assert "postgres   skipped" in r.stdout and "recovered already" in r.stdout, r.stdout
    assert len(scaled_while) == 2

    # A dump newer than the stored WAL wins the automatic choice.
    p.streams[0].send_signal(signal.SIGTERM)
    assert p.streams[0].wait(timeout=60) == 0
    newer = p.agent("run", "postgres").stdout.strip()
    plan = p.agent("recover", "--plan", "--step", "postgres").stdout
    assert "postgres   logical (the dump is newer" in plan and f"restore backup {newer}" in plan, plan


def test_recover_physical_path_reads_base_backup_and_wal_offsite_when_minio_is_empty(pitr, s3_server,
                                                                                       s3_offsite):
    """A rebuilt node: MinIO (moto) is empty, the offsite copy (a second moto, filled by the mirror job)
    holds the base backup and the WAL. The physical path reads both from there."""
    import uuid
    from pathlib import Path
    from fixtures.agent import write_config
    # Listings with a prefix ("postgres/") trip moto 5.2.1's signature check (shared/TESTING.md).
    s3_server.set_auth(False)
    s3_offsite.set_auth(False)
    try:
        p = pitr()
        bucket, offsite = f"node-{uuid.uuid4().hex[:8]}", f"off-{uuid.uuid4().hex[:8]}"
        s3_server.client().create_bucket(Bucket=bucket)
        s3_offsite.client().create_bucket(Bucket=offsite)
        secrets = {}
        for side, srv in (("minio", s3_server), ("offsite", s3_offsite)):
            secrets[side] = os.path.join(p.root, f"{side}.secret")
            fd = os.open(secrets[side], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(srv.secret_key + "\n")
        data = os.path.join(p.root, "pgdata")
        os.mkdir(data, 0o700)
        os.chown(data, *(lambda pw: (pw.pw_uid, pw.pw_gid))(__import__("pwd").getpwnam("postgres")))

        def remote(srv, side):
            return {"endpoint": srv.endpoint, "region": "us-east-1", "access_key_id": srv.access_key,
                    "secret_access_key_file": secrets[side], "path_style": "yes"}

        write_config(Path(p.conf), {
            "agent": {"state_dir": os.path.join(p.root, "state")},
            "remote.minio": remote(s3_server, "minio"),
            "remote.offsite": remote(s3_offsite, "offsite"),
            "mirror": {"source": "minio", "buckets": bucket, "destination": f"offsite:{offsite}/off/"},
            "postgres": {"conninfo": p.pg.conninfo, "destination": f"minio:{bucket}/postgres/",
                         "wal_flush_seconds": 1, "data_directory": data},
        })
        os.chmod(p.conf, 0o600)
        client = s3_server.client()

        def in_minio(key):
            try:
                client.head_object(Bucket=bucket, Key=key)
                return True
            except Exception:
                return False

        s = p.start_stream()
        p.insert_rows(1, 20)
        base = p.agent("run", "basebackup").stdout.strip()
        p.insert_rows(21, 60)
        f = p.current_file()
        p.pg.psql("SELECT pg_switch_wal()")
        wait_for(lambda: in_minio(f"postgres/wal/00000001/{f}.zst"), f"segment {f} in MinIO")
        s.send_signal(signal.SIGTERM)
        assert s.wait(timeout=60) == 0, p.stream_log(s)
        p.agent("run", "mirror")

        # The node's MinIO is empty (a rebuilt node before `restore mirror`).
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=o["Key"])
        where = f"offsite:{offsite}/off/{bucket}/postgres/"
        plan = p.agent("recover", "--plan", "--step", "postgres").stdout
        assert "postgres   physical (there is no dump)" in plan, plan
        assert f"restore base backup {base}" in plan and f"from {where} (offsite)" in plan, plan

        r = p.agent("recover", "--step", "postgres", "--postgres-from", "physical", timeout=600, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "postgres   done" in r.stdout and f"from {where} (offsite)" in r.stdout, r.stdout
        assert "looking offsite" in r.stderr, r.stderr
        # Nothing came back into MinIO: both were read offsite.
        assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0

        port = free_port()
        log = os.path.join(p.sockets, "offsite.log")
        started = subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(p.pg.bindir, "pg_ctl"), "-D",
                                  data, "-l", log, "-w", "-o",
                                  f"-p {port} -k {p.sockets} -c listen_addresses=127.0.0.1", "start"],
                                 capture_output=True, text=True)
        assert started.returncode == 0, started.stderr + (open(log).read() if os.path.exists(log) else "")
        p.restored.append(data)
        assert p.rows_of(port) == list(range(1, 61))
    finally:
        s3_server.set_auth(True)
        s3_offsite.set_auth(True)
