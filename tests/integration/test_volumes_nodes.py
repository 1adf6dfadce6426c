"""Several nodes, one [volumes] destination: each node keeps its volumes backups in a folder of its own,
DEST/NODE/ ([agent] node_name). Two "nodes" are two agent configurations with different node_names and
state_dirs against the same destination on this machine. Pinned here:
- two nodes backing up in the same second both keep their backup (on one shared folder, one manifest
  overwrote the other);
- a living node's retention never deletes a dead node's backups (it used to count its own toward keep_min
  and delete the dead node's, its only copies);
- a path with the same name on two nodes never chains across them (the second node made an incremental on
  top of the first node's backup);
- a rebuilt node under a new name finds its old name's claims (recover) and backups (restore --node);
- backups made before node folders (DEST itself) stay listable and restorable, and retention leaves them.
"""
import json
import os
import shutil
import subprocess
import threading

import pytest

from fixtures.agent import Agent, write_config
from test_volume_claims import cluster  # noqa: F401 (the fixture)
from test_volumes import assert_same_tree, make_repo


def node_agent(tmp_path, name, dest, agent_keys=None, **volumes):
    a = Agent(tmp_path / f"{name}.conf", env={"SKYFORGE_NO_PROGRESS": "1"})
    a.name = name
    a.state_dir = tmp_path / f"state-{name}"
    keys = {"state_dir": a.state_dir, "work_dir": tmp_path / f"work-{name}", "node_name": name}
    keys.update(agent_keys or {})
    write_config(a.config_path, {"agent": keys, "volumes": dict({"destination": dest}, **volumes)})
    return a


def backups(agent):
    return json.loads(agent("list", "volumes", "--json", check=True).stdout)


def tree(path, label):
    (path / "sub").mkdir(parents=True)
    (path / "who").write_text(f"{label}\n")
    (path / "sub" / f"{label}.bin").write_bytes(os.urandom(20_000))
    return path


def kind(b, name):
    return next(v for v in b["details"]["volumes"] if v["name"] == str(name))


def test_two_nodes_backing_up_in_the_same_second_both_keep_their_backup(tmp_path):
    dest = tmp_path / "store" / "volumes"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    nodes = {}
    for n in ("node-a", "node-b"):
        src = tree(tmp_path / f"src-{n}", n)
        # The pre_command says "picked my id" and waits (bounded) for the other node's: neither writes its
        # manifest before both have picked theirs. Quoted: iniparser cuts an unquoted value at ';'.
        other = "node-b" if n == "node-a" else "node-a"
        wait = (f'"touch {barrier}/$$-{n}; i=0; while ! ls {barrier} | grep -q -- -{other}; do '
                f'i=$((i+1)); [ $i -gt 600 ] && exit 9; sleep 0.1; done"')
        nodes[n] = (node_agent(tmp_path, n, dest, paths=src, pre_command=wait, full_every_days=0), src)

    # Ids have one-second resolution: start both at once until both picked the same second (the first
    # try almost always does; a try straddling a second boundary proves nothing and is repeated).
    for attempt in range(8):
        for f in barrier.iterdir():
            f.unlink()
        out = {}

        def run(n):
            out[n] = nodes[n][0]("run", "volumes")

        ts = [threading.Thread(target=run, args=(n,)) for n in nodes]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for n, p in out.items():
            assert p.returncode == 0, (n, p.stderr)
        ids = {n: p.stdout.strip() for n, p in out.items()}
        if ids["node-a"] == ids["node-b"]:
            break
    else:
        pytest.fail(f"the two runs never started in the same second: {ids}")
    bid = ids["node-a"]

    # Both backups exist, each in its node's folder, and each node lists both.
    for agent, _ in nodes.values():
        assert [b["id"] for b in backups(agent)].count(bid) == 2, backups(agent)
        listed = sorted((b["id"], b["node"]) for b in backups(agent) if b["id"] == bid)
        assert listed == [(bid, "node-a"), (bid, "node-b")], listed
    assert (dest / "node-a" / f"{bid}.json").exists() and (dest / "node-b" / f"{bid}.json").exists()
    # Each node's own: the id alone is this node's; another node's with --node.
    a, src_a = nodes["node-a"]
    _, src_b = nodes["node-b"]
    a("restore", "volumes", bid, "--volume", src_a, "--to", tmp_path / "a", check=True)
    assert_same_tree(src_a, tmp_path / "a")
    a("restore", "volumes", bid, "--node", "node-b", "--volume", src_b, "--to", tmp_path / "b", check=True)
    assert_same_tree(src_b, tmp_path / "b")
    # A third node finds the id in two folders and asks which.
    c = node_agent(tmp_path, "node-c", dest, paths=src_a)
    p = c("restore", "volumes", bid, "--to", tmp_path / "c")
    assert p.returncode == 64 and "--node" in p.stderr and "node-a" in p.stderr and "node-b" in p.stderr
    assert not (tmp_path / "c").exists()


