"""The Kubernetes Secrets client (agent/kube) against the HTTPS stand-in of the API (fixtures/kube.py),
driven through tests/helpers/kube-tool until the config job uses it."""
import base64
import copy
import json
import os
import shutil
import subprocess

import pytest

from fixtures.kube import free_port

EX_NOINPUT, EX_UNAVAILABLE, EX_NOPERM, EX_CONFIG = 66, 69, 77, 78
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "selfLink", "generation")


def expected_export(api, namespaces=None):
    """What the export must be: every stored Secret but service-account tokens, with apiVersion/kind, without
    server-set metadata, sorted by namespace then name."""
    items = []
    for (ns, name), s in sorted(api.secrets.items()):
        if s.get("type") == "kubernetes.io/service-account-token":
            continue
        if namespaces is not None and ns not in namespaces:
            continue
        s = copy.deepcopy(s)
        for f in SERVER_FIELDS:
            s["metadata"].pop(f, None)
        items.append({"apiVersion": "v1", "kind": "Secret", **s})
    return {"apiVersion": "v1", "kind": "List", "items": items}


def seed_cluster(api, n=250):
    """n ordinary Secrets spread over namespaces whose etcd order differs from the sorted order ("app-db/"
    sorts before "app/" as a key string), plus service-account tokens and Secrets with the metadata an
    export must keep."""
    namespaces = ["app", "app-db", "default", "kube-system"]
    for i in range(n - 3):
        ns = namespaces[i % len(namespaces)]
        api.seed(ns, f"secret-{i:03d}", {"password": f"pw-{i}", "blob": bytes(range(i % 256))})
    api.seed("app", "tls", {"tls.crt": "CERT", "tls.key": "KEY"}, type="kubernetes.io/tls",
             labels={"app.kubernetes.io/name": "gitea"},
             annotations={"kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Secret"}'})
    api.seed("app", "owned", {"k": "v"}, metadata={"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gitea", "uid": "6f3b", "controller": True}]})
    api.seed("kube-system", "k3s-serving", {"x": "y"}, immutable=True)
    for ns in namespaces:
        api.seed_service_account_token(ns)


