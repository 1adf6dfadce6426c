"""`config check --connect`: reach what the configuration names and say what works, one line per check,
against a real PostgreSQL, moto_server with signature checks and IAM users, the Kubernetes stand-in and
age identities made by age-keygen."""
import os
import re

import pytest

from fixtures.age import age_keypair

EX_UNAVAILABLE, EX_NOPERM, EX_CONFIG = 69, 77, 78


def secret_file(tmp_path, name, secret):
    path = tmp_path / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return path


def remote(srv, tmp_path, name, key=None, secret=None):
    return {"endpoint": srv.endpoint, "region": "us-east-1", "access_key_id": key or srv.access_key,
            "secret_access_key_file": secret_file(tmp_path, f"{name}.secret", secret or srv.secret_key),
            "path_style": "yes", "max_attempts": 2}


def lines(p):
    """[(status, what, detail)] of the report on stdout, in order."""
    out = []
    for line in p.stdout.splitlines():
        m = re.match(r"^(ok|FAIL|skip) +([^:]+): (.*)$", line)
        assert m, f"not a report line: {line!r}"
        out.append(m.groups())
    return out


def find(report, what, role=""):
    """(status, detail) of the one line about what (and role, e.g. "(postgres destination)")."""
    found = [(st, d) for st, w, d in report if w == what and role in d]
    assert len(found) == 1, (what, role, report)
    return found[0]


