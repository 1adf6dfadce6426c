"""[volumes] claims resolved through the Kubernetes API (issue 16, item 1) and recover's volumes step
(item 7), against the API stand-in (fixtures/kube.py with fixtures/kube_workloads.py) and real trees on
disk: PVC -> PV -> the PV's directory on this node, globs and exclude, PVs of other nodes, unbound and
hostile claims passed over; then a rebuilt cluster whose PVCs bind to new, empty PVs: the step waits for the
binding, scales the workloads that mount each claim to 0 through the Scale subresource, restores, and
scales them back."""
import json
import os
import shutil
import subprocess
import threading

import pytest

from fixtures.agent import AGENT, sigterm_and_wait
from fixtures.kube import free_port
from test_volumes import assert_same_tree, make_repo

NODE = "k3s-server"


@pytest.fixture
def cluster(local_agent, kube_api, tmp_path):
    """A node with the local-path provisioner's directories under tmp_path/storage and an agent whose
    [agent] kubeconfig and node_name point at the stand-in."""
    storage = tmp_path / "storage"
    storage.mkdir()

    class Cluster:
        api = kube_api
        st = kube_api.storage
        agent = local_agent

        def volume(self, ns, name, node=NODE, repo=True, source="hostPath"):
            """A bound claim whose PV directory holds a Git repository and a few files."""
            d = storage / f"pvc-{ns}-{name}-{len(os.listdir(storage))}"
            d.mkdir()
            if repo:
                make_repo(d / "repos" / name, n_commits=2)
                (d / "data.bin").write_bytes(os.urandom(50_000))
            pv = self.st.claim(ns, name, node=node, path=str(d), source=source)
            return d, pv

        def configure(self, agent_keys=None, **volumes):
            keys = {"destination": local_agent.store / "volumes"}
            keys.update(volumes)
            a = {"kubeconfig": kube_api.kubeconfig(), "node_name": NODE}
            a.update(agent_keys or {})
            local_agent.configure(agent=a, volumes=keys)

    c = Cluster()
    c.storage = storage
    return c


def backups(agent):
    return json.loads(agent("list", "volumes", "--json", check=True).stdout)


def names(b):
    return sorted(v["name"] for v in b["details"]["volumes"])


