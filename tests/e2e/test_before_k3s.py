"""Before k3s: the package installed on a fresh node with no k3s, no PostgreSQL and the shipped
configuration. Installing works, the daemon runs, and each job fails with one clear message naming what
is missing; nothing else breaks."""
import re

import pytest

BUS = ["busctl", "--system"]

# What each job's single error must say (PRODUCT.md section 6, issue 7).
EXPECTED = {
    "postgres": r"PostgreSQL at host=\S+ port=\d+.*(unreachable|cannot reach|No such file|refused)",
    "config": r"no kubeconfig at /etc/rancher/k3s/k3s\.yaml.*k3s installed",
    "mirror": r"\[mirror\].*remote|\[remote\.",
}


@pytest.fixture(scope="module")
def fresh(container_factory, package):
    box = container_factory("skyfresh")
    box.install(package[0])
    return box


def test_install_and_daemon_run_without_k3s(fresh):
    assert fresh.exec(["dpkg-query", "-W", "-f=${Status}", "skyforge-agent"]).stdout == "install ok installed"
    assert fresh.exec(["systemctl", "is-active", "skyforge-agent.service"]).stdout.strip() == "active"
    assert not fresh.exec(["sh", "-c", "ls /etc/rancher /var/run/postgresql 2>/dev/null"], check=False).stdout
    # The shipped configuration is valid as it is.
    assert fresh.exec(["skyforge-agent", "config", "check"]).returncode == 0


def start_and_read_the_error(fresh, job):
    """Starts the job's unit, checks that it failed as diagnosed, and returns its one error message."""
    unit = f"skyforge-backup@{job}.service"
    p = fresh.exec(["systemctl", "start", unit], check=False, timeout=120)
    assert p.returncode != 0
    u = fresh.unit(unit)
    assert u["ActiveState"] == "failed" and u["Result"] == "exit-code", u
    assert u["ExecMainStatus"] not in ("0", "70"), u  # a diagnosed failure, not an internal error
    # This run's entries only: the unit may have failed before for another reason.
    out = fresh.journal("-u", unit, "_COMM=skyforge-agent", f"_SYSTEMD_INVOCATION_ID={u['InvocationID']}")
    text = "\n".join(e.get("MESSAGE", "") for e in out)
    errors = [e["MESSAGE"] for e in out if int(e.get("PRIORITY", 6)) <= 3]
    assert len(errors) == 1, f"want one error from the {job} job, got:\n{text}"
    return errors[0]


def test_config_job_with_the_shipped_config_asks_for_recipients(fresh):
    # The Secrets export is always encrypted: with no recipients the job says so before anything else.
    assert re.search(r"\[config\].*recipients", start_and_read_the_error(fresh, "config"))


@pytest.fixture(scope="module")
def operator_config(fresh):
    """What an operator sets up before k3s exists: a key pair, the recipient for the config job and the
    checkout of the manifests. Only k3s itself (and PostgreSQL in it) is missing."""
    fresh.exec(["mkdir", "-p", "/opt/skyforge/k8s"])
    fresh.write("/opt/skyforge/k8s/kustomization.yaml", "resources: []\n")
    p = fresh.exec(["skyforge-agent", "keygen", "-o", "/root/age.key"])
    recipient = re.search(r"age1[0-9a-z]+", p.stderr).group(0)
    fresh.write("/etc/skyforge/agent.conf", f"[config]\nrecipients = {recipient}\n", mode=0o640)
    assert fresh.exec(["skyforge-agent", "config", "check"]).returncode == 0


@pytest.mark.parametrize("job", ["postgres", "config", "mirror"])
def test_job_fails_with_one_clear_message(fresh, operator_config, job):
    error = start_and_read_the_error(fresh, job)
    print(f"{job}: {error}")
    assert re.search(EXPECTED[job], error), error
    last_error = fresh.exec(BUS + ["get-property", "org.skyforge.Agent1", f"/org/skyforge/Agent1/job/{job}",
                                   "org.skyforge.Agent1.Job", "LastError"]).stdout
    assert re.search(EXPECTED[job], last_error), last_error


def test_nothing_else_breaks(fresh):
    assert fresh.exec(["systemctl", "is-active", "skyforge-agent.service"]).stdout.strip() == "active"
    for t in ("skyforge-backup-postgres.timer", "skyforge-backup-mirror.timer", "skyforge-backup-config.timer"):
        assert fresh.exec(["systemctl", "is-active", t]).stdout.strip() == "active", t
    failed = fresh.exec(["systemctl", "list-units", "--failed", "--plain", "--no-legend"]).stdout.split("\n")
    others = [line for line in failed if line.strip() and not line.startswith("skyforge-backup@")]
    assert not others, others
    p = fresh.exec(["skyforge-agent", "status"], check=False)
    assert p.returncode == 0, p.stderr
    assert "failed" in p.stdout and "postgres" in p.stdout, p.stdout