def bucket_keys(srv, bucket):
    return [o["Key"] for o in srv.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture
def setup(local_agent, pg, s3_server, s3_bucket, s3_offsite, kube_api, tmp_path):
    s3_server.set_auth(True)
    s3_offsite.set_auth(True)
    offsite_bucket = s3_bucket[:40] + "-off"
    s3_offsite.client().create_bucket(Bucket=offsite_bucket)
    key, recipient = age_keypair(tmp_path, "age.key")
    manifests = tmp_path / "k8s"
    manifests.mkdir()

    def configure(minio=None, conninfo=None, kubeconfig=None, identity=None):
        local_agent.configure(
            remote__minio=minio or remote(s3_server, tmp_path, "minio"),
            remote__offsite=remote(s3_offsite, tmp_path, "offsite"),
            postgres={"conninfo": conninfo or pg.conninfo, "destination": f"minio:{s3_bucket}",
                      "recipients": recipient, "identity_file": identity or key},
            mirror={"source": "minio", "buckets": s3_bucket, "destination": f"offsite:{offsite_bucket}"},
            config={"manifests": manifests, "kubeconfig": kubeconfig or kube_api.kubeconfig(),
                    "recipients": recipient, "identity_file": identity or key,
                    "destination": local_agent.store / "config"})
        return local_agent

    configure.bucket, configure.offsite_bucket, configure.key = s3_bucket, offsite_bucket, key
    return configure


def test_connect_reports_what_works(setup, pg, s3_server, s3_offsite, kube_api):
    agent = setup()
    kube_api.requests.clear()
    p = agent("config", "check", "--connect")
    assert p.returncode == 0, p.stdout + p.stderr
    r = lines(p)
    assert [st for st, _, _ in r] == ["ok"] * 8, p.stdout
    assert re.match(rf"host=127\.0\.0\.1 port={pg.port} user=postgres, PostgreSQL 1\d\.\d+ .*pg_dumpall 1\d found ",
                    find(r, "postgres")[1]), r
    assert find(r, "remote minio", "(postgres destination)")[1] == (
        f"minio:{setup.bucket} (postgres destination): bucket exists, listing, writing and deleting a probe "
        f"object work")
    assert find(r, "remote minio", "mirror source")[1] == f"mirror source: 1 bucket(s) list: {setup.bucket}"
    assert find(r, "remote offsite")[1] == (f"offsite:{setup.offsite_bucket} (mirror destination): bucket exists, "
                                            f"listing, writing and deleting a probe object work")
    assert "(config destination)" in find(r, "store")[1]
    assert "may list Secrets in all namespaces" in find(r, "kubernetes")[1]
    assert find(r, "age [postgres]")[1] == (f"identity_file {setup.key} decrypts what is encrypted to the 1 "
                                            f"recipient(s)")
    find(r, "age [config]")
    # The probes are gone; Kubernetes was asked for one Secret, not for all of them.
    assert bucket_keys(s3_server, setup.bucket) == []
    assert bucket_keys(s3_offsite, setup.offsite_bucket) == []
    assert [q[1] for q in kube_api.requests if "/secrets" in q[1]] == ["/api/v1/secrets?limit=1"]


def test_connect_one_line_per_problem_and_the_most_specific_exit_status(setup, pg, s3_server, kube_api, tmp_path):
    # A key that may list and read but not write; a PostgreSQL port nobody listens on; a Kubernetes user
    # without access to Secrets; an identity that is not one of the recipients.
    key, secret = s3_server.make_user(["s3:ListBucket", "s3:HeadBucket", "s3:GetObject"])
    other_key, _ = age_keypair(tmp_path, "other.key")
    agent = setup(minio=remote(s3_server, tmp_path, "minio", key, secret),
                  conninfo=f"host=127.0.0.1 port=1 user=postgres dbname=postgres",
                  kubeconfig=kube_api.kubeconfig(user="viewer", name="viewer.yaml"), identity=other_key)
    p = agent("config", "check", "--connect")
    r = lines(p)
    fails = {w: d for st, w, d in r if st == "FAIL"}
    assert len([1 for st, _, _ in r if st == "FAIL"]) == 5, p.stdout
    assert set(fails) == {"postgres", "remote minio", "kubernetes", "age [postgres]", "age [config]"}, p.stdout
    assert "cannot reach PostgreSQL at host=127.0.0.1 port=1" in fails["postgres"]
    assert re.search(rf'skyforge-probe-[0-9a-f]{{16}}\): access key {key} of remote "minio" lacks s3:PutObject '
                     r"here; grant it in the key's policy", fails["remote minio"]), fails["remote minio"]
    assert 'user "viewer"' in fails["kubernetes"] and "may not list Secrets" in fails["kubernetes"]
    assert f"identity_file {other_key} holds no identity for any of the 1 recipient(s)" in fails["age [postgres]"]
    assert find(r, "remote minio", "mirror source")[0] == "ok"  # reading is allowed
    assert find(r, "remote offsite")[0] == "ok"  # the other remote is fine
    assert p.returncode == EX_CONFIG  # 78 (age) is more specific than 77 (S3, Kubernetes) and 69 (PostgreSQL)
    assert bucket_keys(s3_server, setup.bucket) == []

    # Only the S3 key and Kubernetes left: permission.
    agent = setup(minio=remote(s3_server, tmp_path, "minio", key, secret),
                  kubeconfig=kube_api.kubeconfig(user="viewer", name="viewer.yaml"))
    p = agent("config", "check", "--connect")
    assert p.returncode == EX_NOPERM, p.stdout
    assert sum(1 for st, _, _ in lines(p) if st == "FAIL") == 2

    # Only PostgreSQL down: unreachable.
    agent = setup(conninfo="host=127.0.0.1 port=1 user=postgres dbname=postgres")
    p = agent("config", "check", "--connect")
    assert p.returncode == EX_UNAVAILABLE, p.stdout
    assert [w for st, w, _ in lines(p) if st == "FAIL"] == ["postgres"]


def test_connect_usage(local_agent):
    local_agent.configure(postgres={"destination": local_agent.store / "postgres"})
    p = local_agent("config", "show", "--connect")
    assert p.returncode == 64 and "--connect is for config check" in p.stderr
    p = local_agent("config", "--help")
    assert "--connect" in p.stdout


def test_connect_checks_what_the_volumes_job_needs(local_agent, pg, kube_api, tmp_path):
    """[volumes]: its destination, its age identity, and the right to list the claims it resolves."""
    key, recipient = age_keypair(tmp_path, "volumes.key")

    def check(user=None, kubeconfig=None, **volumes):
        kc = kubeconfig or kube_api.kubeconfig(user=user, name=f"{user}.yaml")
        local_agent.configure(agent={"kubeconfig": kc}, postgres={"conninfo": pg.conninfo},
                              volumes={"destination": local_agent.store / "volumes", "recipients": recipient,
                                       "identity_file": key, **volumes})
        p = local_agent("config", "check", "--connect")
        return p, lines(p)

    kube_api.requests.clear()
    p, r = check("admin")
    assert p.returncode == 0, p.stdout + p.stderr
    st, detail = find(r, "kubernetes [volumes]")
    assert st == "ok" and "may list PersistentVolumeClaims and PersistentVolumes" in detail, detail
    assert "(volumes destination)" in find(r, "store", "volumes destination")[1]
    assert find(r, "age [volumes]")[0] == "ok"
    assert [q[1] for q in kube_api.requests if "persistentvolume" in q[1]] == [
        "/api/v1/persistentvolumeclaims?limit=1", "/api/v1/persistentvolumes?limit=1"]
    assert not (local_agent.store / "volumes").exists() or not os.listdir(local_agent.store / "volumes")

    # A user the API refuses: the line says who may not do what, and the exit status is 77.
    p, r = check("viewer")
    st, detail = find(r, "kubernetes [volumes]")
    assert st == "FAIL" and 'user "viewer"' in detail, detail
    assert "may not list PersistentVolumeClaims in all namespaces" in detail, detail
    assert p.returncode == EX_NOPERM, p.stdout

    # No cluster: with claims = at its default the job backs up paths = only, which is not a failure;
    # with claims = written it is.
    missing = str(tmp_path / "no-kubeconfig.yaml")
    p, r = check(kubeconfig=missing, paths=str(tmp_path))
    st, detail = find(r, "kubernetes [volumes]")
    assert st == "skip" and "backs up paths = only" in detail and missing in detail, detail
    assert p.returncode == 0, p.stdout
    p, r = check(kubeconfig=missing, claims="gitea/*")
    assert find(r, "kubernetes [volumes]")[0] == "FAIL", r
    assert p.returncode != 0