def test_a_living_nodes_retention_never_deletes_a_dead_nodes_backups(tmp_path):
    dest = tmp_path / "store" / "volumes"
    src_a, src_b = tree(tmp_path / "src-a", "a"), tree(tmp_path / "src-b", "b")
    b = node_agent(tmp_path, "node-b", dest, paths=src_b)
    dead = b("run", "volumes", check=True).stdout.strip()
    # node-b is gone. node-a keeps backing up with a retention that would delete anything but its newest.
    a = node_agent(tmp_path, "node-a", dest, paths=src_a, retention_days=0, keep_min=1, full_every_days=0)
    first = a("run", "volumes", check=True).stdout.strip()
    newest = a("run", "volumes", check=True).stdout.strip()
    p = a("prune", "volumes", "--dry-run", check=True)
    assert dead not in p.stdout, p.stdout  # not node-a's to decide about
    a("prune", "volumes", check=True)

    listed = {(x["id"], x.get("node")) for x in backups(a)}
    assert dead in {i for i, _ in listed}, listed
    assert (dead, "node-b") in listed, listed
    assert (newest, "node-a") in listed and (first, "node-a") not in listed
    # The dead node's backup is whole: the rebuilt node (any name) restores it.
    r = node_agent(tmp_path, "node-b2", dest, paths=src_b)
    r("restore", "volumes", "latest", "--node", "node-b", "--volume", src_b, "--to", tmp_path / "out", check=True)
    assert_same_tree(src_b, tmp_path / "out")


def test_the_same_path_on_two_nodes_never_chains_across_nodes(tmp_path):
    dest = tmp_path / "store" / "volumes"
    data = tmp_path / "srv-data"  # /srv/data on each node: one path, two different disks
    tree(data, "first-node")
    a = node_agent(tmp_path, "node-a", dest, paths=data)
    on_a = a("run", "volumes", check=True).stdout.strip()
    keep_a = tmp_path / "keep-a"
    shutil.copytree(data, keep_a, symlinks=True)
    # The other node's disk at the same path.
    shutil.rmtree(data)
    tree(data, "second-node")
    (data / "who").write_text("first-node\n")  # same name and size as on node-a
    b = node_agent(tmp_path, "node-b", dest, paths=data)
    p = b("run", "volumes", check=True)
    on_b = p.stdout.strip()

    bs = {(x.get("node", "node-b"), x["id"]): x for x in backups(b)}
    rec = kind(bs[("node-b", on_b)], data)
    assert rec["kind"] == "full" and rec["parent"] is None, rec
    assert "no earlier backup of it" in p.stderr
    b("restore", "volumes", "latest", "--volume", data, "--to", tmp_path / "b", check=True)
    assert_same_tree(data, tmp_path / "b")
    b("restore", "volumes", on_a, "--node", "node-a", "--volume", data, "--to", tmp_path / "a", check=True)
    assert_same_tree(keep_a, tmp_path / "a")
    # And node-a's next run builds on its own backup, not on node-b's newer one.
    shutil.rmtree(data)
    shutil.copytree(keep_a, data, symlinks=True)
    a_next = a("run", "volumes", check=True).stdout.strip()
    rec = kind({(x["node"], x["id"]): x for x in backups(a)}[("node-a", a_next)], data)
    assert rec["kind"] == "incremental" and rec["parent"] == on_a, rec


