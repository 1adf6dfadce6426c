"""recover --plan / --step postgres against real PostgreSQL clusters, on the local store and, for the
offsite fallback, between two real S3 servers with the mirror job in between."""
import json
import os
import time

from fixtures.postgres import load_sample_data
from test_mirror import pair  # noqa: F401  (fixture: a MinIO stand-in and an offsite bucket)


def two_backups(agent):
    old = agent("run", "postgres", check=True).stdout.strip()
    time.sleep(1.1)
    new = agent("run", "postgres", check=True).stdout.strip()
    return old, new


def test_recover_postgres_step_plans_falls_back_and_is_rerunnable(local_agent, pg_factory):
    src = pg_factory()
    load_sample_data(src, big_rows=1000)
    local_agent.configure(postgres={"conninfo": src.conninfo, "destination": local_agent.store / "postgres"})
    old, new = two_backups(local_agent)
    dst = pg_factory()

    p = local_agent("recover", "--plan", "--postgres-to", dst.conninfo, check=True)
    assert f"postgres   restore backup {new}" in p.stdout and "1 older backup(s)" in p.stdout
    assert f"into host=127.0.0.1 port={dst.port} user=postgres" in p.stdout
    assert "minio      skip: [mirror] is not configured" in p.stdout
    assert dst.databases() == ["postgres", "template1"]  # the plan changed nothing

    # The newest backup is damaged: the step passes over it and restores the older one.
    m = json.loads((local_agent.store / "postgres" / f"{new}.json").read_text())
    dump = local_agent.store / "postgres" / m["objects"][0]["name"]
    data = bytearray(dump.read_bytes())
    data[100] ^= 0xff
    dump.write_bytes(bytes(data))
    p = local_agent("recover", "--step", "postgres", "--postgres-to", dst.conninfo)
    assert p.returncode == 0, p.stderr
    assert f"backup {new} is damaged" in p.stderr and "trying the next older backup" in p.stderr
    assert f"postgres   done" in p.stdout and f"restored backup {old}" in p.stdout
    assert "total      ok" in p.stdout
    assert dst.dumpall() == src.dumpall()

    # Safe to rerun: nothing to do the second time.
    p = local_agent("recover", "--step", "postgres", "--postgres-to", dst.conninfo)
    assert p.returncode == 0 and "postgres   skipped" in p.stdout and "already" in p.stdout
    assert dst.dumpall() == src.dumpall()

    # A partly restored server is refused, not overwritten.
    dst.psql("DROP DATABASE nautobot")
    p = local_agent("recover", "--step", "postgres", "--postgres-to", dst.conninfo)
    assert p.returncode == 73 and "partly restored" in p.stderr and "postgres   FAILED" in p.stdout


def test_recover_skips_unconfigured_postgres(local_agent):
    local_agent.configure()
    p = local_agent("recover", "--plan", check=True)
    assert "postgres   skip: [postgres] is not configured" in p.stdout
    p = local_agent("recover", "--step", "postgres", check=True)
    assert "postgres   skipped" in p.stdout
    assert local_agent("recover", "--step", "nonsense").returncode == 64


def test_recover_postgres_from_offsite_when_minio_is_empty(pair, pg_factory, tmp_path):  # noqa: F811
    # Listings with a prefix ("postgres/") trip moto 5.2.1's signature check (shared/TESTING.md).
    pair.src.set_auth(False)
    try:
        src = pg_factory()
        load_sample_data(src, big_rows=500)
        pair.configure()
        conf = pair.agent.config_path.read_text()
        conf += (f"\n[postgres]\nconninfo = {src.conninfo}\ndestination = minio:{pair.bucket}/postgres/\n")
        pair.agent.config_path.write_text(conf)
        backup_id = pair.agent("run", "postgres", check=True).stdout.strip()
        pair.run(check=True)
        assert f"postgres/{backup_id}.json" in pair.dst_objects()

        # The node's MinIO is empty (a rebuilt node before `restore mirror`).
        client = pair.src.client()
        for key in pair.src_objects():
            client.delete_object(Bucket=pair.bucket, Key=key)
        dst = pg_factory()
        p = pair.agent("recover", "--plan", "--postgres-to", dst.conninfo, check=True)
        assert f"restore backup {backup_id}" in p.stdout and "(offsite)" in p.stdout
        assert f"offsite:{pair.offsite_bucket}/off/{pair.bucket}/postgres/" in p.stdout
        p = pair.agent("recover", "--step", "postgres", "--postgres-to", dst.conninfo)
        assert p.returncode == 0, p.stderr
        assert "looking offsite" in p.stderr and "postgres   done" in p.stdout
        assert dst.dumpall() == src.dumpall()
    finally:
        pair.src.set_auth(True)
