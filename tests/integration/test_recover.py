"""recover --plan / --step postgres against real PostgreSQL clusters, on the local store and, for the
offsite fallback, between two real S3 servers with the mirror job in between."""
import hashlib
import http.server
import json
import os
import threading
import time

import pytest

from fixtures.age import age_keypair
from fixtures.postgres import load_sample_data
from test_config_job import Cluster as KubeCluster, make_manifests
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


# ---- the whole runbook: minio, postgres, secrets, manifests, health ----



class Healthz:
    """A real HTTP server answering 503 until told the cluster is up, then 200. `healthy_after = N` makes
    it turn healthy by itself on its (N+1)-th request: an event the agent's own polling causes, so a test
    that needs "unhealthy at first, then up" does not depend on how fast the earlier steps ran."""

    def __init__(self):
        self.healthy = False
        self.healthy_after = None
        self.requests = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                if outer.healthy_after is not None and outer.requests > outer.healthy_after:
                    outer.healthy = True
                code = 200 if outer.healthy else 503
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"no")

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def bucket_objects(client, bucket):
    """{key: sha256} of a bucket, read with boto3; {} when the bucket is gone."""
    out = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                out[o["Key"]] = hashlib.sha256(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()).hexdigest()
    except client.exceptions.NoSuchBucket:
        pass
    return out


def empty_bucket(client, bucket):
    for k in bucket_objects(client, bucket):
        client.delete_object(Bucket=bucket, Key=k)
    client.delete_bucket(Bucket=bucket)


def user_secrets(kube_api):
    return {k: (v["type"], v.get("data")) for k, v in kube_api.secrets.items()
            if v.get("type") != "kubernetes.io/service-account-token"}


def steps(p):
    """{step: outcome} from the summary table."""
    out = {}
    for line in p.stdout.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] in ("minio", "postgres", "secrets", "manifests", "health", "total"):
            out[f[0]] = f[1]
    return out


@pytest.fixture
def node(pair, pg_factory, kube_api, tmp_path):  # noqa: F811
    """A "node": PostgreSQL with data, MinIO (two buckets) holding the node's data and the postgres and
    config backups, the Kubernetes stand-in with Secrets, backed up and mirrored offsite."""
    pair.src.set_auth(False)  # prefix listings trip moto 5.2.1's signature check (shared/TESTING.md)
    pg = pg_factory()
    load_sample_data(pg, big_rows=300)
    c = pair.src.client()
    second = pair.bucket + "-b"
    c.create_bucket(Bucket=second)
    pair.put("app/1.txt", b"hello", ContentType="text/plain")
    pair.put("app/blob", os.urandom(700 * 1024))
    pair.put("empty", b"")
    c.put_object(Bucket=second, Key="gitea/repo.tar", Body=os.urandom(50 * 1024))

    key, recipient = age_keypair(tmp_path, "age.key")
    manifests = make_manifests(tmp_path / "k8s")
    (manifests / "overlays" / "k3s-traefik").mkdir(parents=True)
    (manifests / "overlays" / "k3s-traefik" / "kustomization.yaml").write_text("resources: [../../apps]\n")
    KubeCluster(kube_api).seed()
    healthz = Healthz()
    # A rebuilt MinIO has no buckets: the rebuild creates them (create_bucket = yes on the MinIO remote).
    pair.configure(buckets=f"{pair.bucket} {second}", minio={"create_bucket": "yes"})
    conf = pair.agent.config_path.read_text().replace(
        "[agent]\n", f"[agent]\nhealthz_url = {healthz.url}\n", 1)
    conf += (f"\n[postgres]\nconninfo = {pg.conninfo}\ndestination = minio:{pair.bucket}/postgres/\n"
             f"\n[config]\nmanifests = {manifests}\nkubeconfig = {kube_api.kubeconfig()}\n"
             f"recipients = {recipient}\nidentity_file = {key}\ndestination = minio:{pair.bucket}/config/\n")
    pair.agent.config_path.write_text(conf)
    pair.agent("run", "postgres", check=True)
    config_id = pair.agent("run", "config", check=True).stdout.strip()
    pair.run(check=True)

    class Node:
        agent = pair.agent
        buckets = (pair.bucket, second)
        client = c
        work = tmp_path / "work"

        def objects(self):
            return {b: bucket_objects(c, b) for b in self.buckets}

    n = Node()
    n.pg, n.pg_factory, n.kube, n.healthz, n.config_id = pg, pg_factory, kube_api, healthz, config_id
    n.bin = tmp_path / "bin"
    n.bin.mkdir()
    n.kubectl_log = tmp_path / "kubectl.log"
    # kubectl itself is not packaged here: this one records how it was called and checks the overlay.
    (n.bin / "kubectl").write_text(
        f"#!/bin/sh\necho \"$@\" >> {n.kubectl_log}\n"
        "last=$(eval echo \\${$#}); test -f \"$last/kustomization.yaml\" || { echo no kustomization >&2; exit 1; }\n"
        "echo 'deployment.apps/gitea configured'\n")
    os.chmod(n.bin / "kubectl", 0o755)
    n.with_kubectl = {"PATH": f"{n.bin}:{os.environ['PATH']}"}
    n.without_kubectl = {"PATH": ":".join(d for d in os.environ["PATH"].split(":")
                                          if not os.path.exists(os.path.join(d, "kubectl")))}
    n.before = {"dump": pg.dumpall(), "objects": n.objects(), "secrets": user_secrets(kube_api)}
    assert all(n.before["objects"].values()) and len(n.before["secrets"]) == 4
    try:
        yield n
    finally:
        healthz.stop()
        pair.src.set_auth(True)


