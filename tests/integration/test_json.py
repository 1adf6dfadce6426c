"""--json on every command that does work (issue 15 item 3): run, verify, prune, restore, recover and
config check print one JSON document built from the command's result, against real servers (PostgreSQL,
moto_server, age); Python's json module is the independent parser. Failures still exit with their sysexits
code and print the error on stderr; the document says "result": "failed" and carries the same error."""
import json
import os
import socket

import pytest

from fixtures.age import age_keypair
from fixtures.postgres import load_sample_data
from test_postgres_s3 import remote_keys
from test_config_job import config_setup  # noqa: F401 (a fixture: the config job with a Kubernetes stand-in)
from test_verify import work  # noqa: F401 (a fixture: a work_dir the postgres user may enter)


def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def doc(p):
    """The command's stdout as JSON: exactly one document, nothing else on stdout."""
    return json.loads(p.stdout)


def last_error_line(p):
    return p.stderr.strip().splitlines()[-1]


def keypair(tmp_path):
    key = tmp_path / "backup.key"
    if not key.exists():
        age_keypair(tmp_path, "backup.key")
    pub = [ln for ln in key.read_text().splitlines() if ln.startswith("# public key: ")][0]
    return key, pub.split(": ", 1)[1]


def configure_local(agent, pg, tmp_path, sections=None, **extra):
    key, recipient = keypair(tmp_path)
    keys = {"conninfo": pg.conninfo, "destination": agent.store / "postgres", "recipients": recipient,
            "identity_file": key}
    keys.update(extra)
    return agent.configure(postgres=keys, **(sections or {}))


def test_run_json_reports_each_job_and_its_failure(local_agent, pg, tmp_path):
    load_sample_data(pg, big_rows=500)
    configure_local(local_agent, pg, tmp_path)
    p = local_agent("run", "postgres", "--json", check=True)
    (r,) = doc(p)
    (b,) = json.loads(local_agent("list", "--json", check=True).stdout)
    assert r["job"] == "postgres" and r["result"] == "success" and "error" not in r
    assert r["id"] == b["id"] and r["bytes"] == b["bytes"] and r["objects"] == len(b["objects"])
    assert r["duration_usec"] > 0 and r["finished"] >= r["started"]
    assert r["retention"] == {"pruned": 0, "deferred": False, "error": None}

    # A server that is not there: 69, the error on stderr and in the document, and in the state.
    configure_local(local_agent, pg, tmp_path, conninfo=f"host=127.0.0.1 port={dead_port()} user=postgres")
    p = local_agent("run", "postgres", "--json")
    assert p.returncode == 69, p.stderr
    (r,) = doc(p)
    assert r["result"] == "failed" and r["exit_code"] == 69 and r["id"] is None
    assert r["error"] in last_error_line(p), (r, p.stderr)
    st = [s for s in json.loads(local_agent("status", "--json").stdout) if s["job"] == "postgres"][0]
    assert st["last_error"] == r["error"]


def test_run_json_on_s3(s3_server, s3_bucket, local_agent, pg, tmp_path):
    configure_local(local_agent, pg, tmp_path, {"remote__minio": remote_keys(s3_server, tmp_path)},
                    destination=f"minio:{s3_bucket}")
    (r,) = doc(local_agent("run", "postgres", "--json", check=True))
    keys = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert r["result"] == "success" and keys == [f"{r['id']}.json", f"{r['id']}.sql.zst.age"]


def test_run_json_refuses_a_dry_run(local_agent, pg, tmp_path):
    configure_local(local_agent, pg, tmp_path)
    p = local_agent("run", "mirror", "--dry-run", "--json")
    assert p.returncode == 64 and p.stdout == "", p.stderr


