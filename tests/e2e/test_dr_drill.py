"""DR drill (issue 8, item 4): a "node" made of a host PostgreSQL with data, a moto playing MinIO with
buckets and the Kubernetes stand-in; every job and the mirror run on the host with the agent from the build
directory; the node is destroyed; then a fresh booted container with only the .deb, the config (with the
files it names) and the age identity runs `skyforge-agent recover`. It passes when pg_dumpall of the
restored cluster, every bucket's objects (keys and SHA-256) and the Secrets equal the originals. Prints
the RTO, the data volume and the ratio of the RTO to the pure transfer time."""
import hashlib
import http.server
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from fixtures.agent import Agent, write_config
from fixtures.age import age_keypair
from fixtures.kube import kube_api, kube_pki  # noqa: F401  (fixtures)
from fixtures.postgres import Cluster, load_sample_data
from fixtures.s3 import s3_offsite, s3_server  # noqa: F401  (fixtures)

BUCKETS = ("drill-backups", "drill-gitea", "drill-media")


def objects(client, bucket):
    """{key: sha256} of a bucket, read back with boto3; {} when the bucket does not exist."""
    out = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                out[o["Key"]] = hashlib.sha256(body).hexdigest()
    except client.exceptions.NoSuchBucket:
        pass
    return out


def secrets(kube):
    return {k: (v["type"], v.get("data"), v["metadata"].get("labels")) for k, v in kube.secrets.items()}


