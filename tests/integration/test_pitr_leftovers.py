"""Restore to a moment, the corners left after issue 18: a named base backup that only the offsite copy holds,
and the recovery settings a `restore --start` copy kept naming a spool that is gone. Real PostgreSQL 15 and two
moto servers (MinIO and the offsite bucket); waits are on events."""
import os
import re
import subprocess
import uuid
from pathlib import Path

from fixtures.agent import write_config
from test_pitr import pitr, wait_for  # noqa: F401 (fixture)
from test_pitr_spool import psql_at


def test_restore_start_removes_the_recovery_settings_once_promoted_and_keeps_the_set_lines(pitr):
    p = pitr()
    lsn = p.history_with_an_lsn()

    d, port = p.restore_and_start("--lsn", lsn)
    with open(os.path.join(d, "postgresql.auto.conf")) as f:
        auto = f.read()
    # The spool is gone and recovery is over: nothing may name them any more (a restart, or a later
    # standby.signal, would run a restore_command that can only fail).
    assert not os.path.exists(os.path.join(d, "skyforge-wal"))
    for gone in ("restore_command", "recovery_target", "recovery_end_command", "skyforge-wal"):
        assert gone not in auto, auto
    # The server settings given with --set stay: the copy comes back on its port after a restart.
    assert re.search(rf"^port = '{port}'$", auto, re.M), auto
    assert os.stat(os.path.join(d, "postgresql.auto.conf")).st_uid == os.stat(d).st_uid
    log = os.path.join(p.sockets, "restart.log")
    r = subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(p.pg.bindir, "pg_ctl"), "-D", d, "-l", log,
                        "-w", "-m", "fast", "restart"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + (open(log).read() if os.path.exists(log) else "")
    wait_for(lambda: psql_at(p, port, "SELECT pg_is_in_recovery()") == "f", "the copy to be back")
    assert p.rows_of(port) == list(range(1, 41))


def test_restore_of_a_base_backup_only_offsite_when_the_destination_holds_others(pitr, s3_server, s3_offsite):
    """MinIO lost the older base backup (say a prune there), the offsite copy still holds it: naming it reads
    it and its WAL offsite instead of "no backup ID", although MinIO holds a newer one."""
    s3_server.set_auth(False)  # prefixed listings trip moto 5.2.1's signature check (shared/TESTING.md)
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

        def remote(srv, side):
            return {"endpoint": srv.endpoint, "region": "us-east-1", "access_key_id": srv.access_key,
                    "secret_access_key_file": secrets[side], "path_style": "yes"}

        write_config(Path(p.conf), {
            "agent": {"state_dir": os.path.join(p.root, "state")},
            "remote.minio": remote(s3_server, "minio"),
            "remote.offsite": remote(s3_offsite, "offsite"),
            "mirror": {"source": "minio", "buckets": bucket, "destination": f"offsite:{offsite}/off/"},
            "postgres": {"conninfo": p.pg.conninfo, "destination": f"minio:{bucket}/postgres/",
                         "wal_flush_seconds": 1},
        })
        os.chmod(p.conf, 0o600)
        client = s3_server.client()

        def in_minio(key):
            try:
                client.head_object(Bucket=bucket, Key=key)
                return True
            except Exception:
                return False

        p.start_stream()
        p.insert_rows(1, 20)
        older = p.agent("run", "basebackup").stdout.strip()
        p.insert_rows(21, 40)
        newer = p.agent("run", "basebackup").stdout.strip()
        assert older and newer and older != newer
        p.insert_rows(41, 60)
        f = p.current_file()
        p.pg.psql("SELECT pg_switch_wal()")
        wait_for(lambda: in_minio(f"postgres/wal/00000001/{f}.zst"), f"segment {f} in MinIO")
        p.agent("run", "mirror")

        # MinIO loses the older base backup (manifest and data), keeps the newer one.
        gone = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", []) if older in o["Key"]]
        assert gone and any(k.endswith(older + ".json") for k in gone), gone
        for k in gone:
            client.delete_object(Bucket=bucket, Key=k)

        d = p.new_datadir()
        r = p.agent("restore", "postgres", older, "--to-datadir", d, timeout=600, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        said = r.stdout + r.stderr
        assert f"Restored base backup {older} (from the offsite copy)" in said, said
        assert f"Base backup {older} is not in minio:{bucket}/" in said, said
        assert "reading it and its WAL from the offsite copy" in said, said

        port = p.start_copy(d, "offsite.log")
        assert p.rows_of(port) == list(range(1, 61))

        # A base backup neither side holds is still "no backup ID", naming the destination's id.
        r = p.agent("restore", "postgres", "20000101T000000Z", "--to-datadir", p.new_datadir(), check=False)
        assert r.returncode == 66 and "no backup 20000101T000000Z" in r.stderr, r.stderr
    finally:
        s3_server.set_auth(True)
        s3_offsite.set_auth(True)
