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


@pytest.mark.parametrize("job", ["postgres", "config", "mirror"])
def test_job_fails_with_one_clear_message(fresh, job):
    unit = f"skyforge-backup@{job}.service"
    p = fresh.exec(["systemctl", "start", unit], check=False, timeout=120)
    assert p.returncode != 0
    u = fresh.unit(unit)
    assert u["ActiveState"] == "failed" and u["Result"] == "exit-code", u
    assert u["ExecMainStatus"] not in ("0", "70"), u  # a diagnosed failure, not an internal error
    out = [e for e in fresh.journal("-u", unit, "_COMM=skyforge-agent")]
    text = "\n".join(e.get("MESSAGE", "") for e in out)
    if "this build cannot run job" in text:
        pytest.xfail(f"the {job} job is not in this build yet: {text.strip()}")
    errors = [e["MESSAGE"] for e in out if int(e.get("PRIORITY", 6)) <= 3]
    assert len(errors) == 1, f"want one error from the {job} job, got:\n{text}"
    assert re.search(EXPECTED[job], errors[0]), errors[0]
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
