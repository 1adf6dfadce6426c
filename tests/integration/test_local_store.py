"""The local store never follows a symlink inside it: prune does not delete, and verify and restore do not
read, through a directory symlink that a manifest names a path through (issue 13, item 2)."""
import hashlib
import json
import os
import shutil

# A backup id older than any retention, named like the per-database objects' directory (<id>/db/...), so
# that a manifest naming <id>/... passes every rule about which objects belong to a backup.
OLD_ID = "20200101T000000Z"


def configure_pg(agent, cluster, **extra):
    keys = {"conninfo": cluster.conninfo, "destination": agent.store / "postgres"}
    keys.update(extra)
    return agent.configure(postgres=keys)


def plant(agent, real_id, outside, payload):
    """A directory symlink OLD_ID -> outside in the store, a file outside, and a manifest of backup OLD_ID
    whose only object is OLD_ID/dump.sql.zst (that file, through the symlink), with its true size and
    SHA-256: following the link would make it look like a good backup."""
    store = agent.store / "postgres"
    outside.mkdir()
    victim = outside / "dump.sql.zst"
    victim.write_bytes(payload)
    os.symlink(outside, store / OLD_ID)
    m = json.loads((store / f"{real_id}.json").read_text())
    m["id"] = OLD_ID
    m["started_usec"] = m["finished_usec"] = 1577836800 * 10**6
    m["objects"] = [{"name": f"{OLD_ID}/dump.sql.zst", "bytes": len(payload),
                     "sha256": hashlib.sha256(payload).hexdigest()}]
    m["bytes"] = len(payload)
    m.pop("details", None)
    (store / f"{OLD_ID}.json").write_text(json.dumps(m))
    return victim


def test_prune_does_not_delete_through_a_symlink_in_the_store(local_agent, pg, tmp_path):
    configure_pg(local_agent, pg)
    real = local_agent("run", "postgres", check=True).stdout.strip()
    victim = plant(local_agent, real, tmp_path / "outside", b"not the store's to delete\n")

    # The planted backup is six years old; keep_min = 1 is the real one: retention deletes the old one.
    configure_pg(local_agent, pg, retention_days=1, keep_min=1)
    p = local_agent("prune")
    assert victim.read_bytes() == b"not the store's to delete\n", p.stderr
    assert f"refusing {local_agent.store / 'postgres'}/{OLD_ID}/dump.sql.zst" in p.stderr, p.stderr
    assert "symlink inside the store" in p.stderr, p.stderr
    # The link itself is reported and left for the operator; the real backup is untouched.
    assert os.path.islink(local_agent.store / "postgres" / OLD_ID)
    assert [b["id"] for b in json.loads(local_agent("list", "--json", check=True).stdout)] == [real]


def planted_good_dump(agent, src, tmp_path):
    """The only backup in the store is OLD_ID, whose object, through the symlink, is a good dump of src."""
    src.psql("CREATE TABLE marker (v text); INSERT INTO marker VALUES ('outside');")
    configure_pg(agent, src)
    real = agent("run", "postgres", check=True).stdout.strip()
    m = json.loads((agent.store / "postgres" / f"{real}.json").read_text())
    dump = (agent.store / "postgres" / m["objects"][0]["name"]).read_bytes()
    plant(agent, real, tmp_path / "outside", dump)
    for name in os.listdir(agent.store / "postgres"):
        if name.startswith(real):
            shutil.move(str(agent.store / "postgres" / name), str(tmp_path / name))


def test_verify_does_not_read_through_a_symlink_in_the_store(local_agent, pg, tmp_path):
    planted_good_dump(local_agent, pg, tmp_path)
    p = local_agent("verify", "postgres", OLD_ID)
    assert p.returncode != 0, p.stdout + p.stderr
    assert f"{OLD_ID} ok" not in p.stdout
    assert f"refusing {local_agent.store / 'postgres'}/{OLD_ID}/dump.sql.zst" in p.stdout + p.stderr
    assert "symlink inside the store" in p.stdout + p.stderr, p.stdout + p.stderr


def test_restore_does_not_read_through_a_symlink_in_the_store(local_agent, pg_factory, tmp_path):
    planted_good_dump(local_agent, pg_factory(), tmp_path)
    dst = pg_factory()
    p = local_agent("restore", "postgres", OLD_ID, "--to", dst.conninfo)
    # 74 today: verify.c's object check wraps every read failure as an I/O error.
    assert p.returncode in (65, 74), p.stderr
    assert f"refusing {local_agent.store / 'postgres'}/{OLD_ID}/dump.sql.zst" in p.stderr, p.stderr
    assert "symlink inside the store" in p.stderr, p.stderr
    assert dst.psql("SELECT count(*) FROM pg_class WHERE relname = 'marker'").strip() == "0"
