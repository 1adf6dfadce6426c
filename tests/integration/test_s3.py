"""The S3 backend (agent/store/s3) against moto_server with signature verification, boto3 as the
independent client, and a scripted peer for faults moto will not produce. Driven through
tests/helpers/s3-tool, which opens the store with store_s3_open()."""
import base64
import hashlib
import os
import signal
import subprocess
import time

import pytest

from fixtures.agent import BUILDDIR

TOOL = os.path.join(BUILDDIR, "tests", "helpers", "s3-tool")
MiB = 1024 * 1024


def tool(conf, bucket, prefix, *args, input=b"", env=None, timeout=300):
    e = dict(os.environ)
    e.pop("JOURNAL_STREAM", None)
    e.update(env or {})
    return subprocess.run([TOOL, conf, bucket, prefix, *map(str, args)], input=input, capture_output=True,
                          timeout=timeout, env=e)


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr.decode(errors='replace')}"
    return p


def sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def conf(s3_server, tmp_path):
    return s3_server.write_remote(tmp_path / "remote.conf")


# --- signatures (verification on) ---

def test_right_key_is_accepted_and_wrong_key_refused_with_clear_error(s3_server, s3_bucket, conf, tmp_path):
    # The server really verifies: boto3 with a wrong secret is refused too.
    with pytest.raises(Exception, match="SignatureDoesNotMatch"):
        s3_server.client(secret="wrong-secret").list_objects_v2(Bucket=s3_bucket)

    ok(tool(conf, s3_bucket, "", "put", "plain.txt", input=b"signed right"))
    assert ok(tool(conf, s3_bucket, "", "get", "plain.txt")).stdout == b"signed right"
    assert ok(tool(conf, s3_bucket, "", "list")).stdout.decode().startswith("plain.txt\t12\t")

    bad = s3_server.write_remote(tmp_path / "bad.conf", secret="wrong-secret")
    for args in (("list",), ("put", "x", ), ("stat", "plain.txt")):
        p = tool(bad, s3_bucket, "", *args, input=b"data")
        err = p.stderr.decode()
        assert p.returncode == 77, err
        if args[0] != "stat":  # HEAD replies carry no body, so no S3 code to quote
            assert (f"SignatureDoesNotMatch from {s3_server.endpoint} (bucket {s3_bucket}"
                    in err), err
        assert 'check secret_access_key_file for remote "minio"' in err or "AccessDenied" in err, err
    # Nothing was written with the wrong key.
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert keys == ["plain.txt"]


def test_secret_file_readable_by_others_is_refused(s3_server, s3_bucket, conf):
    os.chmod(conf + ".secret", 0o644)
    p = tool(conf, s3_bucket, "", "list")
    assert p.returncode == 78
    err = p.stderr.decode()
    assert 'remote "minio": secret file' in err and "accessible by group or others" in err, err
    assert "chmod 600" in err, err


