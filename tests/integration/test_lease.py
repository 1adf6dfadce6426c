"""More than one node: each cluster-wide job runs on one node at a time, through the coordination.k8s.io/v1
Lease skyforge-agent-JOB on the Kubernetes stand-in (fixtures/kube.py), with every node's agent writing to
one store. Real agent binaries, one process per node, each with its own state_dir and node_name."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from fixtures.age import age_keypair
from fixtures.agent import AGENT, Agent, write_config
from fixtures.kube import free_port

NODES = ("node-a", "node-b", "node-c")
LEASE_NS = "kube-system"


class Node(Agent):
    """One node's agent: its own state_dir, the shared store and cluster."""

    def __init__(self, root, name, sections):
        self.name = name
        self.state_dir = root / name / "state"
        base = {"agent": {"state_dir": self.state_dir, "work_dir": root / name / "work", "node_name": name}}
        for section, keys in sections.items():
            base.setdefault(section, {}).update(keys)
        (root / name).mkdir(parents=True, exist_ok=True)
        super().__init__(write_config(root / name / "agent.conf", base), env={"SKYFORGE_NO_PROGRESS": "1"})

    def popen(self, *args):
        return subprocess.Popen([AGENT, "-c", str(self.config_path), *[str(a) for a in args]], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def status(self, job):
        return [s for s in json.loads(self("status", "--json", check=True).stdout) if s["job"] == job][0]


def manifests_of(store):
    return sorted(p.name for p in store.rglob("*.json"))


@pytest.fixture
def cluster(kube_api, tmp_path):
    """Three nodes in the stand-in's node list, and a function making a Node with given sections."""
    kube_api.nodes = list(NODES)
    kubeconfig = kube_api.kubeconfig()

    def make(name, **sections):
        agent_keys = {"kubeconfig": kubeconfig}
        agent_keys.update(sections.pop("agent", {}))
        return Node(tmp_path, name, {"agent": agent_keys, **sections})
    make.kubeconfig = kubeconfig
    return make


@pytest.fixture
def config_nodes(cluster, kube_api, tmp_path):
    """node-a, node-b, node-c set up for the config job (fast: no database) into one local store."""
    _, recipient = age_keypair(tmp_path, "age.key")
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "app.yaml").write_text("kind: Service\n")
    kube_api.seed("default", "app", data={"k": "v"})
    store = tmp_path / "store" / "config"
    nodes = [cluster(n, config={"manifests": tmp_path / "k8s", "kubeconfig": cluster.kubeconfig,
                                "recipients": recipient, "destination": store}) for n in NODES]
    return nodes, store


def run_at_once(nodes, *args):
    """Runs `args` on every node at the same instant: each thread waits at one barrier, then starts its
    process. Returns the CompletedProcess of each node, in order."""
    barrier = threading.Barrier(len(nodes))
    results = [None] * len(nodes)

    def go(i):
        barrier.wait()
        results[i] = nodes[i](*args, timeout=300)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_three_nodes_started_at_once_make_one_backup_and_two_skips(config_nodes, kube_api):
    nodes, store = config_nodes
    winners = {}
    for round in range(20):
        # A new night: nobody holds the Lease and nobody ran the job lately.
        with kube_api.lock:
            kube_api.leases.clear()
        before = manifests_of(store)
        results = run_at_once(nodes, "run", "config")
        for n, p in zip(nodes, results):
            assert p.returncode == 0, (round, n.name, p.stderr)
        ran = [(n, p) for n, p in zip(nodes, results) if p.stdout.strip()]
        skipped = [(n, p) for n, p in zip(nodes, results) if not p.stdout.strip()]
        assert len(ran) == 1 and len(skipped) == 2, (round, [(n.name, p.stdout, p.stderr) for n, p in zip(nodes, results)])
        winner, wp = ran[0]
        backup_id = wp.stdout.strip()
        assert manifests_of(store) == sorted(before + [f"{backup_id}.json"]), round
        winners[winner.name] = winners.get(winner.name, 0) + 1
        for n, p in skipped:
            # Either it saw the winner holding the Lease, or the winner's fresh success after its release.
            assert (f"skipped: config is running on {winner.name} (lease renewed" in p.stderr or
                    f"skipped: config ran on {winner.name} " in p.stderr), (round, n.name, p.stderr)
            st = n.status("config")
            assert st["last_result"] == "skipped" and st["last_error"].startswith("skipped: config "), st
        lease = kube_api.lease(LEASE_NS, "skyforge-agent-config")
        assert "holderIdentity" not in lease["spec"], lease  # released at the end, times kept
        assert lease["spec"]["renewTime"] and lease["spec"]["leaseDurationSeconds"] == 60
        ann = lease["metadata"]["annotations"]
        assert ann["skyforge.io/last-node"] == winner.name and ann["skyforge.io/last-result"] == "success"
        assert ann["skyforge.io/last-backup-id"] == backup_id
    print("winners:", winners)


