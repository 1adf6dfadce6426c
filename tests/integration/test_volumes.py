"""The volumes job end to end on real trees: Git repositories (commits, branches, packs, loose objects),
hard links, symlinks, a sparse file, ACLs and xattrs, odd names; full, then incrementals, then restore
volumes latest (and the stock-tool recipe of skyforge-agent(8)) must give back the same tree. Also: kill -9
in the middle, a corrupt incremental, a hostile archive, a file changing while it is read, retention in
chains, pre/post commands."""
import hashlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import tarfile
import threading

import pytest

from fixtures.age import age_keypair
from fixtures.agent import AGENT

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git(repo, *args):
    env = dict(os.environ, **GIT_ENV)
    return subprocess.run(["git", "-C", str(repo)] + list(args), check=True, capture_output=True,
                          env=env).stdout


def snapshot(root):
    """Every entry below root (root itself as b""): type, mode, owner, size, SHA-256, mtime, link target,
    xattrs (ACLs included), and which names share an inode. FIFOs and sockets are left out (skipped)."""
    root = os.fsencode(str(root))
    out, inodes = {}, {}

    def entry(path, rel):
        st = os.lstat(path)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            return None
        rec = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
               "gid": st.st_gid, "mtime": st.st_mtime_ns}
        if stat.S_ISREG(st.st_mode):
            rec["size"] = st.st_size
            with open(path, "rb") as f:
                rec["sha256"] = hashlib.sha256(f.read()).hexdigest()
            rec["nlink"] = st.st_nlink
            inodes.setdefault(st.st_ino, []).append(rel)
        if stat.S_ISLNK(st.st_mode):
            rec["target"] = os.readlink(path)
        else:
            rec["xattrs"] = {n: os.getxattr(path, n, follow_symlinks=False)
                             for n in sorted(os.listxattr(path, follow_symlinks=False))}
        return rec

    out[b""] = entry(root, b"")
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            rec = entry(p, rel)
            if rec is not None:
                out[rel] = rec
    links = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return out, links


def assert_same_tree(a, b, ignore=()):
    (ta, la), (tb, lb) = snapshot(a), snapshot(b)
    assert sorted(ta) == sorted(tb), (sorted(set(ta) ^ set(tb)))
    for k in ta:
        ra = {x: y for x, y in ta[k].items() if x not in ignore}
        rb = {x: y for x, y in tb[k].items() if x not in ignore}
        assert ra == rb, (k, ra, rb)
    assert la == lb


