"""The mirror with a local directory on either side (issue 15.1): local -> S3, S3 -> local, local -> local.

A local source is a directory whose subdirectories are the buckets (MinIO's on-disk layout); a local
destination holds DEST/<bucket>/<key>. The same change detection as between two S3 servers (size change,
same-size edit, multipart object) and the same no-op behaviour (a second run copies nothing and, on an S3
side, sends only listings). S3 sides are real moto servers: a source bucket root lists with signature
checks on; a destination under a prefix lists with a '/' in the prefix, which moto 5.2.1 wrongly refuses
with checks on (shared/TESTING.md), so that side runs with checks off, as in test_mirror.py."""
import hashlib
import os
import re
import time
import uuid

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from test_mirror import PREFIX, _contents, _log_offset, _requests_since, _summary

MIB = 1024 * 1024


def _files(root):
    """{relative path: sha256} of the regular files under root, hidden ones included."""
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _write(path, data, age=None):
    """Writes a source file; age: seconds in the past for its mtime (a file older than its copy)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if age is not None:
        t = time.time() - age
        os.utime(path, (t, t))


def _only_listings(reqs):
    return all(m == "GET" and ("list-type=2" in path or "uploads" in path) for m, path in reqs)


def _configure(agent, tmp_path, source, destination, remotes=(), **mirror):
    sections = {"mirror": {"source": source, "destination": destination, **{k: str(v) for k, v in mirror.items()}}}
    for name, srv in remotes:
        secret = tmp_path / f"{name}.secret"
        secret.write_text(srv.secret_key + "\n")
        os.chmod(secret, 0o600)
        sections[f"remote__{name}"] = {"endpoint": srv.endpoint, "access_key_id": srv.access_key,
                                      "secret_access_key_file": secret, "path_style": "yes", "max_attempts": 6}
    agent.configure(**sections)
    p = agent("config", "check")
    assert p.returncode == 0, p.stdout + p.stderr  # what config check accepts, the job runs
    return agent


def test_local_source_to_s3_detects_changes_and_resyncs_with_listings_only(s3_offsite, local_agent, tmp_path):
    s3_offsite.set_auth(False)
    src = tmp_path / "minio-data"
    bucket = f"loc-{uuid.uuid4().hex[:8]}"
    off = f"off-{uuid.uuid4().hex[:10]}"
    s3_offsite.client().create_bucket(Bucket=off)
    for i in range(5):
        _write(src / bucket / "dir" / f"obj-{i}", os.urandom(100 + i), age=100)
    _write(src / bucket / "mid", os.urandom(2 * MIB + 1), age=100)
    _write(src / bucket / "big", os.urandom(6 * MIB + 3), age=100)
    _write(src / "not-a-bucket.txt", b"a file at the top is no bucket")
    agent = _configure(local_agent, tmp_path, src, f"offsite:{off}/{PREFIX}", [("offsite", s3_offsite)],
                       buckets="*", multipart_threshold="5MiB")

    def dst():
        return _contents(s3_offsite.client(), off, f"{PREFIX}{bucket}/")

    assert _summary(agent("run", "mirror", check=True)) == (7, 0, 0, 0)
    assert dst() == _files(src / bucket)
    head = s3_offsite.client().head_object(Bucket=off, Key=f"{PREFIX}{bucket}/big")
    assert head["ETag"].endswith('-1"'), head["ETag"]  # multipart at and above the threshold
    small = s3_offsite.client().head_object(Bucket=off, Key=f"{PREFIX}{bucket}/dir/obj-0")
    assert small["Metadata"]["skyforge-sha256"] == _files(src / bucket)["dir/obj-0"]

    # No-op: nothing copied, only listings (no HEAD: the copies are newer than the files).
    do = _log_offset(s3_offsite)
    assert _summary(agent("run", "mirror", check=True)) == (0, 7, 0, 0)
    reqs = _requests_since(s3_offsite, do)
    assert reqs and _only_listings(reqs), reqs

    # A size change, a same-size edit of a small, a streamed and a multipart object.
    _write(src / bucket / "dir" / "obj-0", os.urandom(500))
    _write(src / bucket / "dir" / "obj-1", os.urandom(101))
    _write(src / bucket / "mid", os.urandom(2 * MIB + 1))
    _write(src / bucket / "big", os.urandom(6 * MIB + 3))
    assert _summary(agent("run", "mirror", check=True)) == (4, 3, 0, 0)
    assert dst() == _files(src / bucket)

    # delete = no keeps what vanished at the source; delete = yes removes it.
    os.remove(src / bucket / "dir" / "obj-4")
    assert _summary(agent("run", "mirror", check=True))[2] == 0
    assert "dir/obj-4" in dst()
    _configure(agent, tmp_path, src, f"offsite:{off}/{PREFIX}", [("offsite", s3_offsite)], buckets="*",
               multipart_threshold="5MiB", delete="yes")
    assert _summary(agent("run", "mirror", check=True))[2] == 1
    assert dst() == _files(src / bucket)


def test_s3_to_local_keeps_headers_and_resyncs_with_listings_only(s3_server, local_agent, tmp_path):
    s3_server.set_auth(True)
    bucket = f"s3l-{uuid.uuid4().hex[:8]}"
    c = s3_server.client()
    c.create_bucket(Bucket=bucket)
    for i in range(5):
        c.put_object(Bucket=bucket, Key=f"dir/obj-{i}", Body=os.urandom(100 + i))
    c.put_object(Bucket=bucket, Key="mid", Body=os.urandom(2 * MIB + 1), ContentType="application/x-mid",
                 Metadata={"owner": "ops"})
    # A multipart object at the source: its ETag is no MD5 of the bytes.
    c.upload_fileobj(__import__("io").BytesIO(os.urandom(11 * MIB)), bucket, "multi",
                     Config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB))
    dest = tmp_path / "offsite-disk"
    agent = _configure(local_agent, tmp_path, "minio", dest, [("minio", s3_server)], buckets=bucket)

    def src():
        return _contents(c, bucket, "")

    assert _summary(agent("run", "mirror", check=True)) == (7, 0, 0, 0)
    assert _files(dest / bucket) == src()
    multi_etag = c.head_object(Bucket=bucket, Key="multi")["ETag"].strip('"')
    assert "-" in multi_etag
    assert os.getxattr(dest / bucket / "multi", "user.skyforge.etag").decode() == multi_etag
    assert os.getxattr(dest / bucket / "mid", "user.skyforge.content-type") == b"application/x-mid"
    assert os.getxattr(dest / bucket / "mid", "user.skyforge.meta.owner") == b"ops"
    assert not [n for n in os.listdir(dest / bucket) if n.startswith(".")]  # no temporary files left

    # No-op: only listings at the source, also for the multipart object (its ETag is kept with the file).
    mtimes = {p: os.stat(dest / bucket / p).st_mtime_ns for p in _files(dest / bucket)}
    so = _log_offset(s3_server)
    assert _summary(agent("run", "mirror", check=True)) == (0, 7, 0, 0)
    reqs = _requests_since(s3_server, so)
    assert reqs and _only_listings(reqs), reqs
    assert mtimes == {p: os.stat(dest / bucket / p).st_mtime_ns for p in _files(dest / bucket)}

    c.put_object(Bucket=bucket, Key="dir/obj-0", Body=os.urandom(300))  # size change
    c.put_object(Bucket=bucket, Key="dir/obj-1", Body=os.urandom(101))  # same size
    c.upload_fileobj(__import__("io").BytesIO(os.urandom(11 * MIB)), bucket, "multi",
                     Config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB))
    c.delete_object(Bucket=bucket, Key="dir/obj-4")
    assert _summary(agent("run", "mirror", check=True)) == (3, 3, 0, 0)
    assert "dir/obj-4" in _files(dest / bucket)  # delete = no
    _configure(agent, tmp_path, "minio", dest, [("minio", s3_server)], buckets=bucket, delete="yes")
    assert _summary(agent("run", "mirror", check=True)) == (0, 6, 1, 0)
    assert _files(dest / bucket) == src()


def test_local_to_local_detects_changes_and_resyncs_without_writing(local_agent, tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    for b in ("alpha", "beta"):
        for i in range(3):
            _write(src / b / "k" / f"{i}", os.urandom(50 + i))
    _write(src / "alpha" / "big", os.urandom(6 * MIB))
    agent = _configure(local_agent, tmp_path, src, dest, multipart_threshold="5MiB")
    assert _summary(agent("run", "mirror", check=True)) == (7, 0, 0, 0)
    assert _files(dest) == _files(src)

    inodes = {p: os.stat(dest / p).st_ino for p in _files(dest)}
    assert _summary(agent("run", "mirror", check=True)) == (0, 7, 0, 0)
    assert inodes == {p: os.stat(dest / p).st_ino for p in _files(dest)}  # nothing rewritten

    _write(src / "alpha" / "k" / "0", os.urandom(10))  # size change
    st = os.stat(src / "beta" / "k" / "1")
    _write(src / "beta" / "k" / "1", os.urandom(51))  # same size, newer time
    os.utime(src / "beta" / "k" / "1", ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    _write(src / "alpha" / "big", os.urandom(6 * MIB))
    os.remove(src / "beta" / "k" / "2")
    assert _summary(agent("run", "mirror", check=True)) == (3, 3, 0, 0)
    assert "beta/k/2" in _files(dest)
    _configure(agent, tmp_path, src, dest, multipart_threshold="5MiB", delete="yes")
    assert _summary(agent("run", "mirror", check=True)) == (0, 6, 1, 0)
    assert _files(dest) == _files(src)


def test_keys_a_directory_cannot_hold_are_named_and_fail_the_run(s3_server, local_agent, tmp_path):
    # Keys are opaque bytes: "a/../b" must not land as "b", "x//y" not as "x/y". They are skipped, each
    # named, counted, and the run fails (the copy is incomplete); everything else is copied.
    s3_server.set_auth(False)
    bucket = f"odd-{uuid.uuid4().hex[:8]}"
    c = s3_server.client()
    c.create_bucket(Bucket=bucket)
    odd = ["a/../b", "x//y", "dir/", "./c", "d/.", ".hidden", "k/" + "z" * 300]
    for k in odd:
        c.put_object(Bucket=bucket, Key=k, Body=k.encode())
    c.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    c.put_object(Bucket=bucket, Key="b", Body=b"the real b")
    dest = tmp_path / "offsite-disk"
    agent = _configure(local_agent, tmp_path, "minio", dest, [("minio", s3_server)], buckets=bucket)
    p = agent("run", "mirror")
    assert p.returncode == 65, (p.returncode, p.stderr)
    for k in odd:
        assert f"{bucket}/{k} cannot be copied to {dest}/{bucket}" in p.stderr, (k, p.stderr)
    assert f"{len(odd)} key(s) could not be copied because {dest} cannot hold them" in p.stderr
    assert f"skipped {len(odd)} key(s) the destination cannot hold" in p.stdout + p.stderr
    assert _files(dest) == {f"{bucket}/plain": hashlib.sha256(b"plain").hexdigest(),
                            f"{bucket}/b": hashlib.sha256(b"the real b").hexdigest()}
    assert os.listdir(dest) == [bucket]  # nothing beside the bucket's directory
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_config_check_and_the_job_agree_on_local_sides(local_agent, tmp_path):
    # A local destination and a local source pass config check, and the job then runs with them (before
    # the store table config check accepted a local destination that the job refused).
    src, dest = tmp_path / "src", tmp_path / "dest"
    _write(src / "bkt" / "k", b"v")
    agent = _configure(local_agent, tmp_path, src, dest)
    assert _summary(agent("run", "mirror", check=True)) == (1, 0, 0, 0)
    # A source directory that does not exist: config check warns, the job fails naming it.
    missing = tmp_path / "gone"
    agent.configure(mirror={"source": missing, "destination": dest})
    p = agent("config", "check")
    assert re.search(rf"source: {re.escape(str(missing))}: No such file or directory", p.stdout + p.stderr), \
        p.stdout + p.stderr
    p = agent("run", "mirror")
    assert p.returncode != 0 and str(missing) in p.stderr, p.stderr
    # A relative path is neither a remote name nor a directory.
    agent.configure(mirror={"source": "rel/dir", "destination": dest})
    p = agent("config", "check")
    assert p.returncode != 0 and "is not a remote name" in p.stdout + p.stderr, p.stdout + p.stderr


def test_restore_mirror_from_a_local_offsite_copy(s3_server, local_agent, tmp_path):
    # The reverse direction with a local offsite side: the bucket comes back with its headers and user
    # metadata, without our bookkeeping, and a second restore finds everything equal without a copy.
    s3_server.set_auth(True)
    bucket = f"rst-{uuid.uuid4().hex[:8]}"
    c = s3_server.client()
    c.create_bucket(Bucket=bucket)
    c.put_object(Bucket=bucket, Key="a/1", Body=b"one", ContentType="text/plain", Metadata={"owner": "ops"})
    c.put_object(Bucket=bucket, Key="b/2", Body=os.urandom(1500 * 1024))
    c.put_object(Bucket=bucket, Key="zero", Body=b"")
    dest = tmp_path / "offsite-disk"
    agent = _configure(local_agent, tmp_path, "minio", dest, [("minio", s3_server)], buckets=bucket)
    agent("run", "mirror", check=True)
    expected = _contents(c, bucket, "")
    for k in expected:
        c.delete_object(Bucket=bucket, Key=k)

    p = agent("restore", "mirror", "--bucket", bucket)
    assert p.returncode == 0, p.stderr
    assert _contents(c, bucket, "") == expected
    head = c.head_object(Bucket=bucket, Key="a/1")
    assert head["ContentType"] == "text/plain" and head["Metadata"] == {"owner": "ops"}
    so = _log_offset(s3_server)
    assert _summary(agent("restore", "mirror", "--bucket", bucket, check=True)) == (0, 3, 0, 0)
    reqs = _requests_since(s3_server, so)
    assert reqs and _only_listings(reqs), reqs