def test_recent_success_on_another_node_is_skipped_later_run_of_same_node_is_not(config_nodes, kube_api):
    nodes, store = config_nodes
    a, b, _ = nodes
    first = a("run", "config", check=True).stdout.strip()
    p = b("run", "config")
    assert p.returncode == 0 and p.stdout == "", p.stderr
    assert f"skipped: config ran on node-a " in p.stderr and f"(backup {first})" in p.stderr, p.stderr
    assert "min_interval = 3600 s" in p.stderr
    # The node that ran it is not held back by its own run (an operator running it again by hand).
    second = a("run", "config", check=True).stdout.strip()
    assert manifests_of(store) == sorted([f"{first}.json", f"{second}.json"])
    # min_interval = 0 turns the rule off.
    b.config_path.write_text(b.config_path.read_text().replace("[agent]\n", "[agent]\nmin_interval = 0\n"))
    third = b("run", "config", check=True).stdout.strip()
    assert third and f"{third}.json" in manifests_of(store)
    # status on any node: where it last ran, and that nobody holds the Lease now.
    out = a("status", check=True).stdout
    assert "config" in out and "lease: none" in out and f"last run: success on node-b" in out, out
    st = a.status("config")
    assert st["lease"]["holder"] is None and st["lease"]["last_node"] == "node-b", st
    assert st["lease"]["last_backup_id"] == third


def small_db(pg_factory):
    src = pg_factory()
    src.psql("CREATE DATABASE nautobot")
    src.psql("CREATE TABLE big (id int); INSERT INTO big SELECT generate_series(1, 100);", db="nautobot")
    return src