def make_repo(path, n_commits=4):
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for i in range(n_commits):
        (path / f"file{i}.txt").write_text(f"content {i}\n" * (i + 1))
        (path / "src").mkdir(exist_ok=True)
        (path / "src" / f"m{i}.c").write_bytes(os.urandom(2000))
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"commit {i}")
    git(path, "branch", "feature")
    git(path, "checkout", "-q", "feature")
    (path / "feature.txt").write_text("feature\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "feature work")
    git(path, "checkout", "-q", "main")
    git(path, "gc", "-q")  # packs
    (path / "loose.txt").write_text("a loose object after gc\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "loose objects")


def make_volume(root):
    """A volume like gitea-data: bare and working repositories plus the file kinds a tree can hold."""
    make_repo(root / "repos" / "alice" / "project")
    subprocess.run(["git", "clone", "-q", "--bare", str(root / "repos" / "alice" / "project"),
                    str(root / "repos" / "alice" / "project.git")], check=True, env=dict(os.environ, **GIT_ENV))
    misc = root / "misc"
    misc.mkdir()
    (misc / "data.bin").write_bytes(os.urandom(300_000))
    os.link(misc / "data.bin", misc / "data-hardlink.bin")
    os.symlink("data.bin", misc / "rel-link")
    os.symlink("/nonexistent/target", misc / "dangling")
    with open(misc / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(b"middle")
    (misc / "empty").write_bytes(b"")
    (misc / os.fsdecode(b"odd\nname-\xff\xfe")).write_bytes(b"odd")
    (misc / "acl.txt").write_text("acl\n")
    subprocess.run(["setfacl", "-m", "u:1234:rw,g:2345:r", str(misc / "acl.txt")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "u:1234:rwx", str(misc)], check=True)
    os.setxattr(misc / "data.bin", "user.origin", b"volume-test")
    (misc / "owned").write_text("owned by 1000\n")
    os.chown(misc / "owned", 1000, 1001)
    os.chmod(misc / "owned", 0o4750)
    os.mkfifo(misc / "fifo")
    return root


def change_round_1(vol):
    repo = vol / "repos" / "alice" / "project"
    (repo / "new.txt").write_text("new file\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "round 1")
    git(repo, "mv", "file0.txt", "renamed0.txt")
    git(repo, "rm", "-q", "file1.txt")
    git(repo, "commit", "-q", "-m", "rename and delete")
    os.chmod(repo / "file2.txt", 0o600)
    os.unlink(vol / "misc" / "empty")
    (vol / "misc" / "newdir").mkdir()
    (vol / "misc" / "newdir" / "n").write_text("n\n")


def change_round_2(vol):
    repo = vol / "repos" / "alice" / "project"
    git(repo, "checkout", "-q", "feature")
    (repo / "feature2.txt").write_text("more\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "round 2")
    git(repo, "checkout", "-q", "main")
    git(repo, "gc", "-q")
    os.link(vol / "misc" / "acl.txt", vol / "misc" / "acl-hardlink")
    with open(vol / "misc" / "data.bin", "r+b") as f:
        f.seek(1000)
        f.write(b"changed")
    import shutil
    shutil.rmtree(vol / "misc" / "newdir")
    (vol / "misc" / "newdir").write_text("a file where a directory was\n")


def git_state(repo):
    fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--full", "--strict"], capture_output=True,
                          text=True, env=dict(os.environ, **GIT_ENV))
    log = git(repo, "log", "--all", "--format=%H %P %s")
    return fsck.returncode, fsck.stdout + fsck.stderr, log


@pytest.fixture
def vol_agent(local_agent, tmp_path):
    vol = make_volume(tmp_path / "vol")
    key, recipient = age_keypair(tmp_path, "age.key")

    def configure(**extra):
        keys = {"paths": vol, "recipients": recipient, "identity_file": key,
                "destination": local_agent.store / "volumes"}
        keys.update(extra)
        local_agent.configure(volumes=keys)

    configure()
    local_agent.vol = vol
    # This node's folder of volumes backups (DEST/NODE/; NODE: node_name, unset here: the host name).
    local_agent.vdir = local_agent.store / "volumes" / socket.gethostname()
    local_agent.key = key
    local_agent.reconfigure = configure
    return local_agent


def backups(agent):
    return json.loads(agent("list", "volumes", "--json", check=True).stdout)


def record(b, vol):
    return next(v for v in b["details"]["volumes"] if v["name"] == str(vol))


def test_volumes_git_chain_restores_identical_tree(vol_agent, tmp_path):
    agent, vol = vol_agent, vol_agent.vol
    full = agent("run", "volumes", check=True).stdout.strip()
    change_round_1(vol)
    inc1 = agent("run", "volumes", check=True).stdout.strip()
    change_round_2(vol)
    p = agent("run", "volumes", check=True)
    inc2 = p.stdout.strip()

    bs = {b["id"]: b for b in backups(agent)}
    r0, r1, r2 = record(bs[full], vol), record(bs[inc1], vol), record(bs[inc2], vol)
    assert (r0["kind"], r1["kind"], r2["kind"]) == ("full", "incremental", "incremental")
    assert (r1["parent"], r2["parent"]) == (full, inc1) and r2["full"] == full
    assert r0["skipped_special"] == 1  # the FIFO
    assert r1["deleted"] >= 2 and r1["archived_entries"] < r0["archived_entries"] / 2
    # The manifest lists every object with its SHA-256, as stored.
    for o in bs[inc2]["objects"]:
        data = (agent.vdir / o["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == o["sha256"] and len(data) == o["bytes"]
    assert "skipped 1 sockets, FIFOs and devices" in p.stderr

    out = tmp_path / "restored"
    p = subprocess.run([AGENT, "-c", str(agent.config_path), "restore", "volumes", "latest", "--volume", str(vol),
                        "--to", str(out), "--dry-run"], capture_output=True, env=agent.env, check=True)
    p.stdout = p.stdout.decode(errors="surrogateescape")  # the odd name is not UTF-8
    assert f"would restore volume {vol} into {out} from {full} (full, then incrementals {inc1} {inc2})" \
        in p.stdout
    assert f"{out}/repos/alice/project/new.txt\n" in p.stdout and not out.exists()
    p = agent("restore", "volumes", "latest", "--volume", vol, "--to", out, check=True)
    assert_same_tree(vol, out)
    p = agent("restore", "volumes", "latest", "--volume", vol, "--to", out)
    assert p.returncode == 73 and "is not empty" in p.stderr
    for repo in (vol / "repos" / "alice" / "project", vol / "repos" / "alice" / "project.git"):
        rel = repo.relative_to(vol)
        rc, msg, log = git_state(out / rel)
        assert rc == 0, msg
        assert log == git_state(repo)[2]

    # Without --volume: each volume below DIR/NAME; an older backup gives the older tree.
    every = tmp_path / "every"
    agent("restore", "volumes", full, "--to", every, check=True)
    assert (every / str(vol).lstrip("/") / "misc" / "empty").exists()
    assert not (every / str(vol).lstrip("/") / "repos" / "alice" / "project" / "new.txt").exists()


def test_volumes_stock_tool_recipe_restores_the_same_tree(vol_agent, tmp_path):
    """The recipe of skyforge-agent(8): for each archive of the chain in order, remove the paths its
    .skyforge-deleted lists, then extract it with age, zstd and GNU tar."""
    agent, vol = vol_agent, vol_agent.vol
    agent("run", "volumes", check=True)
    change_round_1(vol)
    agent("run", "volumes", check=True)
    change_round_2(vol)
    last = agent("run", "volumes", check=True).stdout.strip()
    bs = {b["id"]: b for b in backups(agent)}
    chain, b = [], bs[last]
    while True:
        r = record(b, vol)
        chain.insert(0, agent.vdir / r["archive"])
        if r["kind"] == "full":
            break
        b = bs[r["parent"]]
    assert len(chain) == 3

    out = tmp_path / "by-hand"
    out.mkdir()
    script = f"""set -e
cd {out}
for a in {' '.join(str(c) for c in chain)}; do
    age -d -i {agent.key} "$a" | zstd -dc | tar -xOf - .skyforge-deleted 2>/dev/null | xargs -0 -r rm -rf -- || true
    age -d -i {agent.key} "$a" | zstd -dc | tar -x --numeric-owner --xattrs --xattrs-include='*' --acls \\
        --warning=no-unknown-keyword --anchored --exclude=.skyforge-deleted -f -
done
"""
    subprocess.run(["bash", "-c", script], check=True)
    assert_same_tree(vol, out)


def test_volumes_kill9_mid_backup_leaves_no_backup_and_next_incremental_builds_on_the_last(vol_agent, tmp_path):
    agent, vol = vol_agent, vol_agent.vol
    full = agent("run", "volumes", check=True).stdout.strip()
    change_round_1(vol)
    reached, go = tmp_path / "reached", tmp_path / "go"
    os.mkfifo(reached)
    os.mkfifo(go)
    # The hook holds the agent inside the read of a file, deterministically: it says so through one FIFO
    # and waits on the other.
    hook = f'case "$1" in */new.txt) echo x > {reached}; read x < {go};; esac'
    env = dict(agent.env, SKYFORGE_TEST_READ_HOOK=hook)
    cmd = [AGENT, "-c", str(agent.config_path), "run", "volumes"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(reached) as f:
        assert f.read().strip() == "x"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with open(go, "w") as f:
        f.write("go\n")
    p.stdout.close()
    p.stderr.close()
    assert [b["id"] for b in backups(agent)] == [full]

    nxt = agent("run", "volumes", check=True).stdout.strip()
    r = record({b["id"]: b for b in backups(agent)}[nxt], vol)
    assert r["kind"] == "incremental" and r["parent"] == full
    # Nothing of the killed run became an object (at most the store's temporary files of interrupted
    # writes, which its cleanup removes once they are old), and the chain restores.
    killed = [d for d in (agent.vdir).iterdir() if d.is_dir() and d.name not in (full, nxt)]
    assert all(f.name.startswith(".") for d in killed for f in d.iterdir()), [list(d.iterdir()) for d in killed]
    out = tmp_path / "out"
    agent("restore", "volumes", "latest", "--volume", vol, "--to", out, check=True)
    assert_same_tree(vol, out)


def test_volumes_corrupt_incremental_fails_verify_and_restore_with_65_before_writing(vol_agent, tmp_path):
    agent, vol = vol_agent, vol_agent.vol
    agent("run", "volumes", check=True)
    change_round_1(vol)
    inc = agent("run", "volumes", check=True).stdout.strip()
    change_round_2(vol)
    agent("run", "volumes", check=True)
    arch = agent.vdir / record({b["id"]: b for b in backups(agent)}[inc], vol)["archive"]
    data = bytearray(arch.read_bytes())
    data[len(data) // 2] ^= 0x40
    arch.write_bytes(bytes(data))

    p = agent("verify", "volumes")
    assert p.returncode == 65, p.stderr  # the newest backup builds on the corrupt one
    assert inc in p.stdout + p.stderr
    out = tmp_path / "out"
    p = agent("restore", "volumes", "latest", "--volume", vol, "--to", out)
    assert p.returncode == 65, p.stderr
    assert not out.exists()
    assert not [n for n in os.listdir(tmp_path) if ".skyforge-restore-" in n]


def replace_archive(agent, vol, bid, members):
    """Replaces the archive of volume vol in backup bid by a tar of members [(TarInfo, bytes|None)],
    zstd-compressed and age-encrypted, and fixes its size and SHA-256 in the manifest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    recipient = subprocess.run(["age-keygen", "-y", str(agent.key)], check=True, capture_output=True,
                               text=True).stdout.strip()
    z = subprocess.run(["zstd", "-q", "-c"], input=buf.getvalue(), check=True, capture_output=True).stdout
    enc = subprocess.run(["age", "-r", recipient], input=z, check=True, capture_output=True).stdout
    mpath = agent.vdir / f"{bid}.json"
    m = json.loads(mpath.read_text())
    name = record(m | {"details": m["details"]}, vol)["archive"]
    (agent.vdir / name).write_bytes(enc)
    for o in m["objects"]:
        if o["name"] == name:
            o["bytes"] = len(enc)
            o["sha256"] = hashlib.sha256(enc).hexdigest()
    mpath.write_text(json.dumps(m))


def tinfo(name, type=tarfile.REGTYPE, data=b"", linkname=""):
    i = tarfile.TarInfo(name)
    i.type = type
    i.size = len(data) if type == tarfile.REGTYPE else 0
    i.linkname = linkname
    i.mode = 0o755 if type == tarfile.DIRTYPE else 0o644
    return i, (data if type == tarfile.REGTYPE else None)


@pytest.mark.parametrize("members", [
    [tinfo("../escaped", data=b"x")],
    [tinfo("/tmp/skyforge-absolute-escape", data=b"x")],
    [tinfo("a", tarfile.DIRTYPE), tinfo("a/../../escaped", data=b"x")],
    [tinfo("link", tarfile.SYMTYPE, linkname="{outside}"), tinfo("link/escaped", data=b"x")],
    [tinfo("hl", tarfile.LNKTYPE, linkname="../outside-file")],
], ids=["dotdot", "absolute", "nested-dotdot", "symlink-then-file", "hardlink-out"])
def test_volumes_hostile_archive_writes_nothing_outside(vol_agent, tmp_path, members):
    agent, vol = vol_agent, vol_agent.vol
    bid = agent("run", "volumes", check=True).stdout.strip()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "outside-file").write_text("keep\n")
    fixed = []
    for info, data in members:
        info.linkname = info.linkname.replace("{outside}", str(outside))
        fixed.append((info, data))
    replace_archive(agent, vol, bid, [tinfo(".", tarfile.DIRTYPE)] + fixed)
    before = sorted(os.listdir(tmp_path))
    target = tmp_path / "restore" / "here"
    p = agent("restore", "volumes", bid, "--volume", vol, "--to", target)
    # 65: the archive names something outside; 73: a symlink of the archive is in the way of a file.
    assert p.returncode in (65, 73), p.stdout + p.stderr
    assert os.listdir(outside) == []
    assert not os.path.exists("/tmp/skyforge-absolute-escape")
    assert sorted(os.listdir(tmp_path)) == sorted(set(before) | {"restore"})
    assert os.listdir(tmp_path / "restore") == []  # the half tree beside the target is gone too
    assert (tmp_path / "outside-file").read_text() == "keep\n"


def test_volumes_file_changing_while_read_is_flagged_and_backup_succeeds(vol_agent, tmp_path):
    agent, vol = vol_agent, vol_agent.vol
    log = vol / "misc" / "growing.log"
    log.write_text("start\n")
    # After every read of growing.log a writer appends to it: deterministic, no race with the reader.
    env = {"SKYFORGE_TEST_READ_HOOK": 'case "$1" in */growing.log) echo more >> "$1";; esac'}
    p = agent("run", "volumes", env=env)
    assert p.returncode == 0, p.stderr
    r = record(backups(agent)[0], vol)
    assert r["flagged"] == ["misc/growing.log"] and r["flagged_count"] == 1
    assert "misc/growing.log changed while it was read, 3 times" in p.stderr
    # Stored as last read: the restore holds the state before the third append (start + 2 appends).
    out = tmp_path / "out"
    agent("restore", "volumes", "latest", "--volume", vol, "--to", out, check=True)
    assert (out / "misc" / "growing.log").read_text() == "start\nmore\nmore\n"
    # A file that changes once is read again, stored consistently and not flagged.
    (vol / "misc" / "once.log").write_text("one\n")
    env = {"SKYFORGE_TEST_READ_HOOK": f'case "$1" in */once.log) [ -e {tmp_path}/done ] || '
                                      f'{{ echo two >> "$1"; touch {tmp_path}/done; }};; esac'}
    p = agent("run", "volumes", env=env, check=True)
    r = record(backups(agent)[0], vol)
    assert r["flagged"] == ["misc/growing.log"] or r["flagged"] == []
    assert "once.log" not in json.dumps(r["flagged"])


def test_volumes_file_vanishing_between_walk_and_read_is_counted_and_warned(vol_agent, tmp_path):
    """A file listed by the walk and deleted before it is read: the backup succeeds, the file is not in it,
    the manifest counts it and a warning names it."""
    agent, vol = vol_agent, vol_agent.vol
    (vol / "misc" / "vanish-a").write_text("read first\n")
    (vol / "misc" / "vanish-b").write_text("deleted while a is read\n")
    # misc/ is listed whole before its entries are visited in order: deleting vanish-b while vanish-a is
    # read makes it vanish between the walk and its read, deterministically.
    env = {"SKYFORGE_TEST_READ_HOOK": 'case "$1" in */vanish-a) rm -f "${1%/*}/vanish-b";; esac'}
    p = agent("run", "volumes", env=env)
    assert p.returncode == 0, p.stderr
    assert f"{vol}/misc/vanish-b vanished between the walk and its read" in p.stderr
    r = record(backups(agent)[0], vol)
    assert r["vanished"] == 1 and r["flagged_count"] == 0
    out = tmp_path / "out"
    agent("restore", "volumes", "latest", "--volume", vol, "--to", out, check=True)
    assert (out / "misc" / "vanish-a").read_text() == "read first\n"
    assert not (out / "misc" / "vanish-b").exists()
    assert (out / "misc" / "data.bin").read_bytes() == (vol / "misc" / "data.bin").read_bytes()


def test_volumes_s3_destination_full_incremental_and_restore(vol_agent, s3_server, s3_bucket, tmp_path):
    """The chain on an S3 destination (moto; a bucket-root destination, so this node's folder is "NODE/"): full, then
    an incremental, then restore volumes latest gives back the same tree; boto3, an independent client,
    finds every object the manifests list with their SHA-256."""
    from test_postgres_s3 import remote_keys
    agent, vol = vol_agent, vol_agent.vol
    # Signature checks off: each node's folder is a prefix ("vm/"), and moto refuses correctly signed
    # listings with a '/' in the prefix while they are on (TESTING.md).
    s3_server.set_auth(False)
    agent.configure(remote__minio=remote_keys(s3_server, tmp_path),
                    volumes={"paths": vol, "recipients": age_keypair(tmp_path, "s3.key")[1],
                             "identity_file": tmp_path / "s3.key", "destination": f"minio:{s3_bucket}"})
    full = agent("run", "volumes", check=True).stdout.strip()
    change_round_1(vol)
    inc = agent("run", "volumes", check=True).stdout.strip()
    bs = {b["id"]: b for b in backups(agent)}
    assert record(bs[inc], vol)["kind"] == "incremental" and record(bs[inc], vol)["parent"] == full
    c = s3_server.client()
    for b in (bs[full], bs[inc]):
        for o in b["objects"]:
            data = c.get_object(Bucket=s3_bucket, Key=f"{socket.gethostname()}/{o['name']}")["Body"].read()
            assert hashlib.sha256(data).hexdigest() == o["sha256"] and len(data) == o["bytes"]
    # Nothing is left in the local store: the state_dir keeps only the catalog cache.
    assert not (agent.store / "volumes").exists() or not any((agent.store / "volumes").iterdir())
    out = tmp_path / "out"
    agent("restore", "volumes", "latest", "--volume", vol, "--to", out, check=True)
    assert_same_tree(vol, out)


def test_volumes_prune_keeps_a_full_while_a_kept_incremental_depends_on_it(vol_agent):
    agent, vol = vol_agent, vol_agent.vol
    full = agent("run", "volumes", check=True).stdout.strip()
    change_round_1(vol)
    inc = agent("run", "volumes", check=True).stdout.strip()
    agent.reconfigure(retention_days=0, keep_min=1)
    p = agent("prune", "volumes", "--dry-run", check=True)
    assert f"keep   volumes {full}  kept: the kept incremental {inc} depends on it" in p.stdout, p.stdout
    agent("prune", "volumes", check=True)
    assert sorted(b["id"] for b in backups(agent)) == sorted([full, inc])


def test_volumes_post_command_runs_even_after_a_failed_pre_command(vol_agent, tmp_path):
    agent = vol_agent
    marks = tmp_path / "marks"
    # Quoted: iniparser would cut an unquoted value at ';'.
    agent.reconfigure(pre_command=f'"echo pre $VOLUME >> {marks}; exit 3"',
                      post_command=f"echo post $VOLUME_PATH >> {marks}")
    p = agent("run", "volumes")
    assert p.returncode != 0
    assert "pre_command for volume" in p.stderr and "status 3" in p.stderr
    assert marks.read_text() == f"pre {agent.vol}\npost {agent.vol}\n"
    assert backups(agent) == []
    agent.reconfigure(pre_command=f"echo pre >> {marks}", post_command=f"echo post >> {marks}",
                      command_timeout=1)
    marks.write_text("")
    agent("run", "volumes", check=True)
    assert marks.read_text() == "pre\npost\n"
    agent.reconfigure(pre_command="exec sleep 30", command_timeout=1)
    p = agent("run", "volumes")
    assert p.returncode == 75 and "did not finish within 1 s" in p.stderr


def test_volumes_config_checks_claims_and_paths(local_agent, tmp_path):
    local_agent.configure(volumes={"paths": "relative/dir", "claims": "gitea-data", "exclude": "default/minio"})
    p = local_agent("config", "check")
    assert p.returncode == 78
    assert "'relative/dir' is not an absolute path" in p.stdout + p.stderr
    assert "'gitea-data' is not a NAMESPACE/PVC pattern" in p.stdout + p.stderr


def test_volumes_full_when_due_and_catalog_from_store_when_the_cache_is_gone(vol_agent):
    agent, vol = vol_agent, vol_agent.vol
    full = agent("run", "volumes", check=True).stdout.strip()
    # No cache in state_dir: the previous catalog comes from the store, decrypted with identity_file and
    # checked against its SHA-256.
    import shutil
    shutil.rmtree(agent.state_dir / "volumes-cache")
    change_round_1(vol)
    inc = agent("run", "volumes", check=True).stdout.strip()
    r = record(backups(agent)[0], vol)
    assert r["kind"] == "incremental" and r["parent"] == full and r["archived_entries"] < 40
    # A corrupt cache is not trusted either.
    for c in (agent.state_dir / "volumes-cache").iterdir():
        c.write_bytes(b"garbage")
    (vol / "misc" / "x").write_text("x\n")
    agent("run", "volumes", check=True)
    assert record(backups(agent)[0], vol)["parent"] == inc
    # Encrypted, no cache and no identity to read the store's copy: a full, saying why.
    shutil.rmtree(agent.state_dir / "volumes-cache")
    agent.reconfigure(identity_file="")
    p = agent("run", "volumes", check=True)
    assert record(backups(agent)[0], vol)["kind"] == "full"
    assert "identity_file is not set" in p.stderr
    # full_every_days = 0: every run is a full.
    agent.reconfigure(full_every_days=0)
    p = agent("run", "volumes", check=True)
    assert record(backups(agent)[0], vol)["kind"] == "full" and "full_every_days = 0" in p.stderr