def test_verify_json_ok_damaged_restore_test_and_unreachable(s3_server, s3_bucket, local_agent, pg_factory,
                                                             tmp_path, work):  # noqa: F811
    src = pg_factory()
    load_sample_data(src, big_rows=300)
    remote = remote_keys(s3_server, tmp_path)
    sections = {"remote__minio": remote, "agent": {"work_dir": work}}
    configure_local(local_agent, src, tmp_path, sections, destination=f"minio:{s3_bucket}")
    bid = local_agent("run", "postgres", check=True).stdout.strip()

    (v,) = doc(local_agent("verify", "postgres", "--restore-test", "--json", check=True))
    assert v["job"] == "postgres" and v["result"] == "ok" and v["checked"] == 1 and v["damaged"] == 0
    assert v["backups"][0]["id"] == bid and v["backups"][0]["ok"] and v["backups"][0]["problems"] == []
    rt = v["restore_test"]
    assert rt["result"] == "ok" and rt["backup_id"] == bid and rt["missing_databases"] == []
    assert {d["name"] for d in rt["databases"]} >= {"nautobot", "gitea", "postgres"}
    # The state keeps the same result (without job).
    st = [s for s in json.loads(local_agent("status", "--json").stdout) if s["job"] == "postgres"][0]
    kept = st["last_verify"]
    assert {k: v[k] for k in kept if k != "restore_test"} == {k: kept[k] for k in kept if k != "restore_test"}

    # Damage the dump: 65, the error names it, stderr says the same.
    c = s3_server.client()
    c.put_object(Bucket=s3_bucket, Key=f"{bid}.sql.zst.age", Body=b"not what was stored")
    p = local_agent("verify", "postgres", "--json")
    assert p.returncode == 65, p.stderr
    (v,) = doc(p)
    assert v["result"] == "damaged" and v["damaged"] == 1 and v["exit_code"] == 65
    assert f"backup {bid} is damaged" in v["error"] and v["error"] in last_error_line(p)
    assert v["backups"][0]["ok"] is False and "truncated or replaced" in v["backups"][0]["problems"][0]

    # The store unreachable: the verify could not run (69); nothing checked, not recorded in the state.
    remote["endpoint"] = f"http://127.0.0.1:{dead_port()}"
    remote["max_attempts"] = 1
    configure_local(local_agent, src, tmp_path, sections, destination=f"minio:{s3_bucket}")
    p = local_agent("verify", "postgres", "--json")
    assert p.returncode == 69, p.stderr
    (v,) = doc(p)
    assert v["result"] == "failed" and v["exit_code"] == 69 and v["checked"] == 0 and v["backups"] == []
    assert v["error"] in last_error_line(p)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_prune_json_dry_run_then_delete_and_a_held_lock(where, request, local_agent, pg, tmp_path):
    from test_retention import LocalPlace, S3Place, configure as configure_place, fake_backup, old_id
    if where == "local":
        place = LocalPlace(local_agent)
    else:
        place = S3Place(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"), tmp_path)
    configure_place(local_agent, place, pg, retention_days=30, keep_min=1)
    new = local_agent("run", "postgres", check=True).stdout.strip()
    old, t = old_id(40)
    fake_backup(place, new, old, t)
    place.put("20200101T000000Z.json", b"{not json")

    (r,) = doc(local_agent("prune", "--dry-run", "--json", check=True))
    assert r["job"] == "postgres" and r["result"] == "ok" and r["dry_run"] is True and r["deleted"] == 1
    assert [(b["id"], b["action"]) for b in r["backups"]] == [(new, "keep"), (old, "would-delete")]
    assert r["damaged"][0]["id"] == "20200101T000000Z" and "not valid JSON" in r["damaged"][0]["error"]
    assert f"{old}.json" in place.keys()

    (r,) = doc(local_agent("prune", "postgres", "--json", check=True))
    assert r["dry_run"] is False and r["deleted"] == 1
    assert r["backups"][1] == {"id": old, "action": "deleted", "reason": r["backups"][1]["reason"],
                               "foreign_objects_left": False}
    assert f"{old}.json" not in place.keys()

    if where == "s3":
        # A prune that cannot run: the store unreachable. 69, the error in the document and on stderr.
        remote = place.remotes()["remote__minio"]
        remote.update(endpoint=f"http://127.0.0.1:{dead_port()}", max_attempts=1)
        local_agent.configure(postgres={"conninfo": pg.conninfo, "destination": place.destination},
                              remote__minio=remote)
        p = local_agent("prune", "--json")
        assert p.returncode == 69, p.stderr
        (r,) = doc(p)
        assert r["result"] == "failed" and r["exit_code"] == 69 and r["backups"] == []
        assert r["error"] in last_error_line(p)


def test_config_check_json_static_and_connect(s3_server, s3_bucket, local_agent, pg, tmp_path):
    remote = remote_keys(s3_server, tmp_path)
    configure_local(local_agent, pg, tmp_path, {"remote__minio": remote}, destination=f"minio:{s3_bucket}")
    r = doc(local_agent("config", "check", "--json", check=True))
    assert r["result"] == "ok" and r["errors"] == 0 and r["from_file"] is True and "connect" not in r
    assert r["path"] == str(local_agent.config_path)

    r = doc(local_agent("config", "check", "--connect", "--json", check=True))
    checks = {c["check"]: c for c in r["connect"]}
    assert checks["postgres"]["status"] == "ok" and checks["remote minio"]["status"] == "ok", checks

    # A wrong secret: the connect check fails 77 and says so, stderr as before.
    with open(remote["secret_access_key_file"], "w") as f:
        f.write("wrong\n")
    p = local_agent("config", "check", "--connect", "--json")
    assert p.returncode == 77, p.stderr
    r = doc(p)
    assert r["result"] == "failed" and r["exit_code"] == 77
    bad = [c for c in r["connect"] if c["status"] == "fail"]
    assert bad and bad[0]["check"] == "remote minio" and r["error"] == bad[0]["detail"]
    assert "SignatureDoesNotMatch" in r["error"]

    # A static error: 78, the problem with its line, also on stderr.
    with open(local_agent.config_path, "a") as f:
        f.write("[postgres]\nretention_dayz = 3\n")
    p = local_agent("config", "check", "--json")
    assert p.returncode == 78, p.stderr
    r = doc(p)
    assert r["result"] == "failed" and r["exit_code"] == 78 and r["errors"] >= 1
    (e,) = [x for x in r["problems"] if x["severity"] == "error"]
    assert "retention_dayz" in e["message"] and e["line"] > 0 and r["error"] == e["message"]
    assert e["message"] in p.stderr


def test_recover_json_plan_run_rerun_and_refusal(local_agent, pg_factory, tmp_path):
    src = pg_factory()
    load_sample_data(src, big_rows=500)
    configure_local(local_agent, src, tmp_path)
    bid = local_agent("run", "postgres", check=True).stdout.strip()
    dst = pg_factory()

    r = doc(local_agent("recover", "--plan", "--postgres-to", dst.conninfo, "--json", check=True))
    steps = {s["step"]: s for s in r["steps"]}
    assert r["result"] == "ok" and list(steps)[:2] == ["minio", "postgres"]
    assert any(f"restore backup {bid}" in ln for ln in steps["postgres"]["plan"]), steps["postgres"]
    assert dst.databases() == ["postgres", "template1"]

    r = doc(local_agent("recover", "--step", "postgres", "--postgres-to", dst.conninfo, "--json", check=True))
    (s,) = r["steps"]
    assert r["result"] == "ok" and s["step"] == "postgres" and s["outcome"] == "done" and bid in s["note"]
    assert dst.dumpall() == src.dumpall()
    (s,) = doc(local_agent("recover", "--step", "postgres", "--postgres-to", dst.conninfo, "--json",
                           check=True))["steps"]
    assert s["outcome"] == "skipped" and "already" in s["note"]

    # A partly restored server is refused: 73, the step failed with the reason, stderr says it too.
    dst.psql("DROP DATABASE nautobot")
    p = local_agent("recover", "--step", "postgres", "--postgres-to", dst.conninfo, "--json")
    assert p.returncode == 73, p.stderr
    r = doc(p)
    (s,) = r["steps"]
    assert r["result"] == "failed" and r["exit_code"] == 73 and s["outcome"] == "failed"
    assert "partly restored" in s["error"] and r["error"] == s["error"] and s["error"] in p.stderr


def test_restore_json_whole_cluster_database_and_refusals(local_agent, pg_factory, tmp_path):
    src = pg_factory()
    load_sample_data(src, big_rows=300)
    configure_local(local_agent, src, tmp_path, per_database="yes")
    bid = local_agent("run", "postgres", check=True).stdout.strip()
    dst = pg_factory()
    dst.password_conninfo = dst.conninfo + " password=s3cret"

    r = doc(local_agent("restore", "postgres", "--to", dst.password_conninfo, "--json", check=True))
    assert r["job"] == "postgres" and r["action"] == "postgres" and r["result"] == "ok" and r["id"] == bid
    assert "s3cret" not in json.dumps(r) and str(dst.port) in r["target"], r["target"]
    assert dst.dumpall() == src.dumpall()

    # One database into a server where it exists already: refused (73), nothing overwritten.
    p = local_agent("restore", "postgres", "latest", "--database", "gitea", "--to", dst.conninfo, "--json")
    assert p.returncode == 73, p.stderr
    r = doc(p)
    assert r["action"] == "database" and r["database"] == "gitea" and r["result"] == "failed"
    assert r["exit_code"] == 73 and "restore never overwrites" in r["error"] and r["error"] in p.stderr

    # A damaged backup: 65 before anything reaches the server.
    m = json.loads((local_agent.store / "postgres" / f"{bid}.json").read_text())
    (local_agent.store / "postgres" / m["objects"][0]["name"]).write_bytes(b"damaged")
    other = pg_factory()
    p = local_agent("restore", "postgres", bid, "--to", other.conninfo, "--json")
    assert p.returncode == 65, p.stderr
    r = doc(p)
    assert r["result"] == "failed" and r["id"] == bid and f"backup {bid} is damaged" in r["error"]
    assert other.databases() == ["postgres", "template1"]


def test_restore_json_apply_secrets_and_a_wrong_identity(config_setup, kube_api, tmp_path):  # noqa: F811
    agent, cluster, key, manifests, token = config_setup
    bid = agent("run", "config", check=True).stdout.strip()
    kube_api.clear()
    p = agent("restore", "config", "--apply-secrets", "--json", check=True)
    r = doc(p)
    assert r["job"] == "config" and r["action"] == "apply-secrets" and r["result"] == "ok" and r["id"] == bid
    assert r["secrets"] == len(r["output"]) == len(kube_api.secrets) > 0, (r, kube_api.secrets)
    assert all(line.startswith("created ") for line in r["output"]), r["output"]
    # The text mode's count (pinned above for --json) is the same number.
    p = agent("restore", "config", "--apply-secrets", "--dry-run")
    assert f"Checked (dry run) {r['secrets']} Secrets" in p.stderr, p.stderr

    wrong, _ = age_keypair(tmp_path, "wrong.key")
    agent.config_path.write_text(agent.config_path.read_text().replace(str(key), str(wrong)))
    p = agent("restore", "config", "--apply-secrets", "--json")
    assert p.returncode == 65, p.stderr
    r = doc(p)
    assert r["result"] == "failed" and r["exit_code"] == 65 and f"no identity in {wrong}" in r["error"]
    assert r["error"] in p.stderr
