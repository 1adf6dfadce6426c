"""What a broken or hostile S3 server cannot do to the agent: make a listing run forever (a continuation
token that never changes, tokens that go round in a circle), make memory or time grow without bound (a
page of 200,000 keys, XML nested 200,000 deep), keep a download alive forever with a body that trickles,
or pass off a failure as success with "200 OK" and an <Error> body. And SIGTERM stops the agent promptly
while it waits on such a server. All against the scripted peer (fixtures/s3_peer.py): no real server
sends these replies on demand."""
import os
import subprocess
import time

import pytest

from fixtures.agent import AGENT, sigterm_and_wait, write_config
from test_s3 import TOOL

KiB = 1024
MiB = 1024 * 1024


def peer_conf(tmp_path, peer, **extra):
    """A remote config for tests/helpers/s3-tool pointing at the peer (which checks no signature)."""
    secret = tmp_path / "peer.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("secret\n")
    keys = {"name": "peer", "endpoint": peer.endpoint, "region": "us-east-1", "access_key_id": "AKID",
            "secret_access_key_file": secret, "path_style": "yes", "max_attempts": "4",
            "timeout_usec": "10000000"}
    keys.update({k: str(v) for k, v in extra.items()})
    path = tmp_path / "peer.conf"
    path.write_text("".join(f"{k} = {v}\n" for k, v in keys.items()))
    return str(path)


def run_tool(conf, *args, input=b"", env=None, timeout=60):
    """Runs s3-tool on bucket bkt; returns (CompletedProcess, seconds). A run still going after timeout is
    killed and reported as a failure of the test, with what it printed."""
    e = dict(os.environ)
    e.pop("JOURNAL_STREAM", None)
    e.update(env or {})
    t = time.monotonic()
    try:
        p = subprocess.run([TOOL, conf, "bkt", "", *map(str, args)], input=input, capture_output=True,
                           timeout=timeout, env=e)
    except subprocess.TimeoutExpired as x:
        pytest.fail(f"s3-tool {' '.join(map(str, args))} still running after {timeout} s; stderr: "
                    f"{(x.stderr or b'')[-2000:].decode(errors='replace')}")
    return p, time.monotonic() - t


def list_reply(handler, body):
    handler._reply(200, body.encode() if isinstance(body, str) else body, {"Content-Type": "application/xml"})


def page(keys, token=None):
    contents = "".join(f"<Contents><Key>{k}</Key><Size>1</Size><ETag>\"e\"</ETag>"
                       f"<LastModified>2026-11-25T14:25:46.000Z</LastModified></Contents>" for k in keys)
    more = f"<IsTruncated>true</IsTruncated><NextContinuationToken>{token}</NextContinuationToken>" \
        if token else "<IsTruncated>false</IsTruncated>"
    return f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>{more}{contents}</ListBucketResult>"


def is_listing(method, query):
    return method == "GET" and "list-type=2" in query


# --- listings that would never end ---

def test_listing_with_a_repeated_continuation_token_fails_clearly(s3_peer, tmp_path):
    # Every page says "there is more, continue with token T", whatever token it was asked with.
    s3_peer.respond = lambda h, m, path, q: is_listing(m, q) and (list_reply(h, page(["a", "b"], "T")) or True)
    p, took = run_tool(peer_conf(tmp_path, s3_peer), "list")
    err = p.stderr.decode()
    assert p.returncode == 76, err  # EX_PROTOCOL
    assert (f"S3 server at {s3_peer.endpoint} returned the same continuation token twice while listing "
            "bucket bkt; the listing cannot finish (a server bug?)") in err, err
    assert len(s3_peer.requests("GET", "list-type=2")) == 2 and took < 20


def test_listing_whose_tokens_go_round_in_a_circle_fails_clearly(s3_peer, tmp_path):
    # Tokens A, B, A, B, ...: never the same twice in a row, but no page ever brings a new key.
    def respond(h, m, path, q):
        if not is_listing(m, q):
            return False
        list_reply(h, page(["a"], "B" if "continuation-token=A" in q else "A"))
        return True
    s3_peer.respond = respond
    p, took = run_tool(peer_conf(tmp_path, s3_peer), "list")
    err = p.stderr.decode()
    assert p.returncode == 76, err
    assert "listing pages of bucket bkt in a row without a new key; the listing cannot finish" in err, err
    assert len(s3_peer.requests("GET", "list-type=2")) <= 105


