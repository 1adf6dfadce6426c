"""Two nodes (issue 17): two booted containers with the package, one Kubernetes stand-in listing both
nodes and one S3 server (moto) on the host, one PostgreSQL. Both nodes' skyforge-backup-postgres.timer fire
at the same second: one node makes the backup, the other ends its run "skipped" naming that node, and the
store holds exactly one new backup. Both units succeed; the journal of the skipping node carries the
skipped MESSAGE_ID; `skyforge-agent status` on either node shows the Lease and where the job last ran."""
import datetime
import re
import shutil
import time

import pytest

from fixtures.kube import kube_api, kube_pki  # noqa: F401  (fixtures)
from fixtures.postgres import Cluster
from fixtures.s3 import s3_server  # noqa: F401  (fixtures)

MSG_SKIPPED = "5f0c7d2e8a6b4e19b3a1c4d8e2f70b96"
MSG_SUCCEEDED = "eac4d542a7f643f782ac674f5c39d97f"
BUCKET = "twonodes-backups"
NODES = ("skynode-a", "skynode-b")
UNIT = "skyforge-backup@postgres.service"


@pytest.fixture(scope="module")
def nodes(container_factory, package):
    boxes = []
    for name in NODES:
        box = container_factory(name)
        box.install(package[0])
        boxes.append(box)
    return boxes


def manifests(client):
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        out += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json")]
    return sorted(out)


def test_both_timers_fire_one_backup(nodes, s3_server, kube_api):  # noqa: F811
    s3_server.set_auth(False)  # prefixed listings trip moto 5.2.1's signature check (shared/TESTING.md)
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    kube_api.nodes = list(NODES)
    pg = Cluster()
    try:
        pg.psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);")
        kubeconfig = kube_api.kubeconfig()
        for box in nodes:
            shutil.copy(kubeconfig, box.path("/etc/skyforge/kubeconfig.yaml"))
            box.write("/etc/skyforge/minio.secret", s3_server.secret_key + "\n", mode=0o600)
            box.write("/etc/skyforge/agent.conf", "\n".join([
                "[agent]", f"node_name = {box.name}", "kubeconfig = /etc/skyforge/kubeconfig.yaml", "",
                "[remote.minio]", f"endpoint = {s3_server.endpoint}", f"access_key_id = {s3_server.access_key}",
                "secret_access_key_file = /etc/skyforge/minio.secret", "path_style = yes", "",
                "[postgres]", f"conninfo = {pg.conninfo}", f"destination = minio:{BUCKET}/postgres/", ""]),
                mode=0o640)
            assert box.exec(["skyforge-agent", "config", "check"]).returncode == 0

        # Both timers fire at one instant: a drop-in replaces the daily time with one a little ahead and
        # takes the random delay away (the nodes' delays would otherwise spread them by up to 30 min).
        at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=20)
        for box in nodes:
            box.exec(["mkdir", "-p", "/etc/systemd/system/skyforge-backup-postgres.timer.d"])
            box.write("/etc/systemd/system/skyforge-backup-postgres.timer.d/now.conf",
                      "[Timer]\nOnCalendar=\nOnCalendar=" + at.strftime("%Y-%m-%d %H:%M:%S") +
                      " UTC\nRandomizedDelaySec=0\nAccuracySec=1us\nPersistent=no\n")
            box.exec(["systemctl", "daemon-reload"])
            box.exec(["systemctl", "restart", "skyforge-backup-postgres.timer"])
        deadline = time.monotonic() + 120
        for box in nodes:
            while box.unit(UNIT)["InvocationID"] == "":
                assert time.monotonic() < deadline, f"{box.name}: the timer never started {UNIT}"
                time.sleep(0.2)
        results = {box.name: box.wait_unit_done(UNIT, timeout=300) for box in nodes}
        for name, u in results.items():
            assert u["Result"] == "success" and u["ExecMainStatus"] == "0", (name, u)

        assert len(manifests(client)) == 1, manifests(client)
        journals = {box.name: [e for e in box.journal("-u", UNIT) if e.get("SKYFORGE_JOB") == "postgres"]
                    for box in nodes}
        ran = [n for n, j in journals.items() if any(e.get("MESSAGE_ID") == MSG_SUCCEEDED for e in j)]
        skipped = [n for n, j in journals.items() if any(e.get("MESSAGE_ID") == MSG_SKIPPED for e in j)]
        assert len(ran) == 1 and len(skipped) == 1 and ran != skipped, journals
        msg = [e["MESSAGE"] for e in journals[skipped[0]] if e.get("MESSAGE_ID") == MSG_SKIPPED][0]
        assert re.search(rf"skipped: postgres (is running on|ran on) {ran[0]}", msg), msg

        for box in nodes:
            out = box.exec(["skyforge-agent", "status"]).stdout
            assert f"last run: success on {ran[0]}" in out, out
            assert f"(this node: {box.name})" in out, out
        loser = [b for b in nodes if b.name == skipped[0]][0]
        last = loser.exec(["busctl", "--system", "get-property", "org.skyforge.Agent1",
                           "/org/skyforge/Agent1/job/postgres", "org.skyforge.Agent1.Job", "LastResult"]).stdout
        assert "skipped" in last, last
    finally:
        pg.destroy()
        s3_server.set_auth(True)