class Healthz:
    """The cluster's /healthz: a real HTTP server answering 200."""

    def __init__(self):
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def drill_dir():
    # The same absolute path on the host and inside the container: one config file serves both.
    d = tempfile.mkdtemp(prefix="skyforge-drill-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_dr_drill(container_factory, package, s3_server, s3_offsite, kube_api, drill_dir):  # noqa: F811
    # Prefix listings trip moto 5.2.1's signature check (shared/TESTING.md).
    s3_server.set_auth(False)
    s3_offsite.set_auth(False)
    base = drill_dir
    minio, offsite = s3_server.client(), s3_offsite.client()
    offsite_bucket = "drill-offsite"
    offsite.create_bucket(Bucket=offsite_bucket)
    pg = Cluster()
    healthz = Healthz()
    try:
        # ---- the node ----
        load_sample_data(pg, big_rows=20000)
        for b in BUCKETS:
            minio.create_bucket(Bucket=b)
        for i in range(20):
            minio.put_object(Bucket="drill-gitea", Key=f"repos/r{i}.tar", Body=os.urandom(64 * 1024 + i))
        minio.put_object(Bucket="drill-media", Key="video/big.bin", Body=os.urandom(6 << 20))
        minio.put_object(Bucket="drill-media", Key="empty", Body=b"")
        kube_api.seed("default", "gitea-db", data={"password": os.urandom(12).hex()}, labels={"app": "gitea"})
        kube_api.seed("apps", "netbox", data={"SECRET_KEY": os.urandom(24).hex(), "bin": os.urandom(32)})
        kube_api.seed("kube-system", "tls", type="kubernetes.io/tls",
                      data={"tls.crt": os.urandom(40).hex(), "tls.key": os.urandom(40).hex()})
        manifests = os.path.join(base, "k8s")
        os.makedirs(os.path.join(manifests, "overlays", "k3s-traefik"))
        with open(os.path.join(manifests, "overlays", "k3s-traefik", "kustomization.yaml"), "w") as f:
            f.write("resources: []\n")

        # ---- the config, the files it names, the identity ----
        key, recipient = age_keypair(Path(base), "age.key")
        for name, srv in (("minio", s3_server), ("offsite", s3_offsite)):
            with open(os.path.join(base, f"{name}.secret"), "w") as f:
                f.write(srv.secret_key + "\n")
            os.chmod(os.path.join(base, f"{name}.secret"), 0o600)
        kubeconfig = kube_api.kubeconfig()
        shutil.copy(kubeconfig, os.path.join(base, "kubeconfig.yaml"))
        conf = write_config(Path(base) / "agent.conf", {
            "agent": {"state_dir": f"{base}/state", "work_dir": f"{base}/work", "healthz_url": healthz.url},
            # The rebuilt MinIO has no buckets: recover creates them (create_bucket = yes).
            "remote.minio": {"endpoint": s3_server.endpoint, "access_key_id": s3_server.access_key,
                             "secret_access_key_file": f"{base}/minio.secret", "path_style": "yes",
                             "create_bucket": "yes"},
            "remote.offsite": {"endpoint": s3_offsite.endpoint, "access_key_id": s3_offsite.access_key,
                               "secret_access_key_file": f"{base}/offsite.secret", "path_style": "yes"},
            "postgres": {"conninfo": pg.conninfo, "destination": "minio:drill-backups/postgres/",
                         "recipients": recipient, "identity_file": key},
            "config": {"manifests": manifests, "kubeconfig": f"{base}/kubeconfig.yaml",
                       "recipients": recipient, "identity_file": key,
                       "destination": "minio:drill-backups/config/"},
            "mirror": {"source": "minio", "buckets": " ".join(BUCKETS),
                       "destination": f"offsite:{offsite_bucket}/node1/"},
        })

        # ---- every job and the mirror, on the host ----
        host = Agent(conf, env={"SKYFORGE_NO_PROGRESS": "1"})
        for job in ("postgres", "config", "mirror"):
            host("run", job, check=True)
        before = {"dump": pg.dumpall(), "objects": {b: objects(minio, b) for b in BUCKETS},
                  "secrets": secrets(kube_api)}
        assert all(before["objects"].values()) and len(before["secrets"]) == 3
        volume = sum(o["Size"] for p in offsite.get_paginator("list_objects_v2").paginate(Bucket=offsite_bucket)
                     for o in p.get("Contents", []))

        # ---- the node is destroyed ----
        port = pg.port
        pg.destroy()
        for b in BUCKETS:
            for k in objects(minio, b):
                minio.delete_object(Bucket=b, Key=k)
            minio.delete_bucket(Bucket=b)
        kube_api.clear()
        pg = Cluster(port=port)  # a new, empty server where the old one was
        assert pg.databases() == ["postgres", "template1"]

        # ---- a fresh node: the .deb, the config, the identity ----
        box = container_factory("skydrill")
        box.install(package[0])
        os.makedirs(box.path(base), mode=0o700)
        for name in ("agent.conf", "age.key", "minio.secret", "offsite.secret", "kubeconfig.yaml"):
            shutil.copy2(os.path.join(base, name), box.path(os.path.join(base, name)))
        # The manifests checkout is configuration too; recover brings the backed-up copy itself.
        shutil.copytree(manifests, box.path(manifests))

        plan = box.exec(["skyforge-agent", "-c", f"{base}/agent.conf", "recover", "--plan"], timeout=300)
        print(plan.stdout)
        t0 = time.monotonic()
        p = box.exec(["skyforge-agent", "-c", f"{base}/agent.conf", "recover"], check=False, timeout=600)
        rto = time.monotonic() - t0
        print(p.stdout)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "total      ok" in p.stdout

        assert pg.dumpall() == before["dump"]
        assert {b: objects(minio, b) for b in BUCKETS} == before["objects"]
        assert secrets(kube_api) == before["secrets"]

        # The pure transfer: reading every offsite object once (what the restore must at least move).
        t0 = time.monotonic()
        for page in offsite.get_paginator("list_objects_v2").paginate(Bucket=offsite_bucket):
            for o in page.get("Contents", []):
                offsite.get_object(Bucket=offsite_bucket, Key=o["Key"])["Body"].read()
        transfer = time.monotonic() - t0
        print(f"DR drill: RTO {rto:.1f} s, data volume {volume / (1 << 20):.1f} MiB offsite, pure transfer "
              f"{transfer:.2f} s, RTO / transfer = {rto / transfer:.1f}")

        # A second run finds everything restored.
        p = box.exec(["skyforge-agent", "-c", f"{base}/agent.conf", "recover"], timeout=600)
        assert "minio      skipped" in p.stdout and "postgres   skipped" in p.stdout
        assert "secrets    skipped" in p.stdout
    finally:
        healthz.server.shutdown()
        pg.destroy()
        s3_server.set_auth(True)
        s3_offsite.set_auth(True)