def run_list(kube_tool, kubeconfig, *namespaces, limit=None):
    p = kube_tool(kubeconfig, "list", *namespaces, limit=limit)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_export_equals_seeded_secrets_across_pages(kube_api, kube_tool):
    seed_cluster(kube_api)
    export = run_list(kube_tool, kube_api.kubeconfig(), limit=100)

    assert export == expected_export(kube_api)
    assert len(export["items"]) == 250
    # Sorted by namespace, then name, although the server pages in etcd key order.
    keys = [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in export["items"]]
    assert keys == sorted(keys)
    assert keys.index(("app", "tls")) < keys.index(("app-db", "secret-001"))
    # Server fields are gone, what the user set stays.
    tls = next(s for s in export["items"] if s["metadata"]["name"] == "tls")
    assert tls["metadata"] == {"name": "tls", "namespace": "app", "labels": {"app.kubernetes.io/name": "gitea"},
                               "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                                               '{"kind":"Secret"}'}}
    owned = next(s for s in export["items"] if s["metadata"]["name"] == "owned")
    assert owned["metadata"]["ownerReferences"][0]["uid"] == "6f3b"
    assert all(s["type"] != "kubernetes.io/service-account-token" for s in export["items"])
    # 254 stored Secrets in pages of 100, following the continue tokens.
    pages = [r for r in kube_api.requests if r[1].startswith("/api/v1/secrets")]
    assert [p[1].split("&")[0] for p in pages] == ["/api/v1/secrets?limit=100"] * 3
    assert "continue=" not in pages[0][1] and all("continue=" in p[1] for p in pages[1:])
    assert kube_api.connections == 1  # one TLS connection, kept alive across the pages

    # The default page size gives the same export, and so does a second run (stable output).
    assert run_list(kube_tool, kube_api.kubeconfig()) == export
    p = kube_tool(kube_api.kubeconfig(), "list", limit=7)
    assert json.loads(p.stdout) == export


def test_expired_continue_token_restarts_the_listing(kube_api, kube_tool):
    seed_cluster(kube_api, n=250)
    kube_api.expire_continue = 1
    export = run_list(kube_tool, kube_api.kubeconfig(), limit=100)
    assert export == expected_export(kube_api)  # no page twice, none missing
    pages = [r[1] for r in kube_api.requests if r[1].startswith("/api/v1/secrets")]
    assert len(pages) == 5 and "continue=" not in pages[2]  # page 1, 410, then pages 1-3 again

    kube_api.requests.clear()
    kube_api.expire_continue = 100
    p = kube_tool(kube_api.kubeconfig(), "list", limit=100)
    assert p.returncode != 0 and "410: The provided continue parameter is too old" in p.stderr


def test_export_filters_namespaces(kube_api, kube_tool):
    seed_cluster(kube_api, n=40)
    export = run_list(kube_tool, kube_api.kubeconfig(), "kube-system", "app", "app", limit=5)
    assert export == expected_export(kube_api, namespaces={"app", "kube-system"})
    assert {s["metadata"]["namespace"] for s in export["items"]} == {"app", "kube-system"}
    assert not any(r[1].startswith("/api/v1/secrets") for r in kube_api.requests)

    p = kube_tool(kube_api.kubeconfig(), "list", "app", "nope")
    assert p.returncode == EX_CONFIG
    assert 'namespace "nope" does not exist in the cluster at ' + kube_api.url in p.stderr
    assert p.stdout == ""


def test_empty_cluster_exports_empty_list(kube_api, kube_tool):
    kube_api.seed_service_account_token("default")
    assert run_list(kube_tool, kube_api.kubeconfig()) == {"apiVersion": "v1", "kind": "List", "items": []}


def test_kubeconfig_with_file_references_and_token(kube_api, kube_tool):
    seed_cluster(kube_api, n=10)
    expected = expected_export(kube_api)
    assert run_list(kube_tool, kube_api.kubeconfig(shape="files")) == expected
    assert run_list(kube_tool, kube_api.kubeconfig(user="token")) == expected
    assert kube_api.requests[-1][2] == "system:admin-token"

    kc = kube_api.kubeconfig(user="token")
    kube_api.token = "rotated"
    p = kube_tool(kc, "list")
    assert p.returncode == EX_NOPERM
    assert 'refused the credentials of user "token"' in p.stderr


def test_client_cert_from_another_ca_gets_401(kube_api, kube_tool):
    kube_api.seed("default", "s", {"k": "v"})
    p = kube_tool(kube_api.kubeconfig(user="rogue"), "list")
    assert p.returncode == EX_NOPERM, p.stderr
    assert f'the Kubernetes API at {kube_api.url} refused the credentials of user "rogue"' in p.stderr
    assert "401: Unauthorized" in p.stderr
    assert p.stdout == ""


def test_user_without_rights_gets_403(kube_api, kube_tool):
    p = kube_tool(kube_api.kubeconfig(user="viewer"), "list")
    assert p.returncode == EX_NOPERM, p.stderr
    assert 'user "viewer" in' in p.stderr and "may not list secrets in all namespaces" in p.stderr
    assert 'User "viewer" cannot list resource "secrets"' in p.stderr


def test_wrong_ca_fails_tls_verification(kube_api, kube_tool):
    kc = kube_api.kubeconfig(ca="other-ca")
    p = kube_tool(kc, "list")
    assert p.returncode == EX_CONFIG, p.stderr
    assert f"TLS verification of the Kubernetes API at {kube_api.url} failed" in p.stderr
    assert f'check certificate-authority-data of cluster "default" in {kc}' in p.stderr
    # Only the cluster's CA counts: without one the system store is used, which does not know the test CA.
    p = kube_tool(kube_api.kubeconfig(ca=None), "list")
    assert p.returncode == EX_CONFIG and "TLS verification" in p.stderr


def test_api_down_asks_whether_k3s_runs(kube_api, kube_tool):
    url = f"https://127.0.0.1:{free_port()}"
    p = kube_tool(kube_api.kubeconfig(server=url), "list")
    assert p.returncode == EX_UNAVAILABLE
    assert f"cannot reach the Kubernetes API at {url}: connection refused — is k3s running?" in p.stderr


def test_missing_kubeconfig_asks_whether_k3s_is_installed(tmp_path, kube_tool):
    p = kube_tool(tmp_path / "k3s.yaml", "list")
    assert p.returncode == EX_CONFIG
    assert f"no kubeconfig at {tmp_path}/k3s.yaml — is k3s installed?" in p.stderr


def apply_lines(p):
    assert p.returncode == 0, p.stderr
    return sorted(p.stdout.splitlines())


def test_apply_creates_then_replaces(kube_api, kube_tool):
    seed_cluster(kube_api, n=20)
    kc = kube_api.kubeconfig()
    export = run_list(kube_tool, kc)
    before = expected_export(kube_api)

    # Onto an emptied cluster: everything is created, and reads back as it was.
    kube_api.clear()
    lines = apply_lines(kube_tool(kc, "apply", input=json.dumps(export)))
    assert lines == sorted(f"created {s['metadata']['namespace']}/{s['metadata']['name']}" for s in export["items"])
    assert expected_export(kube_api) == before
    assert {r[0] for r in kube_api.requests} == {"POST"}

    # Again: all exist (409) and are equal, so nothing is written.
    kube_api.requests.clear()
    lines = apply_lines(kube_tool(kc, "apply", input=json.dumps(export)))
    assert all(line.startswith("unchanged ") for line in lines) and len(lines) == len(export["items"])
    assert "PUT" not in {r[0] for r in kube_api.requests}

    # One changed in the cluster: the 409 path replaces it, with the resourceVersion it read.
    kube_api.seed("app", "tls", {"tls.crt": "NEW", "tls.key": "NEW"}, type="kubernetes.io/tls")
    rv = kube_api.get("app", "tls")["metadata"]["resourceVersion"]
    kube_api.requests.clear()
    lines = apply_lines(kube_tool(kc, "apply", input=json.dumps(export)))
    assert "replaced app/tls" in lines
    assert sum(line.startswith("replaced") for line in lines) == 1
    assert [r[1] for r in kube_api.requests if r[0] == "PUT"] == ["/api/v1/namespaces/app/secrets/tls"]
    assert kube_api.get("app", "tls")["metadata"]["resourceVersion"] != rv
    assert expected_export(kube_api) == before


def test_apply_dry_run_changes_nothing(kube_api, kube_tool):
    seed_cluster(kube_api, n=12)
    kc = kube_api.kubeconfig()
    export = run_list(kube_tool, kc)
    snapshot = copy.deepcopy(kube_api.secrets)

    kube_api.seed("app", "tls", {"tls.crt": "NEW"}, type="kubernetes.io/tls")
    del kube_api.secrets[("app", "owned")]
    changed = copy.deepcopy(kube_api.secrets)
    lines = apply_lines(kube_tool(kc, "apply", "--dry-run", input=json.dumps(export)))
    assert "replaced app/tls (dry run)" in lines and "created app/owned (dry run)" in lines
    assert kube_api.secrets == changed
    assert all("dryRun=All" in r[1] for r in kube_api.requests if r[0] in ("POST", "PUT"))
    assert snapshot != changed


def test_apply_into_missing_namespace_names_it(kube_api, kube_tool):
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "gone"},
         "data": {"k": base64.b64encode(b"v").decode()}}]}
    p = kube_tool(kube_api.kubeconfig(), "apply", input=json.dumps(doc))
    assert p.returncode == 69
    assert 'cannot create Secret gone/s: namespace "gone" does not exist' in p.stderr
    assert kube_api.secrets == {}