def test_claims_are_resolved_through_the_api(cluster, tmp_path):
    gitea, gitea_pv = cluster.volume("apps", "gitea-data")
    coder, _ = cluster.volume("apps", "coder-data", source="local")
    cluster.volume("db", "postgres-data")  # excluded: it has its own job
    cluster.volume("apps", "far-away", node="k3s-agent-2")  # another node's PV
    cluster.st.add_pvc("apps", "pending")  # not bound (local-path binds on first use)
    # Hostile or broken PVs: a path with "..", a relative path, a missing directory, a file.
    hostile = tmp_path / "outside"
    hostile.mkdir()
    (hostile / "secret").write_text("not a volume\n")
    pv = cluster.st.claim("apps", "dotdot", path=str(cluster.storage / ".." / "outside"))
    cluster.st.claim("apps", "relative", path="storage/x")
    cluster.st.claim("apps", "missing", path=str(cluster.storage / "no-such-dir"))
    (cluster.storage / "a-file").write_text("x")
    cluster.st.claim("apps", "file", path=str(cluster.storage / "a-file"))
    # A PV that claims to be another PVC's: not the claim's volume.
    cluster.st.add_pvc("apps", "stolen", volume=pv)
    # More claims than one page of the listing holds, sorted before the ones backed up: the agent follows
    # the continue token to find those.
    for i in range(520):
        cluster.st.add_pvc("aaa-bulk", f"claim-{i:03d}")
    cluster.configure(exclude="db/* aaa-bulk/*")

    p = cluster.agent("run", "volumes")
    assert p.returncode == 0, p.stderr
    b = backups(cluster.agent)[0]
    assert names(b) == ["apps/coder-data", "apps/gitea-data"]
    rec = next(v for v in b["details"]["volumes"] if v["name"] == "apps/gitea-data")
    assert rec["path"] == str(gitea) and rec["pv"] == gitea_pv
    assert "Skipping claim apps/dotdot" in p.stderr and "is not a clean absolute path" in p.stderr
    assert "Skipping claim apps/relative" in p.stderr
    assert "Skipping claim apps/missing" in p.stderr and "does not exist on this node" in p.stderr
    assert "Skipping claim apps/file" in p.stderr and "is not a directory" in p.stderr
    assert "Skipping claim apps/stolen" in p.stderr and "is not bound to it" in p.stderr
    assert "db/postgres-data" not in p.stderr
    # Lists were asked for cluster-wide, paged.
    paths = [r[1] for r in cluster.api.requests]
    assert "/api/v1/persistentvolumeclaims?limit=500" in paths and "/api/v1/persistentvolumes?limit=500" in paths
    assert any(p.startswith("/api/v1/persistentvolumeclaims?limit=500&continue=") for p in paths)
    assert "aaa-bulk/" not in p.stderr

    # restore volumes of a claim, by its name.
    out = tmp_path / "restored"
    cluster.agent("restore", "volumes", "latest", "--volume", "apps/gitea-data", "--to", out, check=True)
    assert_same_tree(gitea, out)
    every = tmp_path / "every"
    cluster.agent("restore", "volumes", "latest", "--to", every, check=True)
    assert_same_tree(coder, every / "apps" / "coder-data")

    # A glob picks claims; an explicit pattern says why a matching claim is passed over.
    cluster.configure(claims="apps/gitea-* apps/far-*")
    p = cluster.agent("run", "volumes")
    assert p.returncode == 0, p.stderr
    assert names(backups(cluster.agent)[0]) == ["apps/gitea-data"]
    assert "Skipping claim apps/far-away" in p.stderr and "does not name this node (k3s-server)" in p.stderr


def test_claims_without_a_cluster(cluster, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "f").write_text("f\n")
    cluster.volume("apps", "gitea-data")

    # The default claims = * on a node without a kubeconfig: the paths alone, said in the journal.
    cluster.configure(agent_keys={"kubeconfig": tmp_path / "no-such-kubeconfig.yaml"}, paths=plain)
    p = cluster.agent("run", "volumes")
    assert p.returncode == 0, p.stderr
    assert "Claims are not resolved (claims = * by default): no kubeconfig at" in p.stderr
    assert names(backups(cluster.agent)[0]) == [str(plain)]

    # Nothing at all to back up: an error naming why.
    cluster.configure(agent_keys={"kubeconfig": tmp_path / "no-such-kubeconfig.yaml"})
    p = cluster.agent("run", "volumes")
    assert p.returncode == 78 and "[volumes] has nothing to back up" in p.stderr

    # An explicit claims = with the API down fails, naming the cause and the fix; nothing is stored.
    down = cluster.api.kubeconfig(server=f"https://127.0.0.1:{free_port()}", name="down.yaml")
    cluster.configure(agent_keys={"kubeconfig": down}, paths=plain, claims="apps/*")
    n = len(backups(cluster.agent))
    p = cluster.agent("run", "volumes")
    assert p.returncode == 69, p.stderr
    assert "cannot resolve claims = apps/* of [volumes] through the Kubernetes API" in p.stderr
    assert "connection refused" in p.stderr and "remove claims = to back up only paths =" in p.stderr
    assert len(backups(cluster.agent)) == n

    # A refusal (403) is no "no cluster": it fails even with the default claims.
    cluster.configure(agent_keys={"kubeconfig": cluster.api.kubeconfig(user="viewer", name="viewer.yaml")},
                      paths=plain)
    p = cluster.agent("run", "volumes")
    assert p.returncode == 77 and "may not list PersistentVolumeClaims" in p.stderr


# ---- recover --step volumes ----


