"""The config job end to end: manifests plus the cluster's Secrets (from the HTTPS Kubernetes stand-in),
age-encrypted, in one tar.zst; restore config --to DIR and --apply-secrets; the age CLI reads the export."""
import base64
import hashlib
import io
import json
import os
import secrets
import subprocess
import tarfile
import threading
import time

import pytest

from fixtures.age import age_keypair
from fixtures.agent import AGENT


def make_manifests(root):
    (root / "apps" / "gitea").mkdir(parents=True)
    (root / "apps" / "gitea" / "deployment.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\n")
    (root / "apps" / "netbox.yaml").write_text("kind: Service\n")
    (root / "kustomization.yaml").write_text("resources: [apps/netbox.yaml]\n")
    os.symlink("apps/netbox.yaml", root / "current.yaml")
    return root


class Cluster:
    """Seeds the stand-in with Secrets whose values are distinctive random strings."""

    def __init__(self, api):
        self.api = api
        self.values = []

    def value(self):
        v = "sfval-" + secrets.token_hex(16)
        self.values.append(v)
        return v

    def seed(self):
        self.api.seed("default", "gitea-db", data={"password": self.value(), "user": "gitea"},
                      labels={"app": "gitea"})
        self.api.seed("default", "tls-cert", type="kubernetes.io/tls",
                      data={"tls.crt": self.value(), "tls.key": self.value()})
        self.api.seed("apps", "netbox", data={"SECRET_KEY": self.value(), "bin": os.urandom(48)},
                      annotations={"note": "keep"})
        self.api.seed("kube-system", "k3s-serving", data={"token": self.value()})
        self.token = self.api.seed_service_account_token("default")
        return self


def needles(values):
    """The forms in which a value could leak: as is, and base64 as in a Secret's data."""
    out = []
    for v in values:
        out.append(v.encode())
        out.append(base64.b64encode(v.encode()))
    return out


def scan(paths, found_in, values, newer_than=None):
    """Adds to found_in every file under paths whose bytes contain a Secret value."""
    ns = needles(values)
    for top in paths:
        for d, _, files in os.walk(top):
            for f in files:
                p = os.path.join(d, f)
                try:
                    st = os.lstat(p)
                    if not os.path.isfile(p) or os.path.islink(p) or st.st_size > 64 << 20:
                        continue
                    if newer_than and max(st.st_mtime, st.st_ctime) < newer_than:
                        continue
                    with open(p, "rb") as fh:
                        data = fh.read()
                except OSError:
                    continue
                if any(n in data for n in ns):
                    found_in.add(p)


def zstd_tar(path):
    raw = subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    return raw, tarfile.open(fileobj=io.BytesIO(raw))


@pytest.fixture
def config_setup(local_agent, kube_api, tmp_path):
    key, recipient = age_keypair(tmp_path, "age.key")
    manifests = make_manifests(tmp_path / "k8s")
    token = tmp_path / "node-token"
    cluster = Cluster(kube_api).seed()
    token.write_text(cluster.value() + "\n")
    os.chmod(token, 0o600)
    kubeconfig = kube_api.kubeconfig()
    local_agent.configure(config={"manifests": manifests, "kubeconfig": kubeconfig, "recipients": recipient,
                                  "identity_file": key, "extra_secret_files": token,
                                  "destination": local_agent.store / "config"})
    return local_agent, cluster, key, manifests, token