def block_table(src):
    """Holds an exclusive lock on nautobot.big, so a pg_dumpall that reaches it waits there (mid-dump)."""
    locker = subprocess.Popen([os.path.join(src.bindir, "psql"), "-X", "-q", "-d", f"{src.conninfo} dbname=nautobot"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    locker.stdin.write("BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);\n")
    locker.stdin.flush()
    wait_for(lambda: src.psql("SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' "
                              "AND relation = 'big'::regclass", db="nautobot").strip() != "0", "the table lock")
    return locker


def unblock_table(src, locker):
    src.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             "WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()")
    locker.kill()
    locker.wait()


def wait_for(cond, what, bound=60):
    deadline = time.monotonic() + bound
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {bound} s")
        time.sleep(0.05)


def dump_waiting(src):
    return src.psql("SELECT count(*) FROM pg_locks WHERE NOT granted", db="nautobot").strip() != "0"


def holder(kube_api, job="postgres"):
    lease = kube_api.lease(LEASE_NS, f"skyforge-agent-{job}")
    return lease and lease["spec"].get("holderIdentity")


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


@pytest.fixture
def pg_nodes(cluster, pg_factory, tmp_path):
    """node-a and node-b dumping one small PostgreSQL into one store, with a 3 s Lease (lease_duration is
    an [agent] key; 60 s by default)."""
    src = small_db(pg_factory)
    store = tmp_path / "store" / "postgres"
    nodes = [cluster(n, agent={"lease_duration": 3},
                     postgres={"conninfo": src.conninfo, "destination": store}) for n in NODES[:2]]
    return src, nodes, store


def test_holder_killed_mid_dump_leaves_no_manifest_and_is_taken_over_after_expiry(pg_nodes, kube_api):
    src, (a, b), store = pg_nodes
    locker = block_table(src)
    pa = a.popen("run", "postgres")
    try:
        wait_for(lambda: dump_waiting(src) and holder(kube_api) == "node-a", "node-a holding the Lease mid-dump")
        # Meanwhile node-b's timer fires: the job is running elsewhere.
        p = b("run", "postgres")
        assert p.returncode == 0 and p.stdout == "", p.stderr
        assert "skipped: postgres is running on node-a (lease renewed" in p.stderr, p.stderr
        st = b.status("postgres")
        assert st["last_result"] == "skipped" and st["lease_holder"] == "node-a", st
        assert st["lease"]["holder"] == "node-a", st
        out = b("status", check=True).stdout
        assert "lease: node-a (renewed" in out, out

        orphans = children_of(pa.pid)
        pa.send_signal(signal.SIGKILL)
        pa.wait()
        killed = time.monotonic()
        for pid in orphans:  # what systemd does to the unit's cgroup
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        unblock_table(src, locker)
        if pa.poll() is None:
            pa.kill()
            pa.wait()
    assert not any(store.glob("*.json")) if store.exists() else True
    assert holder(kube_api) == "node-a"  # nobody released it: it must expire

    # node-b's next runs: skipped while the dead holder's Lease is still valid as far as node-b has seen,
    # then a takeover, never earlier than one lease duration after the holder's last renewal.
    for attempt in range(30):
        p = b("run", "postgres", timeout=120)
        assert p.returncode == 0, p.stderr
        if p.stdout.strip():
            break
        assert "skipped: postgres is running on node-a" in p.stderr, p.stderr
    else:
        pytest.fail("node-b never took the Lease over")
    assert time.monotonic() - killed >= 3 - 0.5
    backup_id = p.stdout.strip()
    assert sorted(x.name for x in store.glob("*.json")) == [f"{backup_id}.json"]
    lease = kube_api.lease(LEASE_NS, "skyforge-agent-postgres")
    assert lease["spec"]["leaseTransitions"] >= 1 and "holderIdentity" not in lease["spec"], lease
    assert lease["metadata"]["annotations"]["skyforge.io/last-node"] == "node-b"
    assert b.status("postgres")["last_result"] == "success"


def test_api_that_stops_answering_cancels_the_job_before_it_commits(pg_nodes, kube_api):
    src, (a, _), store = pg_nodes
    locker = block_table(src)
    pa = a.popen("run", "postgres")
    try:
        wait_for(lambda: dump_waiting(src) and holder(kube_api) == "node-a", "node-a holding the Lease mid-dump")
        kube_api.stall()
        t = time.monotonic()
        # The dump stays blocked until the agent has given up: it must end by itself, having lost the Lease.
        code = pa.wait(timeout=60)
        took = time.monotonic() - t
    finally:
        kube_api.resume()
        unblock_table(src, locker)
        if pa.poll() is None:
            pa.kill()
            pa.wait()
    err = pa.stderr.read()
    assert code == 75, err
    assert "lost its Lease" in err and "wrote no manifest and deleted nothing" in err, err
    assert took < 20, took  # 3/4 of the 3 s lease, plus the cancel
    assert not (store.exists() and any(store.glob("*.json")))
    st = a.status("postgres")
    assert st["last_result"] == "failed" and "lost its Lease" in st["last_error"]


def test_auto_runs_without_a_lease_when_there_is_no_cluster_or_one_node(cluster, kube_api, pg_factory, tmp_path):
    src = small_db(pg_factory)
    pg = {"conninfo": src.conninfo, "destination": tmp_path / "store"}
    # No cluster at all (the rebuild day, k3s not installed yet): the default kubeconfig is missing.
    a = cluster("node-a", agent={"kubeconfig": tmp_path / "no-such-k3s.yaml"}, postgres=pg)
    p = a("run", "postgres")
    assert p.returncode == 0 and p.stdout.strip(), p.stderr
    # A kubeconfig whose API does not answer (k3s down).
    dead = kube_api.kubeconfig(server=f"https://127.0.0.1:{free_port()}", name="dead.yaml")
    a = cluster("node-a", agent={"kubeconfig": dead}, postgres=pg)
    p = a("run", "postgres")
    assert p.returncode == 0 and p.stdout.strip(), p.stderr
    # One node: no Lease asked for.
    kube_api.nodes = ["node-a"]
    a = cluster("node-a", postgres=pg)
    p = a("run", "postgres")
    assert p.returncode == 0 and p.stdout.strip(), p.stderr
    assert kube_api.leases == {} and not kube_api.lease_writes()
    # leader_election = no never asks the API at all.
    kube_api.nodes = list(NODES)
    with kube_api.lock:
        kube_api.requests.clear()
    a = cluster("node-a", agent={"leader_election": "no"}, postgres=pg)
    assert a("run", "postgres").returncode == 0
    assert kube_api.requests == []


def test_leader_election_yes_without_the_api_fails_with_69(cluster, kube_api, pg_factory, tmp_path):
    src = small_db(pg_factory)
    dead = kube_api.kubeconfig(server=f"https://127.0.0.1:{free_port()}", name="dead.yaml")
    a = cluster("node-a", agent={"kubeconfig": dead, "leader_election": "yes"},
                postgres={"conninfo": src.conninfo, "destination": tmp_path / "store"})
    p = a("run", "postgres")
    assert p.returncode == 69, p.stderr
    assert "leader_election = yes, but the Lease kube-system/skyforge-agent-postgres cannot be taken" in p.stderr
    assert "connection refused" in p.stderr and "the job did not run" in p.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.json"))
    st = a.status("postgres")
    assert st["last_result"] == "failed"
    # yes with a single-node cluster still takes the Lease.
    kube_api.nodes = ["node-a"]
    a = cluster("node-a", agent={"leader_election": "yes"},
                postgres={"conninfo": src.conninfo, "destination": tmp_path / "store"})
    assert a("run", "postgres").returncode == 0
    assert kube_api.lease(LEASE_NS, "skyforge-agent-postgres")["metadata"]["annotations"][
        "skyforge.io/last-result"] == "success"


def test_prune_takes_the_lease_and_skips_while_another_node_holds_it(pg_nodes, kube_api):
    src, (a, b), store = pg_nodes
    locker = block_table(src)
    pa = a.popen("run", "postgres")
    try:
        wait_for(lambda: dump_waiting(src) and holder(kube_api) == "node-a", "node-a holding the Lease")
        p = b("prune", "postgres")
        assert p.returncode == 0, p.stderr
        assert "Prune of postgres skipped: postgres is running on node-a" in p.stderr, p.stderr
    finally:
        unblock_table(src, locker)
    assert pa.wait(timeout=120) == 0, pa.stderr.read()
    # Once free, the prune runs (and leaves the note of the last backup run alone).
    p = b("prune", "postgres")
    assert p.returncode == 0 and "backup(s) deleted" in p.stderr, p.stderr
    lease = kube_api.lease(LEASE_NS, "skyforge-agent-postgres")
    assert lease["metadata"]["annotations"]["skyforge.io/last-node"] == "node-a"


def test_skipped_run_reads_skipped_over_dbus(config_nodes, kube_api, system_bus, tmp_path):
    from test_daemon import Daemon, get_property  # the daemon fixture's helpers
    import datetime
    nodes, store = config_nodes
    b = nodes[1]
    # node-a holds the config job's Lease, renewed just now (as its agent writes it).
    now = datetime.datetime.now(datetime.timezone.utc)
    kube_api.lease_create(LEASE_NS, {"metadata": {"name": "skyforge-agent-config", "annotations": {
        "skyforge.io/renewed": now.strftime("%Y-%m-%dT%H:%M:%SZ")}}, "spec": {
        "holderIdentity": "node-a", "leaseDurationSeconds": 60,
        "acquireTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}},
        "kubectl")
    b.state_dir.mkdir(parents=True, exist_ok=True)
    d = Daemon(system_bus, str(b.state_dir), str(tmp_path))
    try:
        p = b("run", "config")
        assert p.returncode == 0 and p.stdout == "", p.stderr
        assert "skipped: config is running on node-a (lease renewed" in p.stderr, p.stderr
        deadline = time.monotonic() + 30
        while get_property(d.bus, "config", "LastResult") != "skipped":
            assert time.monotonic() < deadline, "LastResult never became skipped"
            time.sleep(0.05)
        assert get_property(d.bus, "config", "LastError").startswith("skipped: config is running on node-a")
        assert get_property(d.bus, "config", "State") == "idle"
    finally:
        d.kill()
    assert not store.exists() or not any(store.glob("*.json"))
    # The Lease someone else holds is left alone.
    assert kube_api.lease(LEASE_NS, "skyforge-agent-config")["spec"]["holderIdentity"] == "node-a"