def test_secret_from_credentials_directory(s3_server, s3_bucket, tmp_path):
    conf = s3_server.write_remote(tmp_path / "c.conf")
    lines = [l for l in open(conf) if not l.startswith("secret_access_key_file")]
    open(conf, "w").writelines(lines)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "minio").write_text(s3_server.secret_key + "\n")
    ok(tool(conf, s3_bucket, "", "put", "c.txt", input=b"cred", env={"CREDENTIALS_DIRECTORY": str(creds)}))
    p = tool(conf, s3_bucket, "", "list", env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert p.returncode == 78 and "no secret key" in p.stderr.decode()


def test_unreachable_endpoint_exits_unavailable(s3_server, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = s3_server.write_remote(tmp_path / "down.conf", endpoint=f"http://127.0.0.1:{port}", max_attempts=2)
    p = tool(conf, "skyforge-backups", "", "list")
    assert p.returncode == 69
    assert f"cannot reach S3 endpoint http://127.0.0.1:{port}" in p.stderr.decode()


# --- data round trips (verification on, plain keys) ---

@pytest.mark.parametrize("size", [0, 1, 5 * MiB - 1, 5 * MiB + 1])
def test_objects_round_trip_with_boto3_both_ways(s3_server, s3_bucket, conf, size):
    data = os.urandom(size)
    env = {"SKYFORGE_S3_PART_SIZE": str(5 * MiB)}  # 5 MiB + 1 becomes a two-part upload
    ok(tool(conf, s3_bucket, "pg/", "put", f"obj-{size}", input=data, env=env))
    got = s3_server.client().get_object(Bucket=s3_bucket, Key=f"pg/obj-{size}")
    assert sha(got["Body"].read()) == sha(data)
    if size > 5 * MiB:
        assert got["ETag"].strip('"').endswith("-2")
    else:  # one PutObject: the server keeps (and checked) the SHA-256 the agent sent with it
        head = s3_server.client().head_object(Bucket=s3_bucket, Key=f"pg/obj-{size}", ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    s3_server.client().put_object(Bucket=s3_bucket, Key=f"pg/boto-{size}", Body=data)
    assert sha(ok(tool(conf, s3_bucket, "pg/", "get", f"boto-{size}")).stdout) == sha(data)
    st = ok(tool(conf, s3_bucket, "pg/", "stat", f"boto-{size}")).stdout.decode().split("\t")
    assert st[0] == f"boto-{size}" and int(st[1]) == size


def test_multipart_stream_of_200mib_reads_back_equal(s3_server, s3_bucket, conf):
    data = os.urandom(200 * MiB)
    ok(tool(conf, s3_bucket, "", "put", "dump.sql.zst", input=data))
    c = s3_server.client()
    got = c.get_object(Bucket=s3_bucket, Key="dump.sql.zst")
    assert got["ETag"].strip('"').endswith("-25")  # 8 MiB parts: a real multipart upload
    assert sha(got["Body"].read()) == sha(data)
    # Every part carried its SHA-256 (the digest it is signed with): the server keeps the composite.
    digests = b"".join(hashlib.sha256(data[i:i + 8 * MiB]).digest() for i in range(0, len(data), 8 * MiB))
    attrs = c.get_object_attributes(Bucket=s3_bucket, Key="dump.sql.zst", ObjectAttributes=["Checksum"])
    want = base64.b64encode(hashlib.sha256(digests).digest()).decode()
    assert attrs["Checksum"]["ChecksumSHA256"].split("-")[0] == want
    assert sha(ok(tool(conf, s3_bucket, "", "get", "dump.sql.zst")).stdout) == sha(data)
    # Resuming from an offset reads the tail only.
    tail = ok(tool(conf, s3_bucket, "", "get", "dump.sql.zst", 190 * MiB + 7)).stdout
    assert tail == data[190 * MiB + 7:]
    assert c.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_client_api_metadata_and_batch_delete(s3_server, s3_bucket, conf):
    ok(tool(conf, s3_bucket, "", "put-meta", "m.json", "application/json", "sha256=abc", "job=postgres",
            input=b"{}"))
    h = s3_server.client().head_object(Bucket=s3_bucket, Key="m.json")
    assert h["ContentType"] == "application/json"
    assert h["Metadata"] == {"sha256": "abc", "job": "postgres"}
    out = ok(tool(conf, s3_bucket, "", "head", "m.json")).stdout.decode()
    assert "meta:sha256=abc" in out and "content-type=application/json" in out
    assert s3_bucket in ok(tool(conf, s3_bucket, "", "buckets")).stdout.decode().split()
    assert ok(tool(conf, s3_bucket, "", "cat", "m.json")).stdout == b"{}"


# --- keys and listings (verification off: moto 5.2.1 refuses correct signatures on these) ---

ODD_KEYS = [
    "with space.txt", "plus+sign", "percent%20literal", "amp&eq=", "tilde~user", "hash#tag",
    "ünïcödé/日本語 ファイル.txt", "a/" * 60 + "deep-" + "x" * 200, "  leading and trailing  ",
]


def test_odd_keys_round_trip(s3_server, s3_bucket, conf):
    s3_server.set_auth(False)
    c = s3_server.client()
    for i, k in enumerate(ODD_KEYS):
        ok(tool(conf, s3_bucket, "odd/", "put", k, input=f"body {i}".encode()))
        assert c.get_object(Bucket=s3_bucket, Key="odd/" + k)["Body"].read() == f"body {i}".encode()
        assert ok(tool(conf, s3_bucket, "odd/", "get", k)).stdout == f"body {i}".encode()
    listed = [l.split("\t")[0] for l in ok(tool(conf, s3_bucket, "odd/", "list")).stdout.decode().splitlines()]
    assert listed == sorted(ODD_KEYS, key=lambda s: s.encode())
    for k in ODD_KEYS:
        ok(tool(conf, s3_bucket, "odd/", "rm", k))
    assert c.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
    ok(tool(conf, s3_bucket, "odd/", "rm", "never-existed"))  # missing is not an error
    assert tool(conf, s3_bucket, "odd/", "stat", "never-existed").returncode == 66


def test_listing_over_2500_keys_comes_back_complete_and_sorted(s3_server, s3_bucket, conf):
    s3_server.set_auth(False)
    c = s3_server.client()
    keys = [f"k/{(i * 7919) % 2600:05d}-{'ABab_'[i % 5]}" for i in range(2600)]
    for k in keys:
        c.put_object(Bucket=s3_bucket, Key=k, Body=b"")
    c.put_object(Bucket=s3_bucket, Key="other/outside-prefix", Body=b"")
    lines = ok(tool(conf, s3_bucket, "k/", "list")).stdout.decode().splitlines()
    names = [l.split("\t")[0] for l in lines]
    assert names == sorted(k[2:] for k in keys)  # three pages, relative to the prefix, in byte order
    names = ok(tool(conf, s3_bucket, "", "list", "k/0000")).stdout.decode().splitlines()
    assert [n.split("\t")[0] for n in names] == sorted(k for k in keys if k.startswith("k/0000"))
    # Batch delete of more than 1000 keys (two DeleteObjects calls).
    ok(tool(conf, s3_bucket, "", "delete-many", input="\n".join(keys).encode()))
    assert [o["Key"] for o in c.list_objects_v2(Bucket=s3_bucket)["Contents"]] == ["other/outside-prefix"]


# --- interrupted uploads ---

def test_interrupted_upload_leaves_no_multipart_upload_after_cleanup(s3_server, s3_bucket, conf):
    s3_server.set_auth(False)  # ListMultipartUploads with prefix= carries a '/'
    c = s3_server.client()
    e = dict(os.environ)
    e.pop("JOURNAL_STREAM", None)
    p = subprocess.Popen([TOOL, conf, s3_bucket, "postgres/", "put", "killed.sql.zst"], stdin=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=e)
    p.stdin.write(os.urandom(20 * MiB))
    p.stdin.flush()
    deadline = time.monotonic() + 60
    uploads = []
    while time.monotonic() < deadline:
        uploads = c.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
        if uploads and len(c.list_parts(Bucket=s3_bucket, Key=uploads[0]["Key"],
                                        UploadId=uploads[0]["UploadId"]).get("Parts", [])) >= 2:
            break
        time.sleep(0.2)
    assert uploads, "the upload never started"
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdin.close()
    p.stderr.close()

    assert [u["Key"] for u in c.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]] == ["postgres/killed.sql.zst"]
    # (moto reports every upload as initiated in 2010, so the age limit is tested with the peer below.)
    assert ok(tool(conf, s3_bucket, "postgres/", "cleanup", 0)).stdout == b"1\n"
    assert c.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert "Contents" not in c.list_objects_v2(Bucket=s3_bucket)


def test_writer_freed_without_commit_aborts_its_upload(s3_server, s3_bucket, conf):
    s3_server.set_auth(False)
    c = s3_server.client()
    ok(tool(conf, s3_bucket, "postgres/", "put-abort", "aborted", input=os.urandom(17 * MiB)))
    assert c.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert "Contents" not in c.list_objects_v2(Bucket=s3_bucket)


# --- faults a real server will not produce (scripted peer) ---

@pytest.fixture
def peer_conf(s3_server, s3_peer, tmp_path):
    return s3_server.write_remote(tmp_path / "peer.conf", endpoint=s3_peer.endpoint, max_attempts=4)


def test_get_resumes_with_range_after_connection_drops_mid_body(s3_peer, peer_conf):
    data = os.urandom(3 * MiB + 5)
    s3_peer.objects["/bkt/obj"] = data
    s3_peer.add("GET", "cut", 1 * MiB)
    s3_peer.add("GET", "cut", 100)
    assert sha(ok(tool(peer_conf, "bkt", "", "get", "obj")).stdout) == sha(data)
    gets = [h for m, _, _, h in s3_peer.log if m == "GET"]
    assert len(gets) == 3
    assert gets[1]["Range"] == f"bytes={1 * MiB}-{len(data) - 1}"
    assert gets[2]["Range"] == f"bytes={1 * MiB + 100}-{len(data) - 1}"
    assert all(g.get("If-Match") == '"%s"' % hashlib.md5(data).hexdigest() for g in gets)

    # The client API (GetObject into a sink) resumes the same way, without a Range at first.
    s3_peer.log.clear()
    s3_peer.add("GET", "cut", 12345)
    assert sha(ok(tool(peer_conf, "bkt", "", "cat", "obj")).stdout) == sha(data)
    gets = [h for m, _, _, h in s3_peer.log if m == "GET"]
    assert "Range" not in gets[0] and gets[1]["Range"] == "bytes=12345-"


def test_reader_sends_one_get_per_object_and_stops_when_closed(s3_peer, peer_conf):
    data = os.urandom(20 * MiB + 3)
    s3_peer.objects["/bkt/big"] = data
    assert sha(ok(tool(peer_conf, "bkt", "", "get", "big")).stdout) == sha(data)
    gets = [h for m, _, _, h in s3_peer.log if m == "GET"]
    assert len(gets) == 1 and gets[0]["Range"] == f"bytes=0-{len(data) - 1}"
    s3_peer.log.clear()
    assert ok(tool(peer_conf, "bkt", "", "get", "big", 7 * MiB)).stdout == data[7 * MiB:]
    gets = [h for m, _, _, h in s3_peer.log if m == "GET"]
    assert len(gets) == 1 and gets[0]["Range"] == f"bytes={7 * MiB}-{len(data) - 1}"

    # A reader closed early (the consumer went away) ends its download instead of hanging.
    # SIGPIPE ignored: the write fails with EPIPE and the tool frees the reader mid-download.
    p = subprocess.Popen([TOOL, peer_conf, "bkt", "", "get", "big"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGPIPE, signal.SIG_IGN))
    assert len(p.stdout.read(MiB)) == MiB
    p.stdout.close()
    assert p.wait(timeout=20) == 74  # EX_IOERR
    assert p.stderr.read() == b"s3-tool: Broken pipe\n"  # and no sanitizer report of a leak or race


def test_retries_on_5xx_slowdown_and_reset(s3_peer, peer_conf):
    s3_peer.add("PUT", "status", (503, "SlowDown"))
    s3_peer.add("PUT", "reset")
    s3_peer.add("PUT", "status", (500, "InternalError"))
    ok(tool(peer_conf, "bkt", "", "put", "r.txt", input=b"retried"))
    assert s3_peer.objects["/bkt/r.txt"] == b"retried"
    assert len([1 for m, *_ in s3_peer.log if m == "PUT"]) == 4

    s3_peer.log.clear()
    s3_peer.add("GET", "status", (429, "SlowDown"))
    s3_peer.add("HEAD", "status", (503, "SlowDown"))
    assert ok(tool(peer_conf, "bkt", "", "get", "r.txt")).stdout == b"retried"


def test_persistent_faults_fail_clearly_within_the_retry_budget(s3_peer, peer_conf):
    s3_peer.add("PUT", "status", (503, "SlowDown"), times=10)
    t = time.monotonic()
    p = tool(peer_conf, "bkt", "", "put", "never", input=b"x")
    assert time.monotonic() - t < 20
    assert p.returncode == 69
    err = p.stderr.decode()
    assert f"SlowDown from {s3_peer.endpoint} (bucket bkt, key never)" in err
    assert "after 4 attempts" in err
    assert len([1 for m, *_ in s3_peer.log if m == "PUT"]) == 4


def test_retries_stop_at_retry_time_before_max_attempts(s3_server, s3_peer, tmp_path):
    conf = s3_server.write_remote(tmp_path / "slow.conf", endpoint=s3_peer.endpoint, max_attempts=100,
                                  retry_time_usec=3_000_000)
    s3_peer.add("PUT", "status", (503, "SlowDown"), times=100)
    t = time.monotonic()
    p = tool(conf, "bkt", "", "put", "never", input=b"x")
    took = time.monotonic() - t
    assert p.returncode == 69
    puts = len([1 for m, *_ in s3_peer.log if m == "PUT"])
    assert 2 <= puts < 100 and took < 6
    err = p.stderr.decode()
    assert f"SlowDown from {s3_peer.endpoint} (bucket bkt, key never)" in err
    assert f"after {puts} attempts" in err and 'retry_time for remote "minio" is 3 s' in err


def test_cleanup_spares_uploads_younger_than_min_age(s3_peer, peer_conf):
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    s3_peer.uploads_xml = (
        "<ListMultipartUploadsResult><Bucket>bkt</Bucket><IsTruncated>false</IsTruncated>"
        "<Upload><Key>p/old</Key><UploadId>id-old</UploadId><Initiated>2020-01-01T00:00:00.000Z</Initiated></Upload>"
        f"<Upload><Key>p/new</Key><UploadId>id-new</UploadId><Initiated>{now}</Initiated></Upload>"
        "</ListMultipartUploadsResult>")
    assert ok(tool(peer_conf, "bkt", "p/", "cleanup", 3600)).stdout == b"1\n"
    deletes = [(path, q) for m, path, q, _ in s3_peer.log if m == "DELETE"]
    assert deletes == [("/bkt/p/old", "uploadId=id-old")]
    lists = [q for m, _, q, _ in s3_peer.log if m == "GET"]
    assert lists == ["prefix=p%2F&uploads="]


def test_auth_errors_are_not_retried(s3_peer, peer_conf):
    s3_peer.add("PUT", "status", (403, "SignatureDoesNotMatch"), times=5)
    p = tool(peer_conf, "bkt", "", "put", "denied", input=b"x")
    assert p.returncode == 77
    assert len([1 for m, *_ in s3_peer.log if m == "PUT"]) == 1


# --- parallel parts and injected faults (a proxy in front of moto, verification on) ---

def test_parts_upload_in_parallel_with_bounded_buffers(s3_server, s3_bucket, s3_fault_proxy, tmp_path):
    proxy = s3_fault_proxy(rate=0)
    conf = s3_server.write_remote(tmp_path / "p.conf", endpoint=proxy.endpoint)
    data = os.urandom(48 * MiB)
    ok(tool(conf, s3_bucket, "", "put", "par", input=data))
    # Three workers: more than one part in flight, never more than three.
    assert 2 <= proxy.max_parts_in_flight <= 3, proxy.max_parts_in_flight
    got = s3_server.client().get_object(Bucket=s3_bucket, Key="par")
    assert got["ETag"].strip('"').endswith("-6") and sha(got["Body"].read()) == sha(data)

    proxy.max_parts_in_flight = 0
    ok(tool(conf, s3_bucket, "", "put", "serial", input=data, env={"SKYFORGE_S3_WORKERS": "1"}))
    assert proxy.max_parts_in_flight == 1


def test_round_trip_through_10_percent_faults(s3_server, s3_bucket, s3_fault_proxy, tmp_path):
    proxy = s3_fault_proxy(rate=0.10, seed=4)
    conf = s3_server.write_remote(tmp_path / "f.conf", endpoint=proxy.endpoint, max_attempts=6)
    data = os.urandom(45 * MiB + 3)
    ok(tool(conf, s3_bucket, "", "put", "faulty", input=data))
    assert sha(ok(tool(conf, s3_bucket, "", "get", "faulty")).stdout) == sha(data)
    small = [os.urandom(1000 + i) for i in range(20)]
    for i, b in enumerate(small):
        ok(tool(conf, s3_bucket, "", "put", f"s-{i:02d}", input=b))
    # A bucket-root listing: moto 5.2.1 refuses correct signatures on prefix= values with a '/'.
    listed = ok(tool(conf, s3_bucket, "", "list")).stdout.decode().splitlines()
    assert [l.split("\t")[0] for l in listed] == ["faulty"] + [f"s-{i:02d}" for i in range(20)]
    for i, b in enumerate(small):
        assert ok(tool(conf, s3_bucket, "", "get", f"s-{i:02d}")).stdout == b
    assert all(proxy.faults[f] > 0 for f in proxy.faults), proxy.faults
    assert s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_all_requests_failing_ends_within_the_retry_budget(s3_server, s3_bucket, s3_fault_proxy, tmp_path):
    proxy = s3_fault_proxy(rate=1.0, seed=2)
    conf = s3_server.write_remote(tmp_path / "d.conf", endpoint=proxy.endpoint, max_attempts=4)
    for args, data in ((("put", "big"), os.urandom(20 * MiB)), (("put", "small"), b"x"), (("list",), b"")):
        t = time.monotonic()
        p = tool(conf, s3_bucket, "", *args, input=data, timeout=120)
        took = time.monotonic() - t
        err = p.stderr.decode()
        assert p.returncode == 69, err
        assert took < 30, took
        assert "after 4 attempts" in err and proxy.endpoint in err, err
    assert proxy.requests <= 3 * 4 + 4  # bounded: max_attempts per call (+ aborts of the upload)


# --- TLS (moto over https with a certificate from a private CA) ---

def test_tls_needs_the_ca_and_verifies_always(s3_tls_server, tmp_path):
    srv = s3_tls_server
    srv.set_auth(True)
    srv.client().create_bucket(Bucket="tls")
    data = os.urandom(20 * MiB + 1)  # multipart: three part workers, each its own TLS connection

    # Without ca_file the private CA is unknown: refused, with the fix.
    plain = srv.write_remote(tmp_path / "plain.conf")
    p = tool(plain, "tls", "", "put", "x", input=b"x")
    assert p.returncode == 69
    assert f"TLS with {srv.endpoint} failed" in p.stderr.decode()
    assert 'set ca_file for remote "minio"' in p.stderr.decode()

    conf = srv.write_remote(tmp_path / "ca.conf", ca_file=srv.ca_file)
    ok(tool(conf, "tls", "", "put", "big", input=data))
    assert sha(srv.client().get_object(Bucket="tls", Key="big")["Body"].read()) == sha(data)
    assert sha(ok(tool(conf, "tls", "", "get", "big")).stdout) == sha(data)

    # tls_verify = no is for test endpoints: it works and says so on every run.
    insecure = srv.write_remote(tmp_path / "insecure.conf", tls_verify="no")
    p = ok(tool(insecure, "tls", "", "stat", "big"))
    assert "TLS verification is off" in p.stderr.decode()


def test_tls_sessions_are_shared_between_threads(s3_server, s3_bucket, tls_proxy, tmp_path):
    conf = s3_server.write_remote(tmp_path / "tls.conf", endpoint=tls_proxy.endpoint, ca_file=tls_proxy.ca_file)
    data = os.urandom(40 * MiB)
    # 8 parts of 5 MiB over one part worker (a thread with a client of its own). moto answers every request
    # with "Connection: close", so each of the 10 requests (create, 8 parts, complete) makes a connection.
    # Without a shared cache the worker's first connection is a full handshake; shared, it resumes the
    # session of the first one. One worker makes the order fixed: with several, two workers may start on
    # the same single-use TLS 1.3 ticket at once and one of them loses, more often the busier the machine.
    env = {"SKYFORGE_S3_PART_SIZE": str(5 * MiB), "SKYFORGE_S3_WORKERS": "1"}
    ok(tool(conf, s3_bucket, "", "put", "big", input=data, env=env))
    assert sha(s3_server.client().get_object(Bucket=s3_bucket, Key="big")["Body"].read()) == sha(data)
    assert tls_proxy.handshakes == [False] + [True] * 9, tls_proxy.handshakes

    # A reader: HEAD on the store's client, the GET on its thread's clone, resumed.
    tls_proxy.handshakes.clear()
    assert sha(ok(tool(conf, s3_bucket, "", "get", "big")).stdout) == sha(data)
    assert tls_proxy.handshakes == [False, True]