kubectl = shutil.which("kubectl")


@pytest.mark.skipif(not kubectl, reason="kubectl is not installed")
def test_export_is_accepted_by_kubectl(kube_api, kube_tool):
    """The recovery path without this tool: kubectl create/apply -f - of the (decrypted) export. kubectl
    needs OpenAPI for schema validation, which the stand-in does not serve, so validation is off; kubectl
    still decodes every item and maps it through the server's discovery."""
    seed_cluster(kube_api, n=15)
    kc = kube_api.kubeconfig()
    export = run_list(kube_tool, kc)
    before = expected_export(kube_api)
    names = sorted(f"secret/{s['metadata']['name']}" for s in export["items"])

    def k(*args):
        p = subprocess.run([kubectl, "--kubeconfig", kc, *args, "--validate=false", "-o", "name", "-f", "-"],
                           input=json.dumps(export), capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return sorted(p.stdout.split())

    kube_api.clear()
    assert k("create", "--dry-run=client") == names
    assert k("apply", "--dry-run=client") == names
    assert kube_api.secrets == {}
    assert k("create") == names
    # kubectl refreshes an existing last-applied annotation on create; everything else arrives as exported.
    after = expected_export(kube_api)
    for doc in (after, before):
        for s in doc["items"]:
            s["metadata"].get("annotations", {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    assert after == before