def rebuild(cluster, ns, name, content=None):
    """The rebuilt cluster: the claim is gone with the old node and comes back bound to a new, empty PV."""
    st = cluster.st
    with st.lock:
        old = st.pvcs.pop((ns, name))
        st.pvs.pop(old["spec"]["volumeName"], None)
    d = cluster.storage / f"rebuilt-{ns}-{name}"
    d.mkdir()
    if content:
        (d / "initialised-by-app").write_text(content)
    pv = st.claim(ns, name, path=str(d))
    return d, pv


def scale_requests(api, kind, ns, name):
    return [r[0] for r in api.requests if r[1].split("?")[0] == f"/apis/apps/v1/namespaces/{ns}/{kind}/{name}/scale"]


def test_recover_volumes_step(cluster, tmp_path):
    src, _ = cluster.volume("apps", "gitea-data")
    keep = tmp_path / "original"
    shutil.copytree(src, keep, symlinks=True)
    cluster.st.add_deployment("apps", "gitea", claim="gitea-data", replicas=2)
    cluster.configure()
    backup = cluster.agent("run", "volumes", check=True).stdout.strip()

    new, new_pv = rebuild(cluster, "apps", "gitea-data")
    # The rebuilt node's volumes timer ran before the step: its backup of the new, empty PV is the newest,
    # and not what the rebuild restores.
    empty = cluster.agent("run", "volumes", check=True).stdout.strip()
    # Another workload in the namespace that does not mount the claim is left alone.
    cluster.st.add_deployment("apps", "web", replicas=3)
    seen = []
    cluster.st.on_scale = lambda kind, ns, name, n: seen.append(
        (kind, name, n, sorted(os.listdir(new)), cluster.st.pods_of("apps", "gitea-data")))

    p = cluster.agent("recover", "--plan", "--step", "volumes", check=True)
    assert f"volumes    restore 1 claim(s) of volumes backup {empty}" in p.stdout
    assert f"apps/gitea-data: from volumes backup {backup} (newer ones hold the rebuilt volume)" in p.stdout
    assert f"apps/gitea-data: PersistentVolume {new_pv} in {new} (empty); scales to 0: deployments/gitea (2)" \
        in p.stdout
    assert cluster.st.scale_log == []  # the plan changed nothing
    cluster.api.requests.clear()

    p = cluster.agent("recover", "--step", "volumes")
    assert p.returncode == 0, p.stderr
    assert "volumes    done" in p.stdout and f"1 claim(s) restored (apps/gitea-data from {backup} into {new}" \
        in p.stdout
    assert_same_tree(keep, new)
    # Scaled to 0 while the directory was still empty, and back to 2 once the tree was in place, through
    # GET and PUT of the Scale subresource.
    assert [(k, n, w) for k, n, w, _, _ in seen] == [("deployments", "gitea", 0), ("deployments", "gitea", 2)]
    assert seen[0][3] == [] and "repos" in seen[1][3]
    assert seen[1][4] == []  # its pods were gone before the restore
    assert scale_requests(cluster.api, "deployments", "apps", "gitea") == ["GET", "GET", "PUT", "GET", "PUT"]
    assert cluster.st.replicas("deployments", "apps", "gitea") == 2
    assert cluster.st.replicas("deployments", "apps", "web") == 3
    assert not scale_requests(cluster.api, "deployments", "apps", "web")

    # Safe to rerun: nothing restored, nothing scaled.
    n = len(cluster.st.scale_log)
    p = cluster.agent("recover", "--step", "volumes")
    assert p.returncode == 0, p.stderr
    assert "volumes    skipped" in p.stdout and "restored from" in p.stdout and "already" in p.stdout
    assert len(cluster.st.scale_log) == n
    assert_same_tree(keep, new)


