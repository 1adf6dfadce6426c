"""run postgres --dry-run and run config --dry-run (issue 19 item 3): against real PostgreSQL and the
Kubernetes stand-in they change nothing (the store's files, the state directory and the cluster's Secrets
are the same before and after; the stand-in saw only GET requests) and print what the real run then does:
the databases it then dumps, the Secrets it then exports, what retention then deletes."""
import copy
import json
import os

from fixtures.postgres import load_sample_data
from test_config_job import config_setup  # noqa: F401 (a fixture: the config job with a Kubernetes stand-in)
from test_json import configure_local, dead_port


def tree(*dirs):
    """Every file and directory under dirs, with size and mtime: what "changed nothing" compares."""
    out = {}
    for top in dirs:
        top = str(top)
        if not os.path.exists(top):
            out[top] = None
            continue
        for d, subdirs, files in os.walk(top):
            for n in subdirs + files:
                p = os.path.join(d, n)
                st = os.lstat(p)
                out[p] = (st.st_size, st.st_mtime_ns, os.path.isdir(p))
    return out


def test_postgres_dry_run_names_what_the_run_dumps_and_deletes_and_changes_nothing(local_agent, pg, tmp_path):
    load_sample_data(pg, big_rows=500)
    pg.psql("CREATE DATABASE dryrun_extra")
    configure_local(local_agent, pg, tmp_path, per_database="yes", keep_min=1, retention_days=0)
    dest = local_agent.store / "postgres"

    # Before any run: the destination does not exist, and a dry run does not create it.
    before = tree(local_agent.store, local_agent.state_dir)
    p = local_agent("run", "postgres", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert not dest.exists() and tree(local_agent.store, local_agent.state_dir) == before
    assert f"no backups yet: {dest} does not exist" in p.stdout, p.stdout

    old = local_agent("run", "postgres", check=True).stdout.strip()
    before = tree(local_agent.store, local_agent.state_dir)
    p = local_agent("run", "postgres", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert tree(local_agent.store, local_agent.state_dir) == before
    out = p.stdout
    assert "postgres: dry run, nothing was changed" in out
    assert f"at host=127.0.0.1 port={pg.port}" in out and "PostgreSQL 15" in out
    dbs = [ln.split()[0] for ln in out.splitlines() if ln.startswith("    ") and ln.split()[-1].endswith("B")]
    assert "dryrun_extra" in dbs and "postgres" in dbs, out
    assert "pg_dumpall (PostgreSQL)" in out and "/pg_dumpall" in out and "/pg_dump (" in out
    assert f"write to    {dest}: ID.sql.zst.age ID/globals.sql.zst.age" in out
    assert "encryption  age, to 1 recipient(s)" in out
    assert f"would delete postgres {old}" in out, out

    # The real run then does what the dry run said: the same databases dumped, the same backup deleted.
    (d,) = json.loads(local_agent("run", "postgres", "--dry-run", "--json", check=True).stdout)
    assert d["result"] == "ok" and d["dry_run"] is True and d["destination"] == str(dest)
    assert d["encryption"] == {"encrypted": True, "recipients": 1}
    assert [x["name"] for x in d["databases"]] == dbs and all(x["bytes"] > 0 for x in d["databases"])
    assert [t["program"] for t in d["tools"]] == ["pg_dumpall", "pg_dump"]
    assert [(b["id"], b["action"]) for b in d["retention"]["backups"]] == [(old, "would-delete")]
    assert tree(local_agent.store, local_agent.state_dir) == before

    new = json.loads(local_agent("run", "postgres", "--json", check=True).stdout)[0]
    assert new["retention"]["pruned"] == 1
    (m,) = json.loads(local_agent("list", "--json", check=True).stdout)
    dumped = [x["name"] for x in m["details"]["per_database"]["databases"]]
    assert dumped == [n for n in dbs if n != "template1"]
    names = [o["name"].replace(new["id"], "ID", 1) for o in m["objects"]]
    assert sorted(names) == sorted(d["objects"])


def test_postgres_dry_run_fails_as_the_run_would(local_agent, pg, tmp_path):
    configure_local(local_agent, pg, tmp_path, conninfo=f"host=127.0.0.1 port={dead_port()} user=postgres")
    p = local_agent("run", "postgres", "--dry-run")
    assert p.returncode == 69, p.stderr
    assert "cannot reach PostgreSQL" in p.stderr
    assert not (local_agent.store / "postgres").exists()
    assert not os.path.exists(local_agent.state_dir / "postgres.json")


def test_config_dry_run_lists_secret_names_never_values_and_changes_nothing(config_setup, kube_api):
    agent, cluster, key, manifests, token = config_setup
    secrets_before = copy.deepcopy(kube_api.secrets)
    before = tree(agent.store, agent.state_dir)
    kube_api.requests.clear()

    p = agent("run", "config", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert kube_api.requests and {r[0] for r in kube_api.requests} == {"GET"}, kube_api.requests
    assert kube_api.secrets == secrets_before
    assert tree(agent.store, agent.state_dir) == before and not (agent.store / "config").exists()
    out = p.stdout
    for v in cluster.values:
        assert v not in out and v not in p.stderr
    # 4 files under the manifests directory (the symlink is no regular file), the 4 exported Secrets by
    # namespace (the service-account token is not exported, as in the run).
    assert f"archive     {manifests} as manifests/k8s/: 3 file(s)" in out, out
    assert "export      4 Secret(s) from https://" in out
    assert "    apps: 1 (netbox)" in out and "    default: 2 (gitea-db, tls-cert)" in out
    assert "    kube-system: 1 (k3s-serving)" in out
    assert cluster.token["metadata"]["name"] not in out
    assert f"encrypt     {token} into the archive" in out
    assert "encryption  age, to 1 recipient(s)" in out

    (d,) = json.loads(agent("run", "config", "--dry-run", "--json", check=True).stdout)
    assert d["secrets"]["count"] == 4
    ns = {n["namespace"]: n["names"] for n in d["secrets"]["namespaces"]}
    assert ns == {"apps": ["netbox"], "default": ["gitea-db", "tls-cert"], "kube-system": ["k3s-serving"]}
    assert d["manifests"][0]["files"] == 3 and d["manifests"][0]["member"] == "manifests/k8s"
    assert {r[0] for r in kube_api.requests} == {"GET"}

    # The real run exports exactly those.
    backup_id = agent("run", "config", check=True).stdout.strip()
    (m,) = json.loads(agent("list", "--json", check=True).stdout)
    assert m["id"] == backup_id and m["details"]["secrets"] == d["secrets"]["count"]


def test_config_dry_run_fails_on_a_missing_manifest_directory(config_setup):
    agent, cluster, key, manifests, token = config_setup
    text = agent.config_path.read_text().replace(str(manifests), str(manifests) + "-gone")
    agent.config_path.write_text(text)
    p = agent("run", "config", "--dry-run")
    assert p.returncode == 66, p.stderr
    assert f"cannot read manifest directory {manifests}-gone" in p.stderr


def test_dry_run_refuses_jobs_without_one(local_agent, pg, tmp_path):
    configure_local(local_agent, pg, tmp_path)
    p = local_agent("run", "volumes", "--dry-run")
    assert p.returncode == 64
    assert "--dry-run is for postgres, config and mirror, not \"volumes\"" in p.stderr


def test_postgres_dry_run_retention_agrees_with_the_run_around_a_damaged_backup(local_agent, pg, tmp_path):
    configure_local(local_agent, pg, tmp_path)
    dest = local_agent.store / "postgres"
    ids = [local_agent("run", "postgres", check=True).stdout.strip() for _ in range(3)]
    configure_local(local_agent, pg, tmp_path, keep_min=2, retention_days=0)
    # The newest one loses bytes: it no longer counts toward keep_min, so an older one must stay.
    obj = dest / f"{ids[-1]}.sql.zst.age"
    obj.write_bytes(obj.read_bytes()[:-10])
    before = tree(local_agent.store, local_agent.state_dir)
    (d,) = json.loads(local_agent("run", "postgres", "--dry-run", "--json", check=True).stdout)
    assert tree(local_agent.store, local_agent.state_dir) == before
    decided = {b["id"]: b["action"] for b in d["retention"]["backups"]}
    assert ids[-1] in decided, (ids, d)
    assert decided[ids[-1]] == "keep" and decided[ids[1]] == "keep" and decided[ids[0]] == "would-delete", d
    r = json.loads(local_agent("run", "postgres", "--json", check=True).stdout)[0]
    assert r["retention"]["pruned"] == d["retention"]["deleted"] == 1
    left = {b["id"] for b in json.loads(local_agent("list", "--json", check=True).stdout)}
    assert left == {ids[1], ids[2], r["id"]}