def test_config_job_archive_lists_manifests_and_encrypted_secrets(config_setup, tmp_path):
    agent, cluster, key, manifests, token = config_setup
    backup_id = agent("run", "config", check=True).stdout.strip()

    b = json.loads(agent("list", "--json", check=True).stdout)[0]
    assert b["job"] == "config" and b["id"] == backup_id
    assert [o["name"] for o in b["objects"]] == [f"{backup_id}.tar.zst"]
    contents = b["details"]["contents"]
    for name in ("manifests/k8s/", "manifests/k8s/apps/gitea/deployment.yaml", "manifests/k8s/apps/netbox.yaml",
                 "manifests/k8s/kustomization.yaml", "manifests/k8s/current.yaml",
                 "secrets/secrets.json.age", "secrets/node-token.age"):
        assert name in contents, contents
    assert b["details"]["secrets"] == 4  # the service-account token is not exported

    _, tar = zstd_tar(agent.store / "config" / f"{backup_id}.tar.zst")
    assert tar.getnames() == [c.rstrip("/") for c in contents]
    assert tar.getmember("manifests/k8s/current.yaml").issym()
    assert tar.extractfile("manifests/k8s/apps/netbox.yaml").read() == b"kind: Service\n"
    enc = tar.extractfile("secrets/secrets.json.age").read()
    assert enc.startswith(b"age-encryption.org/v1\n")

    # The stock age CLI decrypts the export into a v1 List that kubectl would take.
    plain = subprocess.run(["age", "-d", "-i", str(key)], input=enc, check=True, capture_output=True).stdout
    lst = json.loads(plain)
    assert lst["apiVersion"] == "v1" and lst["kind"] == "List"
    names = [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in lst["items"]]
    assert names == sorted(names) == [("apps", "netbox"), ("default", "gitea-db"), ("default", "tls-cert"),
                                      ("kube-system", "k3s-serving")]
    for s in lst["items"]:
        assert s["apiVersion"] == "v1" and s["kind"] == "Secret"
        assert s["type"] != "kubernetes.io/service-account-token"
        for f in ("uid", "resourceVersion", "managedFields", "creationTimestamp", "selfLink"):
            assert f not in s["metadata"], (f, s)
        stored = cluster.api.get(s["metadata"]["namespace"], s["metadata"]["name"])
        assert s["data"] == stored["data"]
    assert cluster.token["metadata"]["name"] not in plain.decode()

    tok = tar.extractfile("secrets/node-token.age").read()
    assert subprocess.run(["age", "-d", "-i", str(key)], input=tok, check=True,
                          capture_output=True).stdout == token.read_bytes()


