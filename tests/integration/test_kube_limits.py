"""What a broken Kubernetes API server cannot do to the Secrets export: make the listing run forever with
a continue token that never changes (memory growing with every page), or keep the agent waiting after
SIGTERM. Against the HTTPS stand-in (fixtures/kube.py)."""
import os
import subprocess

import pytest

from fixtures.agent import AGENT, sigterm_and_wait
from fixtures.kube import KUBE_TOOL
from test_config_job import config_setup  # noqa: F401 (a fixture)


def test_list_with_a_repeated_continue_token_fails_clearly(kube_api):
    for i in range(3):
        kube_api.seed("default", f"s{i}", data={"k": "v"})
    kube_api.repeat_continue = True
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    try:
        p = subprocess.run([KUBE_TOOL, "--kubeconfig", kube_api.kubeconfig(), "--limit", "1", "list"],
                           capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        lists = [r for r in kube_api.requests if "/secrets" in r[1]]
        pytest.fail(f"the listing was still running after 60 s ({len(lists)} pages)")
    assert p.returncode == 76, p.stderr  # EX_PROTOCOL
    assert (f"the Kubernetes API at {kube_api.url} returned the same continue token twice to list secrets in "
            "all namespaces; the listing cannot finish (an API server bug?)") in p.stderr, p.stderr
    assert len([r for r in kube_api.requests if "/secrets" in r[1]]) == 2


def test_sigterm_stops_a_config_job_waiting_for_the_api(config_setup, kube_api):  # noqa: F811
    agent = config_setup[0]
    kube_api.stall_lists = True  # the list request is accepted and never answered
    env = dict(agent.env)
    p = subprocess.Popen([AGENT, "-c", str(agent.config_path), "run", "config"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    code, err = sigterm_and_wait(p, kube_api.list_seen, what="the config job")
    assert code == 75, err  # EX_TEMPFAIL
    assert f"cancelled while talking to the Kubernetes API at {kube_api.url}" in err, err
    # Nothing was stored: no manifest, so no backup.
    assert not (agent.store / "config").exists() or not list((agent.store / "config").glob("*.json"))


def test_export_written_piecewise_keeps_every_character(config_setup, kube_api):  # noqa: F811
    # The export is written straight from the parsed pages, escaping as it goes: strings that need
    # escaping come back exactly, as the API server stored them.
    agent, cluster, key = config_setup[0], config_setup[1], config_setup[2]
    odd = 'quote " backslash \\ slash / newline \n tab \t bell \x07 nul-free ünïcödé 日本 </script>'
    kube_api.seed("default", "odd", data={"k": odd.encode(), "empty": b""},
                  annotations={"a/b": odd, "empty": ""}, labels={"x": "y"})
    backup_id = agent("run", "config", check=True).stdout.strip()
    import json
    from test_config_job import zstd_tar
    _, tar = zstd_tar(agent.store / "config" / f"{backup_id}.tar.zst")
    enc = tar.extractfile("secrets/secrets.json.age").read()
    plain = subprocess.run(["age", "-d", "-i", str(key)], input=enc, check=True, capture_output=True).stdout
    lst = json.loads(plain)
    got = {s["metadata"]["name"]: s for s in lst["items"]}
    stored = kube_api.get("default", "odd")
    assert got["odd"]["data"] == stored["data"]
    assert got["odd"]["metadata"]["annotations"] == {"a/b": odd, "empty": ""}
    assert got["odd"]["metadata"]["labels"] == {"x": "y"}
    assert [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in lst["items"]] == sorted(
        (s["metadata"]["namespace"], s["metadata"]["name"]) for s in lst["items"])
