"""The package in a booted Debian 12: install, timers, a backup against PostgreSQL on the host, progress in
systemctl status, journal fields and catalog, D-Bus, unit hardening, purge. The tests run in file order
against one container; each builds on the state the previous one left."""
import os
import re
import subprocess
import time

import pytest

from conftest import run, timed

JOBS = ("postgres", "mirror", "config", "volumes")
TIMERS = ("skyforge-backup-postgres.timer", "skyforge-backup-mirror.timer", "skyforge-backup-config.timer",
          "skyforge-backup-volumes.timer", "skyforge-verify.timer")
MSG_STARTED = "b8d06561d1a7481891ca96c3ae2ef6a0"
MSG_SUCCEEDED = "eac4d542a7f643f782ac674f5c39d97f"
MSG_FAILED = "79a9ad08d95f43e8901fd55e2600d4ac"
BUS = ["busctl", "--system"]
MANAGER = ["org.skyforge.Agent1", "/org/skyforge/Agent1", "org.skyforge.Agent1.Manager"]
JOB_PG = ["org.skyforge.Agent1", "/org/skyforge/Agent1/job/postgres", "org.skyforge.Agent1.Job"]
BACKUPS = "/var/lib/skyforge-agent/backups/postgres"


@pytest.fixture(scope="module")
def box(container_factory, package):
    return container_factory("skye2e")


@pytest.fixture(scope="module")
def pg(host_pg):
    # A table the STATUS test can hold a lock on, so that the dump waits while we look at it.
    host_pg.psql("CREATE TABLE held (id int); INSERT INTO held SELECT generate_series(1, 1000);")
    host_pg.psql("CREATE DATABASE gitea;")
    return host_pg


def backup_ids(box):
    d = box.path(BACKUPS)
    if not os.path.isdir(d):
        return []
    return sorted(f[:-5] for f in os.listdir(d) if re.fullmatch(r"\d{8}T\d{6}Z\.json", f))