def test_recover_volumes_refuses_a_non_empty_directory_without_force(cluster, tmp_path):
    src, _ = cluster.volume("apps", "gitea-data")
    keep = tmp_path / "original"
    shutil.copytree(src, keep, symlinks=True)
    cluster.st.add_statefulset("apps", "gitea", claim="gitea-data", replicas=1)
    cluster.configure()
    cluster.agent("run", "volumes", check=True)

    # The app started on the new volume before the step and wrote into it.
    new, _ = rebuild(cluster, "apps", "gitea-data", content="fresh install\n")
    p = cluster.agent("recover", "--step", "volumes")
    assert p.returncode == 73, p.stderr
    assert f"the directory {new} of claim apps/gitea-data is not empty" in p.stderr
    assert "initialised-by-app" in p.stderr and "rerun with --force" in p.stderr
    assert cluster.st.scale_log == []  # refused before touching the workload
    assert sorted(os.listdir(new)) == ["initialised-by-app"]

    p = cluster.agent("recover", "--step", "volumes", "--force")
    assert p.returncode == 0, p.stderr
    assert "(replaced, --force)" in p.stdout
    assert_same_tree(keep, new)
    assert [(r[0], r[3]) for r in cluster.st.scale_log] == [("statefulsets", 0), ("statefulsets", 1)]
    # No leftovers beside the PV directory.
    assert sorted(os.listdir(cluster.storage)) == sorted([src.name, new.name])


def test_recover_volumes_waits_for_the_binding_and_survives_an_interruption(cluster, tmp_path):
    src, _ = cluster.volume("apps", "gitea-data")
    keep = tmp_path / "original"
    shutil.copytree(src, keep, symlinks=True)
    cluster.st.add_deployment("apps", "gitea", claim="gitea-data", replicas=2)
    cluster.configure()
    cluster.agent("run", "volumes", check=True)

    # The rebuilt claim is Pending at first: local-path binds it once its pod is scheduled.
    with cluster.st.lock:
        old = cluster.st.pvcs.pop(("apps", "gitea-data"))
        cluster.st.pvs.pop(old["spec"]["volumeName"])
    cluster.st.add_pvc("apps", "gitea-data")
    new = cluster.storage / "rebuilt"
    new.mkdir()
    asked = threading.Event()
    scaled_down = threading.Event()
    cluster.st.pod_grace = 3600  # the pods do not end: the step waits for them

    def on_scale(kind, ns, name, n):
        if n == 0:
            scaled_down.set()
    cluster.st.on_scale = on_scale

    proc = subprocess.Popen([AGENT, "-c", str(cluster.agent.config_path), "recover", "--step", "volumes",
                             "--bind-timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cluster.agent.env)
    try:
        def pvc_read():
            return any(r[1].startswith("/api/v1/namespaces/apps/persistentvolumeclaims/gitea-data")
                       for r in list(cluster.api.requests))
        # Bind it once the step has looked at it and found it Pending.
        for _ in range(600):
            if pvc_read():
                break
            threading.Event().wait(0.1)
        assert pvc_read()
        assert not scaled_down.is_set()
        pv = f"pvc-{os.urandom(4).hex()}"
        cluster.st.add_pv(pv, str(new), claim=("apps", "gitea-data"))
        cluster.st.bind("apps", "gitea-data", pv)
        # Scaled to 0; its pods linger; SIGTERM ends the wait.
        code, err = sigterm_and_wait(proc, scaled_down, what="recover --step volumes")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 75, err
    assert "recovery was cancelled" in err
    assert cluster.st.replicas("deployments", "apps", "gitea") == 0
    assert os.listdir(new) == []
    state = json.loads((cluster.agent.state_dir / "recover-volumes.json").read_text())
    assert state["apps/gitea-data"]["replicas"] == {"deployments/gitea": 2}

    # The rerun finds the counts the first run saved (not the 0 it set) and finishes the job.
    cluster.st.pod_grace = 0.2
    with cluster.st.lock:
        for k in [k for k in cluster.st.pods if k[0] == "apps"]:
            cluster.st.pods.pop(k)
    p = cluster.agent("recover", "--step", "volumes", "--bind-timeout", "60")
    assert p.returncode == 0, p.stderr
    assert_same_tree(keep, new)
    assert cluster.st.replicas("deployments", "apps", "gitea") == 2
    assert json.loads((cluster.agent.state_dir / "recover-volumes.json").read_text())["apps/gitea-data"][
        "replicas"] == {}