def destroy(n):
    """The node is gone: the cluster stopped and deleted, a new empty one at the same conninfo, MinIO
    and the stand-in empty."""
    port = n.pg.port
    n.pg.destroy()
    n.pg = n.pg_factory(port=port)
    for b in n.buckets:
        empty_bucket(n.client, b)
    n.kube.clear()
    assert n.pg.databases() == ["postgres", "template1"]


def test_recover_rebuilds_a_destroyed_node_and_rerun_is_a_no_op(node):
    destroy(node)
    p = node.agent("recover", "--plan", env=node.with_kubectl)
    assert p.returncode == 0, p.stdout + p.stderr
    n_objects = sum(len(v) for v in node.before["objects"].values())
    assert f"minio      copy {n_objects} object(s)" in p.stdout and "0 (0 B) already equal" in p.stdout
    assert "postgres   restore backup" in p.stdout and "(offsite)" in p.stdout
    assert f"secrets    apply the Secrets export of config backup {node.config_id}" in p.stdout
    assert f"manifests  extract the manifests into {node.work}/recover-manifests of config backup" in p.stdout
    assert f"apply -k {node.work}/recover-manifests/manifests/k8s/overlays/k3s-traefik" in p.stdout
    assert f"health     poll {node.healthz.url} until HTTP 200" in p.stdout
    assert node.objects() == {b: {} for b in node.buckets}  # the plan changed nothing

    node.healthz.healthy, node.healthz.requests = False, 0
    node.healthz.healthy_after = 2  # 503 twice, then 200: the agent must keep polling
    p = node.agent("recover", "--health-timeout", "60", env=node.with_kubectl)
    assert p.returncode == 0, p.stdout + p.stderr
    assert steps(p) == {s: "done" for s in ("minio", "postgres", "secrets", "manifests", "health")} | {
        "total": "ok"}
    assert node.pg.dumpall() == node.before["dump"]
    assert node.objects() == node.before["objects"]
    assert user_secrets(node.kube) == node.before["secrets"]
    assert node.healthz.requests == 3 and "answered HTTP 200 after" in p.stdout
    assert (node.work / "recover-manifests" / "manifests" / "k8s" / "apps" / "netbox.yaml").exists()
    assert node.kubectl_log.read_text().split() == [
        "--kubeconfig", str(node.kube.kubeconfig()), "apply", "-k",
        f"{node.work}/recover-manifests/manifests/k8s/overlays/k3s-traefik"]
    assert "deployment.apps/gitea configured" in p.stderr
    for line in p.stdout.splitlines()[:-1]:
        assert line.split()[2].replace(".", "").isdigit() and line.split()[3] == "s"  # timings

    # Rerun: nothing is copied, restored or applied again (kubectl apply is idempotent itself).
    p = node.agent("recover", env=node.with_kubectl)
    assert p.returncode == 0, p.stdout + p.stderr
    s = steps(p)
    assert (s["minio"], s["postgres"], s["secrets"], s["total"]) == ("skipped",) * 3 + ("ok",)
    assert f"all {n_objects} object(s)" in p.stdout and "already" in p.stdout
    assert "0 of the 4 Secrets" in p.stdout and "are in" in p.stdout
    assert "Keeping the existing" not in p.stderr
    assert node.pg.dumpall() == node.before["dump"]
    assert node.objects() == node.before["objects"]
    assert user_secrets(node.kube) == node.before["secrets"]


