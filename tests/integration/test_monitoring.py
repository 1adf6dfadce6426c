"""The optional monitoring outputs of [agent]: healthcheck_url pings (healthchecks.io convention) and the
metrics_file Prometheus textfile, around real runs of the postgres job."""
import json
import os
import re
import socket
import time




def parse_textfile(text):
    """{metric: {job: value}} from a Prometheus text exposition, checking its shape on the way."""
    out, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind == "gauge"
            typed.add(name)
            continue
        if line.startswith("#") or not line:
            continue
        m = re.fullmatch(r'([a-z_]+)\{job="([a-z]+)"\} (\S+)', line)
        assert m, line
        assert m.group(1) in typed, f"{m.group(1)} has no TYPE line"
        out.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3))
    return out


def test_pings_and_metrics_on_success_and_failure(local_agent, pg_factory, ping_server, tmp_path):
    src = pg_factory()
    metrics = tmp_path / "node-exporter" / "skyforge.prom"
    metrics.parent.mkdir()
    local_agent.configure(
        agent={"healthcheck_url": ping_server.url + "/uuid-1/%j", "metrics_file": metrics},
        postgres={"conninfo": src.conninfo, "destination": local_agent.store / "postgres"})

    before = time.time()
    backup_id = local_agent("run", "postgres", check=True).stdout.strip()
    assert ping_server.paths() == [("GET", "/uuid-1/postgres/start"), ("GET", "/uuid-1/postgres")]
    m = parse_textfile(metrics.read_text())
    assert m["skyforge_job_last_success"] == {"postgres": 1}
    assert before - 1 <= m["skyforge_job_last_success_timestamp_seconds"]["postgres"] <= time.time()
    assert 0 < m["skyforge_job_last_duration_seconds"]["postgres"] < 120

    (b,) = json.loads(local_agent("list", "--json", check=True).stdout)
    assert b["id"] == backup_id and m["skyforge_job_last_bytes"]["postgres"] == b["bytes"]
    assert oct(metrics.stat().st_mode & 0o777) == "0o644"
    assert [f for f in os.listdir(metrics.parent)] == ["skyforge.prom"]  # no temp file left
    success_time = m["skyforge_job_last_success_timestamp_seconds"]["postgres"]

    ping_server.requests.clear()
    src.stop()
    p = local_agent("run", "postgres")
    assert p.returncode == 69, p.stderr
    (start, fail) = ping_server.requests
    assert start[:2] == ("GET", "/uuid-1/postgres/start")
    assert fail[:2] == ("POST", "/uuid-1/postgres/fail") and "cannot reach PostgreSQL" in fail[2]
    m = parse_textfile(metrics.read_text())
    assert m["skyforge_job_last_success"] == {"postgres": 0}
    # The last success stays what it was: alerts fire on its age.
    assert m["skyforge_job_last_success_timestamp_seconds"]["postgres"] == success_time
    assert m["skyforge_job_last_run_timestamp_seconds"]["postgres"] > success_time


def test_a_failing_healthcheck_never_fails_the_job(local_agent, pg_factory, ping_server):
    src = pg_factory()
    ping_server.status = 500
    local_agent.configure(agent={"healthcheck_url": ping_server.url + "/x"},
                          postgres={"conninfo": src.conninfo, "destination": local_agent.store / "postgres"})
    p = local_agent("run", "postgres", check=True)
    assert "healthcheck ping " + ping_server.url + "/x/start answered HTTP 500" in p.stderr
    assert len(ping_server.requests) == 2

    # Nothing listening at all.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    local_agent.configure(agent={"healthcheck_url": f"http://127.0.0.1:{port}/y"},
                          postgres={"conninfo": src.conninfo, "destination": local_agent.store / "postgres"})
    time.sleep(1.1)
    t = time.monotonic()
    p = local_agent("run", "postgres", check=True)
    assert time.monotonic() - t < 60
    assert f"healthcheck ping http://127.0.0.1:{port}/y failed" in p.stderr