def test_no_secret_value_on_disk_during_and_after_the_job(config_setup, tmp_path):
    agent, cluster, key, manifests, token = config_setup
    # Enough manifest data that archiving takes a while, for the scans during the run.
    big = manifests / "big"
    big.mkdir()
    for i in range(24):
        (big / f"blob{i}.bin").write_bytes(os.urandom(1 << 20))
    values = cluster.values[:-1]  # all but the token file's, which is meant to be on disk
    start = time.time() - 1
    watched = [agent.state_dir, tmp_path / "work", agent.store]
    found = set()
    proc = subprocess.Popen([AGENT, "-c", str(agent.config_path), "run", "config"], env=agent.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scans = 0

    def watch():
        nonlocal scans
        while proc.poll() is None:
            scan(watched, found, values)
            scan(["/tmp", "/var/tmp", "/dev/shm"], found, values, newer_than=start)
            scans += 1
    t = threading.Thread(target=watch)
    t.start()
    out, err = proc.communicate(timeout=300)
    t.join()
    assert proc.returncode == 0, err
    assert scans > 0
    scan(watched, found, values)
    scan(["/tmp", "/var/tmp", "/dev/shm"], found, values, newer_than=start)
    # The store holds the archive compressed: look inside it too.
    backup_id = out.strip()
    raw, _ = zstd_tar(agent.store / "config" / f"{backup_id}.tar.zst")
    assert not any(n in raw for n in needles(values))
    found.discard(str(token))
    assert found == set()


def test_apply_secrets_restores_identical_secrets_onto_emptied_cluster(config_setup, kube_api):
    agent, cluster, key, manifests, token = config_setup
    backup_id = agent("run", "config", check=True).stdout.strip()
    before = {k: v for k, v in kube_api.secrets.items() if v.get("type") != "kubernetes.io/service-account-token"}

    kube_api.clear()
    p = agent("restore", "config", "--apply-secrets", "--dry-run", check=True)
    assert sorted(p.stdout.split("\n")[:-1]) == sorted(
        f"created   {ns}/{n} (dry run)" for ns, n in before)
    assert kube_api.secrets == {}

    p = agent("restore", "config", "--apply-secrets", backup_id, check=True)
    assert sorted(p.stdout.split()) == sorted(["created"] * 4 + [f"{ns}/{n}" for ns, n in before])
    assert f"Applied 4 Secrets of config backup {backup_id}" in p.stderr
    assert set(kube_api.secrets) == set(before)
    for k, old in before.items():
        new = kube_api.secrets[k]
        assert new["data"] == old["data"] and new["type"] == old["type"]
        for f in ("labels", "annotations"):
            assert new["metadata"].get(f) == old["metadata"].get(f)

    p = agent("restore", "config", "--apply-secrets", "latest", check=True)
    assert p.stdout.split()[::2] == ["unchanged"] * 4

    kube_api.seed("default", "gitea-db", data={"password": "changed"})
    p = agent("restore", "config", "--apply-secrets", check=True)
    assert "replaced  default/gitea-db" in p.stdout
    assert kube_api.get("default", "gitea-db")["data"] == before[("default", "gitea-db")]["data"]


def test_apply_secrets_with_wrong_identity_is_refused(config_setup, kube_api, tmp_path):
    agent, cluster, key, manifests, token = config_setup
    backup_id = agent("run", "config", check=True).stdout.strip()
    wrong, _ = age_keypair(tmp_path, "wrong.key")
    conf = agent.config_path.read_text().replace(str(key), str(wrong))
    agent.config_path.write_text(conf)
    kube_api.clear()
    p = agent("restore", "config", "--apply-secrets")
    assert p.returncode == 65, p.stderr
    assert f"no identity in {wrong} matches the recipients of backup {backup_id}" in p.stderr
    assert kube_api.secrets == {} and kube_api.requests == []


def test_restore_to_dir_extracts_manifests_and_encrypted_secrets(config_setup, tmp_path):
    agent, cluster, key, manifests, token = config_setup
    agent("run", "config", check=True)
    out = tmp_path / "restored"
    p = agent("restore", "config", "latest", "--to", out, check=True)
    assert "is still encrypted" in p.stdout
    r = out / "manifests" / "k8s"
    assert (r / "apps" / "gitea" / "deployment.yaml").read_text() == "apiVersion: apps/v1\nkind: Deployment\n"
    assert (r / "kustomization.yaml").read_bytes() == (manifests / "kustomization.yaml").read_bytes()
    assert os.readlink(r / "current.yaml") == "apps/netbox.yaml"
    enc = (out / "secrets" / "secrets.json.age").read_bytes()
    assert enc.startswith(b"age-encryption.org/v1\n")
    assert not any(n in enc for n in needles(cluster.values))
    lst = json.loads(subprocess.run(["age", "-d", "-i", str(key), str(out / "secrets" / "secrets.json.age")],
                                    check=True, capture_output=True).stdout)
    assert len(lst["items"]) == 4

    # A second restore into the same directory keeps what is there, and says so.
    (r / "kustomization.yaml").write_text("edited\n")
    p = agent("restore", "config", "latest", "--to", out, check=True)
    assert f"Keeping the existing {r / 'kustomization.yaml'}" in p.stderr
    assert (r / "kustomization.yaml").read_text() == "edited\n"


def test_restore_to_refuses_unsafe_archive(config_setup, tmp_path):
    """A tampered archive (with a manifest that matches it) cannot write outside --to: absolute names,
    .., or through a symlink that points out."""
    agent, cluster, key, manifests, token = config_setup
    backup_id = agent("run", "config", check=True).stdout.strip()
    store = agent.store / "config"
    victim = tmp_path / "victim"
    victim.mkdir()

    def tamper(members):
        replace_archive(store, backup_id, members)

    def file(name, data=b"pwned\n"):
        i = tarfile.TarInfo(name)
        i.size = len(data)
        return i, data

    def link(name, target):
        i = tarfile.TarInfo(name)
        i.type = tarfile.SYMTYPE
        i.linkname = target
        return i, None

    for i, members in enumerate([[file(str(victim / "abs.txt"))], [file("manifests/../../victim/dotdot.txt")]]):
        tamper(members)
        p = agent("restore", "config", backup_id, "--to", tmp_path / f"out{i}")
        assert p.returncode == 65 and "unsafe name" in p.stderr, p.stderr
        assert os.listdir(victim) == []

    # Links that point out are not created, so nothing can be written through them.
    for i, members in enumerate([[link("manifests/out", str(victim)), file("manifests/out/through.txt")],
                                 [link("manifests/rel", "../../victim"), file("manifests/rel/through.txt")]]):
        tamper(members)
        out = tmp_path / f"links{i}"
        p = agent("restore", "config", backup_id, "--to", out)
        assert "points outside" in p.stderr, p.stderr
        assert os.listdir(victim) == []
        assert not os.path.islink(out / members[0][0].name)

    # A symlink already in the target directory is not followed either.
    tamper([file("manifests/x.yaml")])
    out = tmp_path / "prelinked"
    out.mkdir()
    os.symlink(victim, out / "manifests")
    p = agent("restore", "config", backup_id, "--to", out)
    assert p.returncode != 0 and "symlink" in p.stderr.lower(), p.stderr
    assert os.listdir(victim) == []

    # Hard links are refused.
    h = tarfile.TarInfo("manifests/hard")
    h.type = tarfile.LNKTYPE
    h.linkname = "/etc/passwd"
    tamper([(h, None)])
    p = agent("restore", "config", backup_id, "--to", tmp_path / "hard")
    assert p.returncode == 65 and "not a file, directory or symlink" in p.stderr, p.stderr


def replace_archive(store, backup_id, members):
    """Rewrites backup_id's tar.zst to hold members [(TarInfo, data)], with a manifest that matches."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    blob = subprocess.run(["zstd", "-q", "-c"], input=buf.getvalue(), check=True, capture_output=True).stdout
    (store / f"{backup_id}.tar.zst").write_bytes(blob)
    m = json.loads((store / f"{backup_id}.json").read_text())
    m["objects"][0]["bytes"] = len(blob)
    m["objects"][0]["sha256"] = hashlib.sha256(blob).hexdigest()
    m["bytes"] = len(blob)
    (store / f"{backup_id}.json").write_text(json.dumps(m))


def tar_member(name, kind="file", mode=0o644, data=b"x\n", target=None):
    i = tarfile.TarInfo(name)
    i.mode = mode
    i.uid = i.gid = 0
    i.uname = i.gname = "root"
    if kind == "dir":
        i.type = tarfile.DIRTYPE
        return i, None
    if kind == "link":
        i.type = tarfile.SYMTYPE
        i.linkname = target
        return i, None
    i.size = len(data)
    return i, data


def links_leaving(root):
    """Symlinks under root that the kernel resolves to a place outside root."""
    out = []
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            if os.path.islink(p):
                r = os.path.realpath(p)
                if r != str(root) and not r.startswith(str(root) + os.sep):
                    out.append(f"{p} -> {r}")
    return out


def test_restore_to_drops_setuid_and_group_write_and_refuses_escaping_link_chains(config_setup, tmp_path):
    """A root-owned setuid file comes back without setuid, a 0666 file without group/other write; a
    symlink chain (a/l -> .., then b -> a/l/..) that a check of names alone lets through is not left
    pointing at --to's parent, in either order; and nothing is written through a symlink."""
    agent, cluster, key, manifests, token = config_setup
    backup_id = agent("run", "config", check=True).stdout.strip()
    store = agent.store / "config"

    chain = [tar_member("a", "dir", 0o755), tar_member("a/l", "link", target=".."),
             tar_member("b", "link", target="a/l/.."), tar_member("c", "link", target="a/l/a/l/../victim")]
    for order, links in (("forward", chain), ("backward", chain[2:] + chain[:2])):
        replace_archive(store, backup_id, [
            tar_member("manifests", "dir", 0o3777),
            tar_member("manifests/su.sh", mode=0o4755, data=b"#!/bin/sh\nid\n"),
            tar_member("manifests/sg", mode=0o2775),
            tar_member("manifests/open.yaml", mode=0o666),
        ] + links)
        out = tmp_path / f"restored-{order}"
        p = agent("restore", "config", backup_id, "--to", out)
        assert p.returncode == 0, p.stderr
        modes = {n: os.lstat(out / "manifests" / n).st_mode & 0o7777 for n in ("su.sh", "sg", "open.yaml")}
        assert modes == {"su.sh": 0o755, "sg": 0o755, "open.yaml": 0o644}, {k: oct(v) for k, v in modes.items()}
        assert os.lstat(out / "manifests").st_mode & 0o7777 == 0o755
        assert not os.path.lexists(out / "b") and not os.path.lexists(out / "c"), order
        assert os.readlink(out / "a" / "l") == ".."
        assert links_leaving(out) == [], links_leaving(out)
        assert "points outside" in p.stderr, p.stderr
        assert f"{out}/b" not in p.stdout

    # A file under a symlink the archive made (pointing inside) is refused, and written nowhere.
    replace_archive(store, backup_id, [tar_member("sub", "dir", 0o755), tar_member("s", "link", target="sub"),
                                       tar_member("s/evil.yaml")])
    out = tmp_path / "through"
    p = agent("restore", "config", backup_id, "--to", out)
    assert p.returncode == 73, p.stderr
    assert "cannot extract s/evil.yaml" in p.stderr and "symlink is in its way" in p.stderr, p.stderr
    assert os.listdir(out / "sub") == []


def test_missing_kubeconfig_is_a_clear_error(local_agent, tmp_path):
    _, recipient = age_keypair(tmp_path, "k")
    (tmp_path / "m").mkdir()
    local_agent.configure(config={"manifests": tmp_path / "m", "recipients": recipient,
                                  "kubeconfig": tmp_path / "nope.yaml",
                                  "destination": local_agent.store / "config"})
    p = local_agent("run", "config")
    assert p.returncode == 78, p.stderr
    assert f"no kubeconfig at {tmp_path / 'nope.yaml'} — is k3s installed?" in p.stderr
    assert p.stdout == ""
    assert json.loads(local_agent("list", "--json", check=True).stdout) == []


def test_insecure_skip_tls_verify_is_honoured_with_a_warning(config_setup, kube_api):
    """A kubeconfig with insecure-skip-tls-verify: true (and no CA) still works, as with kubectl, but the
    run says so, naming the kubeconfig and the cluster (like tls_verify = no for S3)."""
    agent, *_ = config_setup
    path = kube_api.kubeconfig(ca=None, name="insecure.yaml")
    kc = json.loads(open(path).read())
    kc["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    with open(path, "w") as f:
        json.dump(kc, f)
    conf = agent.config_path.read_text()
    agent.config_path.write_text(conf.replace(f"kubeconfig = {kube_api.kubeconfig()}", f"kubeconfig = {path}"))
    assert f"kubeconfig = {path}" in agent.config_path.read_text()
    p = agent("run", "config")
    assert p.returncode == 0, p.stderr
    assert (f'warning: TLS verification is off for the Kubernetes API of cluster "default" ({kube_api.url}): '
            f'insecure-skip-tls-verify: true in kubeconfig {path}') in p.stderr, p.stderr
    assert p.stderr.count("TLS verification is off") == 1