def test_recover_steps_one_by_one(node):
    destroy(node)
    node.healthz.healthy = True
    expect = {"minio": lambda: node.objects() == node.before["objects"],
              "postgres": lambda: node.pg.dumpall() == node.before["dump"],
              "secrets": lambda: user_secrets(node.kube) == node.before["secrets"],
              "manifests": lambda: (node.work / "recover-manifests" / ".skyforge-recovered").read_text()
              == node.config_id,
              "health": lambda: True}
    for name in ("secrets", "postgres", "minio", "manifests", "health"):
        p = node.agent("recover", "--plan", "--step", name, check=True, env=node.without_kubectl)
        assert p.stdout.startswith(name) and len(steps(p)) <= 1
        p = node.agent("recover", "--step", name, env=node.without_kubectl)
        assert p.returncode == 0, p.stdout + p.stderr
        assert steps(p) == {name: "done", "total": "ok"}, p.stdout
        assert expect[name]()
    # Without kubectl on PATH the manifests are extracted but not applied, and the step says so.
    p = node.agent("recover", "--step", "manifests", check=True, env=node.without_kubectl)
    assert steps(p) == {"manifests": "skipped", "total": "ok"}
    assert "kubectl is not on PATH: not applied" in p.stdout and "are in" in p.stdout
    assert not node.kubectl_log.exists()

    # A Secret changed by hand is put back; an object deleted from MinIO comes back.
    node.kube.seed("default", "gitea-db", data={"password": "changed"})
    p = node.agent("recover", "--step", "secrets", check=True)
    assert "replaced  default/gitea-db" in p.stderr and "1 of the 4 Secrets" in p.stdout
    node.client.delete_object(Bucket=node.buckets[0], Key="app/1.txt")
    p = node.agent("recover", "--step", "minio", check=True)
    assert "copied 1 object(s)" in p.stdout
    assert node.objects() == node.before["objects"]


def test_recover_health_times_out(node):
    node.healthz.healthy = False
    t0 = time.monotonic()
    p = node.agent("recover", "--step", "health", "--health-timeout", "3")
    assert p.returncode == 69 and "health     FAILED" in p.stdout
    assert "did not answer HTTP 200 within 3 s" in p.stderr
    assert 2.5 < time.monotonic() - t0 < 15
    assert node.agent("recover", "--health-timeout", "0").returncode == 64


def test_recover_skips_every_unconfigured_step(local_agent):
    local_agent.configure()
    p = local_agent("recover", "--plan", check=True)
    for name, why in (("minio", "[mirror]"), ("postgres", "[postgres]"), ("secrets", "[config]"),
                      ("manifests", "[config]"), ("health", "healthz_url")):
        assert any(line.startswith(f"{name:<10} skip: ") and why in line for line in p.stdout.splitlines())
    p = local_agent("recover", check=True)
    assert steps(p) == {s: "skipped" for s in ("minio", "postgres", "secrets", "manifests", "health")} | {
        "total": "ok"}