def test_lintian_clean(package):
    deb, changes = package
    with timed("lintian"):
        p = run(["lintian", "--fail-on", "none", changes])
    bad = [line for line in p.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert not bad, "lintian:\n" + p.stdout


def test_package_contents(package):
    deb, _ = package
    listing = run(["dpkg-deb", "-c", deb]).stdout
    for path in ("./usr/sbin/skyforge-agent", "./usr/libexec/skyforge-agent/skyforge-agentd",
                 "./usr/libexec/skyforge-agent/skyforge-wal-fetch", "./lib/systemd/system/skyforge-backup@.service",
                 "./lib/systemd/system/skyforge-agent.service", "./usr/share/dbus-1/system.d/org.skyforge.Agent1.conf",
                 "./usr/share/dbus-1/system-services/org.skyforge.Agent1.service",
                 "./usr/lib/systemd/catalog/skyforge-agent.catalog", "./usr/share/man/man8/skyforge-agent.8.gz",
                 "./usr/share/man/man5/skyforge-agent.conf.5.gz"):
        assert path in listing, f"{path} not in the package"
    conf = [line for line in listing.splitlines() if line.endswith(" ./etc/skyforge/agent.conf")]
    assert conf and conf[0].startswith("-rw-r----- root/root"), conf
    assert run(["dpkg-deb", "-f", deb, "Depends"]).stdout.count("postgresql-client") == 1
    assert run(["dpkg-deb", "-f", deb, "Recommends"]).stdout.strip() == "age"
    assert "/etc/skyforge/agent.conf" in run(["dpkg-deb", "-I", deb, "conffiles"]).stdout


def test_install(box, package):
    p = box.install(package[0])
    assert "Setting up skyforge-agent" in p.stdout
    assert box.exec(["dpkg-query", "-W", "-f=${Status}", "skyforge-agent"]).stdout == "install ok installed"
    st = os.stat(box.path("/etc/skyforge/agent.conf"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o640)
    for d, mode in (("/var/lib/skyforge-agent", 0o750), ("/var/lib/skyforge-agent/backups", 0o750),
                    ("/var/tmp/skyforge-agent", 0o700)):
        assert os.stat(box.path(d)).st_mode & 0o7777 == mode, d


def test_bash_completion_installed(box):
    """dh_bash-completion installs conf/bash-completion/skyforge-agent; sourced in bash (with the host's
    bash-completion), the installed file completes commands."""
    installed = box.path("/usr/share/bash-completion/completions/skyforge-agent")
    repo = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "conf",
                        "bash-completion", "skyforge-agent")
    assert open(installed).read() == open(repo).read()
    script = (f"source /usr/share/bash-completion/bash_completion; source {installed}; "
              "COMP_WORDS=(skyforge-agent re); COMP_CWORD=1; COMP_LINE='skyforge-agent re'; COMP_POINT=17; "
              "_skyforge_agent; echo ${COMPREPLY[@]}")
    assert sorted(run(["bash", "--norc", "--noprofile", "-c", script]).stdout.split()) == ["recover", "restore"]


def test_timers_enabled_and_listed_daemon_active(box):
    for t in TIMERS:
        assert box.exec(["systemctl", "is-enabled", t]).stdout.strip() == "enabled", t
        assert box.exec(["systemctl", "is-active", t]).stdout.strip() == "active", t
    listed = box.exec(["systemctl", "list-timers", "--all", "--no-legend"]).stdout
    for t in TIMERS:
        assert t in listed, f"{t} not in list-timers:\n{listed}"
    assert box.exec(["systemctl", "is-active", "skyforge-agent.service"]).stdout.strip() == "active"
    assert box.exec(["systemctl", "is-enabled", "skyforge-agent.service"]).stdout.strip() == "enabled"


def test_install_started_no_job(box):
    # Installing must never start a backup: no job unit ran, the journal has no "job started".
    for job in JOBS:
        u = box.unit(f"skyforge-backup@{job}.service")
        assert u["ActiveState"] == "inactive" and u["InvocationID"] == "", u
    assert not [e for e in box.journal() if e.get("MESSAGE_ID") == MSG_STARTED]


def test_catalog_installed(box):
    out = box.exec(["journalctl", "--list-catalog", MSG_FAILED]).stdout
    assert "Backup job @SKYFORGE_JOB@ failed" in out


def test_systemctl_start_backup(box, pg):
    box.write("/etc/skyforge/agent.conf", f"[postgres]\nconninfo = {pg.conninfo}\n", mode=0o640)
    assert box.exec(["skyforge-agent", "config", "check"]).returncode == 0
    p = box.exec(["systemctl", "start", "skyforge-backup@postgres"], check=False, timeout=300)
    u = box.unit("skyforge-backup@postgres.service")
    assert p.returncode == 0, (p.stderr, u, box.exec(["journalctl", "-u", "skyforge-backup@postgres"]).stdout)
    assert u["Result"] == "success" and u["ExecMainStatus"] == "0", u
    ids = backup_ids(box)
    assert len(ids) == 1, ids
    listed = box.exec(["skyforge-agent", "list", "postgres"]).stdout
    assert ids[0] in listed


def test_status_line_while_running(box, pg):
    """Holds a lock on a table so pg_dumpall waits, and reads `systemctl status` meanwhile."""
    before = backup_ids(box)
    holder = subprocess.Popen([os.path.join(pg.bindir, "psql"), "-X", "-q", "-d", pg.conninfo],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        holder.stdin.write("BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "locked"
        box.exec(["systemctl", "start", "--no-block", "skyforge-backup@postgres"])
        seen = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen:
            out = box.exec(["systemctl", "status", "--no-pager", "skyforge-backup@postgres"], check=False).stdout
            m = re.search(r"^\s*Status: \"(.+)\"$", out, re.M)
            if m:
                seen = (m.group(1), out)
            time.sleep(0.2)
        assert seen, f"no Status: line while the job ran:\n{out}"
        assert box.unit("skyforge-backup@postgres.service")["ActiveState"] == "activating"
    finally:
        holder.stdin.write("COMMIT;\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    u = box.wait_unit_done("skyforge-backup@postgres.service")
    assert u["Result"] == "success", u
    assert len(backup_ids(box)) == len(before) + 1
    print("status line:", seen[0])


def test_journal_fields(box):
    entries = [e for e in box.journal("-u", "skyforge-backup@postgres") if e.get("SKYFORGE_JOB") == "postgres"]
    started = [e for e in entries if e.get("MESSAGE_ID") == MSG_STARTED]
    done = [e for e in entries if e.get("MESSAGE_ID") == MSG_SUCCEEDED]
    assert len(started) == 2 and len(done) == 2, entries
    assert sorted(e["SKYFORGE_BACKUP_ID"] for e in done) == backup_ids(box)
    for e in done:
        assert int(e["SKYFORGE_BYTES"]) > 0 and int(e["SKYFORGE_DURATION_USEC"]) > 0, e
        assert e["_SYSTEMD_UNIT"] == "skyforge-backup@postgres.service"


def test_bus_last_result_readable_by_anyone(box):
    for user in (None, "nobody"):
        out = box.exec(BUS + ["get-property"] + JOB_PG + ["LastResult"], user=user).stdout.strip()
        assert out == 's "success"', (user, out)
    out = box.exec(BUS + ["get-property"] + JOB_PG + ["LastBackupId"]).stdout.strip()
    assert out == f's "{backup_ids(box)[-1]}"'


def test_bus_start_job_refused_for_non_root(box):
    before = box.unit("skyforge-backup@postgres.service")["InvocationID"]
    p = box.exec(BUS + ["call"] + MANAGER + ["StartJob", "s", "postgres"], user="nobody", check=False)
    assert p.returncode != 0
    assert re.search(r"access denied|rejected", p.stderr, re.I), p.stderr
    time.sleep(1)
    assert box.unit("skyforge-backup@postgres.service")["InvocationID"] == before


def test_bus_start_job_starts_the_unit(box):
    before_ids = backup_ids(box)
    before = box.unit("skyforge-backup@postgres.service")["InvocationID"]
    out = box.exec(BUS + ["call"] + MANAGER + ["StartJob", "s", "postgres"]).stdout
    assert re.fullmatch(r'o "/org/freedesktop/systemd1/job/\d+"\s*', out), out
    deadline = time.monotonic() + 30
    while box.unit("skyforge-backup@postgres.service")["InvocationID"] == before:
        assert time.monotonic() < deadline, "StartJob did not start skyforge-backup@postgres"
        time.sleep(0.2)
    u = box.wait_unit_done("skyforge-backup@postgres.service")
    assert u["Result"] == "success", u
    assert len(backup_ids(box)) == len(before_ids) + 1


def test_failure_explained_by_catalog(box, pg):
    pg.stop()
    p = box.exec(["systemctl", "start", "skyforge-backup@postgres"], check=False, timeout=300)
    assert p.returncode != 0
    u = box.unit("skyforge-backup@postgres.service")
    assert u["Result"] == "exit-code" and u["ExecMainStatus"] == "69", u  # EX_UNAVAILABLE
    out = box.exec(["journalctl", "-x", "--no-pager", "-u", "skyforge-backup@postgres",
                    f"MESSAGE_ID={MSG_FAILED}"]).stdout
    assert f"PostgreSQL at {pg.conninfo}" in out, out
    assert "Subject: Backup job postgres failed" in out, out
    assert "The skyforge-agent backup job postgres has failed" in out, out
    err = box.exec(BUS + ["get-property"] + JOB_PG + ["LastError"]).stdout
    assert "PostgreSQL" in err and str(pg.port) in err, err
    assert box.exec(BUS + ["get-property"] + JOB_PG + ["LastResult"]).stdout.strip() == 's "failed"'


def test_metrics_file_and_a_destination_the_unit_cannot_write(box, pg):
    """The units run with ProtectSystem=strict: node_exporter's textfile directory is writable for
    metrics_file, and a local destination elsewhere fails with the drop-in that fixes it."""
    prom = "/var/lib/prometheus/node-exporter"
    box.exec(["mkdir", "-p", prom, "/srv"])
    box.write("/etc/skyforge/agent.conf",
              f"[agent]\nmetrics_file = {prom}/skyforge-agent.prom\n"
              f"[postgres]\nconninfo = {pg.conninfo}\n"
              "[mirror]\nsource = /var/lib/skyforge-agent/backups\ndestination = /srv/offsite\n", mode=0o640)
    try:
        # PostgreSQL is still stopped: the run fails, and the metrics say so.
        p = box.exec(["systemctl", "start", "skyforge-backup@postgres"], check=False, timeout=300)
        assert p.returncode != 0
        with open(box.path(f"{prom}/skyforge-agent.prom")) as f:
            metrics = f.read()
        assert 'skyforge_job_last_success{job="postgres"} 0' in metrics, metrics
        assert not os.path.exists(box.path("/srv/offsite"))
        p = box.exec(["systemctl", "start", "skyforge-backup@mirror"], check=False, timeout=300)
        assert p.returncode != 0
        out = box.exec(["journalctl", "--no-pager", "-u", "skyforge-backup@mirror", "-p", "err"]).stdout
        assert "cannot create store directory /srv/offsite/postgres: Read-only file system" in out, out
        assert "create /srv/offsite, then `systemctl edit skyforge-backup@.service`" in out, out
        assert "ReadWritePaths=/srv/offsite" in out, out
        assert not os.path.exists(box.path("/srv/offsite"))
    finally:
        box.write("/etc/skyforge/agent.conf", f"[postgres]\nconninfo = {pg.conninfo}\n", mode=0o640)


def test_units_exposure_at_most_2_5(box):
    units = [f"skyforge-backup@{j}.service" for j in JOBS] + ["skyforge-agent.service", "skyforge-verify.service"]
    out = box.exec(["systemd-analyze", "security", "--no-pager"] + units).stdout
    levels = dict(re.findall(r"Overall exposure level for (\S+): ([\d.]+)", out))
    assert sorted(levels) == sorted(units), out
    print("exposure:", levels)
    for unit, level in levels.items():
        assert float(level) <= 2.5, f"{unit}: {level}"


def test_purge_keeps_backups(box):
    ids = backup_ids(box)
    assert len(ids) == 3
    assert os.path.exists(box.path("/var/lib/skyforge-agent/postgres.json"))
    box.exec(["apt-get", "purge", "-y", "-q", "skyforge-agent"])
    assert box.exec(["dpkg-query", "-W", "-f=${Status}", "skyforge-agent"], check=False).stdout \
        in ("", "unknown ok not-installed")
    for pattern in ("/lib/systemd/system/skyforge-*", "/etc/systemd/system/*/skyforge-*",
                    "/usr/share/dbus-1/*/org.skyforge.Agent1.*"):
        assert not box.sh(f"ls {pattern} 2>/dev/null", check=False).stdout, pattern
    assert not os.path.exists(box.path("/etc/skyforge"))
    assert not os.path.exists(box.path("/usr/sbin/skyforge-agent"))
    assert not os.path.exists(box.path("/var/lib/skyforge-agent/postgres.json"))
    assert not os.path.exists(box.path("/var/lib/skyforge-agent/postgres.lock"))
    assert backup_ids(box) == ids
    assert "skyforge" not in box.exec(["systemctl", "list-timers", "--all"]).stdout
    assert "skyforge" not in box.exec(["systemctl", "list-unit-files"]).stdout