# --- replies too large to follow ---

def test_listing_page_of_200000_keys_is_refused(s3_peer, tmp_path):
    body = page([f"k{i:06d}" for i in range(200_000)]).encode()  # S3 sends at most 1000 per page
    s3_peer.respond = lambda h, m, path, q: is_listing(m, q) and (list_reply(h, body) or True)
    p, took = run_tool(peer_conf(tmp_path, s3_peer), "list")
    err = p.stderr.decode()
    assert p.returncode == 76, err
    assert (f"S3 server at {s3_peer.endpoint} sent a ListObjectsV2 page of bucket bkt with more than 10000 "
            "entries (S3 sends at most 1000 per page); refusing it") in err, err
    assert p.stdout.count(b"\n") <= 10000


def test_listing_nested_200000_deep_is_refused_at_once(s3_peer, tmp_path):
    body = "<ListBucketResult>" + "<a>" * 200_000 + "</a>" * 200_000 + "</ListBucketResult>"
    s3_peer.respond = lambda h, m, path, q: is_listing(m, q) and (list_reply(h, body) or True)
    p, took = run_tool(peer_conf(tmp_path, s3_peer), "list")
    err = p.stderr.decode()
    assert p.returncode == 76, err
    assert (f"malformed ListObjectsV2 reply from {s3_peer.endpoint} (bucket bkt): it nests elements deeper "
            "than 32 levels") in err, err
    assert took < 20, took


# --- a body that trickles: a little progress every time, never the object ---

@pytest.mark.parametrize("command", ["get", "cat"])  # the store's reader thread, and GetObject into a sink
def test_get_whose_body_trickles_ends_within_retry_time(s3_peer, tmp_path, command):
    s3_peer.objects["/bkt/slow"] = os.urandom(64 * KiB)
    s3_peer.add("GET", "trickle", 0.05, times=1000)  # 20 bytes a second: above 1 B/s, far below 1 KiB/s
    conf = peer_conf(tmp_path, s3_peer, timeout_usec=2_000_000, retry_time_usec=6_000_000, max_attempts=100)
    p, took = run_tool(conf, command, "slow", timeout=90)
    err = p.stderr.decode()
    assert p.returncode == 69, err  # EX_UNAVAILABLE
    assert "(bucket bkt, key slow) stalled" in err and "less than 1 KiB/s for 2 s" in err, err
    assert 'gave up after' in err and 'retry_time for remote "peer" is 6 s' in err, err
    # Counted from the first stall over every resume: about timeout + retry_time, not per resume.
    assert 6 <= took < 20, took
    gets = s3_peer.requests("GET")
    assert 2 <= len(gets) <= 6, len(gets)


def test_get_that_stalls_after_real_progress_keeps_resuming(s3_peer, tmp_path):
    # Cuts after 1 MiB twice, then the rest: every resume made real progress, the object comes whole.
    data = os.urandom(3 * MiB)
    s3_peer.objects["/bkt/obj"] = data
    s3_peer.add("GET", "cut", 1 * MiB)
    s3_peer.add("GET", "cut", 1 * MiB)
    conf = peer_conf(tmp_path, s3_peer, timeout_usec=2_000_000, retry_time_usec=1_000_000)
    p, _ = run_tool(conf, "cat", "obj")
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == data


# --- "200 OK" with an <Error> body ---

def test_complete_multipart_answered_200_with_error_is_retried(s3_peer, tmp_path):
    data = os.urandom(11 * MiB)
    s3_peer.add("POST", None)  # CreateMultipartUpload goes through
    s3_peer.add("POST", "error200", "InternalError")  # the first CompleteMultipartUpload "succeeds" with it
    conf = peer_conf(tmp_path, s3_peer)
    p, _ = run_tool(conf, "put", "big", input=data, env={"SKYFORGE_S3_PART_SIZE": str(5 * MiB)})
    assert p.returncode == 0, p.stderr.decode()
    completes = s3_peer.requests("POST", "uploadId=")
    assert len(completes) == 2
    assert s3_peer.objects["/bkt/big"] == data