def test_a_rebuilt_node_under_a_new_name_recovers_its_old_names_claims(cluster, tmp_path):  # noqa: F811
    dest = cluster.agent.store / "volumes"
    st = cluster.st
    # node-b holds gitea-data, node-a (still alive) coder-data; node-a backed up last.
    gitea = cluster.storage / "gitea"
    make_repo(gitea / "repos" / "gitea", n_commits=2)
    keep = tmp_path / "gitea-before"
    shutil.copytree(gitea, keep, symlinks=True)
    st.claim("apps", "gitea-data", node="node-b", path=str(gitea))
    coder = cluster.storage / "coder"
    coder.mkdir()
    (coder / "ws").write_text("workspace\n")
    st.claim("apps", "coder-data", node="node-a", path=str(coder))
    st.add_deployment("apps", "gitea", claim="gitea-data", replicas=1)
    kube = {"kubeconfig": cluster.api.kubeconfig()}
    b = node_agent(tmp_path, "node-b", dest, agent_keys=kube)
    old = b("run", "volumes", check=True).stdout.strip()
    a = node_agent(tmp_path, "node-a", dest, agent_keys=kube)
    a("run", "volumes", check=True)

    # node-b is lost; its replacement joins as node-c and gitea-data binds there, to a new, empty PV.
    with st.lock:
        gone = st.pvcs.pop(("apps", "gitea-data"))
        st.pvs.pop(gone["spec"]["volumeName"], None)
    new = cluster.storage / "gitea-rebuilt"
    new.mkdir()
    st.claim("apps", "gitea-data", node="node-c", path=str(new))
    c = node_agent(tmp_path, "node-c", dest, agent_keys=kube)

    p = c("recover", "--plan", "--step", "volumes", check=True)
    assert f"apps/gitea-data: from volumes backup {old} (node node-b)" in p.stdout, p.stdout
    p = c("recover", "--step", "volumes")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"1 claim(s) restored (apps/gitea-data from {old} into {new}" in p.stdout, p.stdout
    assert "apps/coder-data" in p.stdout  # on node-a: not this node's to restore
    assert_same_tree(keep, new)
    assert st.replicas("deployments", "apps", "gitea") == 1
    # By hand: restore volumes from the old name's folder.
    c("restore", "volumes", "latest", "--node", "node-b", "--volume", "apps/gitea-data", "--to",
      tmp_path / "by-hand", check=True)
    assert_same_tree(keep, tmp_path / "by-hand")
    # Without --node, latest is this node's own: it has none yet, and the error names the folders.
    p = c("restore", "volumes", "latest", "--to", tmp_path / "none")
    assert p.returncode == 66 and "--node NAME" in p.stderr and "node-b" in p.stderr, p.stderr


def test_backups_made_before_node_folders_stay_readable_and_are_never_pruned(tmp_path):
    dest = tmp_path / "store" / "volumes"
    src = tree(tmp_path / "src", "old")
    a = node_agent(tmp_path, "node-a", dest, paths=src, retention_days=0, keep_min=1, full_every_days=0)
    legacy = a("run", "volumes", check=True).stdout.strip()
    # As an earlier version wrote it: DEST/<id>.json and DEST/<id>/..., the manifest without a node.
    folder = dest / "node-a" if (dest / "node-a").exists() else dest
    m = json.loads((folder / f"{legacy}.json").read_text())
    m["details"].pop("node", None)
    (folder / f"{legacy}.json").unlink()
    (dest / f"{legacy}.json").write_text(json.dumps(m))
    if folder != dest:
        (folder / legacy).rename(dest / legacy)
        shutil.rmtree(folder)
    shutil.rmtree(a.state_dir / "volumes-cache")
    keep = tmp_path / "keep"
    shutil.copytree(src, keep, symlinks=True)

    assert [(x["id"], x.get("node")) for x in backups(a)] == [(legacy, None)]
    # Before this node's first run in its folder, latest is the shared folder's.
    a("restore", "volumes", "latest", "--volume", src, "--to", tmp_path / "r1", check=True)
    assert_same_tree(src, tmp_path / "r1")
    a("verify", "volumes")  # its own folder is empty: says so, touches nothing

    (src / "who").write_text("changed\n")
    first = a("run", "volumes", check=True)
    assert "full backup" in first.stderr
    second = a("run", "volumes", check=True).stdout.strip()
    a("prune", "volumes", check=True)
    listed = [(x["id"], x.get("node")) for x in backups(a)]
    assert (legacy, None) in listed, listed
    assert (second, "node-a") in listed, listed
    assert (dest / f"{legacy}.json").exists()
    assert ". (shared)" in a("list", "volumes", check=True).stdout
    # By id, wherever it is; by --node ., the shared folder.
    a("restore", "volumes", legacy, "--volume", src, "--to", tmp_path / "r2", check=True)
    assert_same_tree(keep, tmp_path / "r2")
    a("restore", "volumes", "latest", "--node", ".", "--volume", src, "--to", tmp_path / "r3", check=True)
    assert_same_tree(keep, tmp_path / "r3")


@pytest.mark.parametrize("name", ["../up", "a/b", ".hidden", "20261202T050000Z", "x" * 254, "bad name"])
def test_a_node_name_that_cannot_be_a_folder_is_refused(tmp_path, name):
    src = tree(tmp_path / "src", "x")
    a = node_agent(tmp_path, "ok", tmp_path / "store" / "volumes", paths=src)
    write_config(a.config_path, {"agent": {"state_dir": a.state_dir, "work_dir": tmp_path / "w",
                                           "node_name": f'"{name}"'},
                                 "volumes": {"destination": tmp_path / "store" / "volumes", "paths": src}})
    p = a("run", "volumes")
    assert p.returncode == 78 and "node_name" in p.stderr, p.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.json"))
    p = a("restore", "volumes", "latest", "--node", name, "--to", tmp_path / "out")
    assert p.returncode in (64, 78) and not (tmp_path / "out").exists()