def test_complete_multipart_that_keeps_answering_200_with_error_fails(s3_peer, tmp_path):
    s3_peer.add("POST", None)
    s3_peer.add("POST", "error200", "InternalError", times=10)
    p, _ = run_tool(peer_conf(tmp_path, s3_peer), "put", "big", input=os.urandom(11 * MiB),
                    env={"SKYFORGE_S3_PART_SIZE": str(5 * MiB)})
    err = p.stderr.decode()
    assert p.returncode == 69, err
    assert f"InternalError from {s3_peer.endpoint} (bucket bkt, key big): the server kept failing after 4 " \
           "attempts" in err, err
    assert "/bkt/big" not in s3_peer.objects
    assert len(s3_peer.requests("POST", "uploadId=")) == 4
    assert len(s3_peer.requests("DELETE", "uploadId=")) == 1  # and the upload was aborted


def test_delete_objects_answered_200_with_error_is_not_success(s3_peer, tmp_path):
    conf = peer_conf(tmp_path, s3_peer)
    for k in ("a", "b"):
        s3_peer.objects[f"/bkt/{k}"] = b"x"
    # Retried like a 5xx, then done.
    s3_peer.add("POST", "error200", "InternalError")
    p, _ = run_tool(conf, "delete-many", input=b"a\n")
    assert p.returncode == 0, p.stderr.decode()
    assert len(s3_peer.requests("POST", "delete")) == 2 and "/bkt/a" not in s3_peer.objects
    # A code no retry can fix: reported at once, not taken for "deleted".
    s3_peer.add("POST", "error200", "AccessDenied")
    p, _ = run_tool(conf, "delete-many", input=b"b\n")
    err = p.stderr.decode()
    assert p.returncode == 77, err
    assert f"AccessDenied from {s3_peer.endpoint} (bucket bkt)" in err, err
    assert "/bkt/b" in s3_peer.objects


# --- SIGTERM while the agent waits on the server ---

@pytest.fixture
def peer_agent(tmp_path, s3_peer, agent_bin):
    """An agent whose postgres destination is bucket bkt on the peer."""
    secret = tmp_path / "agent-peer.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("secret\n")

    def start(*args, **remote):
        keys = {"endpoint": s3_peer.endpoint, "region": "us-east-1", "access_key_id": "AKID",
                "secret_access_key_file": secret, "path_style": "yes"}
        keys.update(remote)
        conf = write_config(tmp_path / "agent.conf", {
            "agent": {"state_dir": tmp_path / "state", "work_dir": tmp_path / "work"},
            "remote.peer": keys,
            "postgres": {"destination": "peer:bkt/postgres/", "conninfo": "host=127.0.0.1 port=1"}})
        env = dict(os.environ, SKYFORGE_NO_PROGRESS="1")
        env.pop("JOURNAL_STREAM", None)
        return subprocess.Popen([AGENT, "-c", str(conf), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env)
    return start


def test_sigterm_stops_a_listing_that_waits_for_a_reply(s3_peer, peer_agent):
    # The server accepts the listing and never answers: the agent waits up to timeout (60 s) per attempt.
    def respond(h, m, path, q):
        if is_listing(m, q):
            s3_peer.stopping.wait(120)
            return True
        return False
    s3_peer.respond = respond
    code, err = sigterm_and_wait(peer_agent("verify", "postgres"), s3_peer.seen)
    assert code == 75, err  # EX_TEMPFAIL
    assert "cancelled during GET to S3 endpoint" in err, err


def test_sigterm_stops_retries_and_their_backoff(s3_peer, peer_agent):
    # Every listing fails with 503: retried with backoff, max_attempts 100, retry_time 300 s.
    s3_peer.add("GET", "status", (503, "SlowDown"), times=10000)
    code, err = sigterm_and_wait(peer_agent("verify", "postgres", max_attempts=100), s3_peer.seen)
    assert code == 75, err
    assert "cancelled during GET to S3 endpoint" in err, err
