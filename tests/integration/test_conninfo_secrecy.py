"""A password in `restore postgres --to CONNINFO` never shows on a command line: not on psql's or
pg_restore's (which every local user reads in /proc/PID/cmdline), and not on the agent's own once it has
parsed it (issue 13, item 5). Against real PostgreSQL clusters with scram-sha-256 password logins."""
import os
import secrets
import subprocess
import threading

import pytest

from fixtures.agent import AGENT

CLIENTS = ("psql", "pg_restore", "pg_dump", "pg_dumpall")


def shim_bindir(tmp_path, bindir):
    """pg_bindir of wrappers that append their own command line (NUL-separated, one record per line) to
    a log and exec the real client: a deterministic record of every client argv the agent used."""
    d = tmp_path / "shim"
    d.mkdir()
    log = tmp_path / "client-argv.log"
    for name in CLIENTS:
        p = d / name
        p.write_text(f"#!/bin/sh\n"
                     f"printf '%s\\0' \"$0\" \"$@\" >> '{log}'\n"
                     f"printf '\\n' >> '{log}'\n"
                     f"exec '{bindir}/{name}' \"$@\"\n")
        os.chmod(p, 0o755)
    return d, log


class CmdlineWatcher:
    """Reads every process's /proc/PID/cmdline over and over while the agent runs, and keeps those that
    hold the password. The agent itself holds it between its exec and its option parsing: its own hits
    count only once a client has started (the shim's log exists), long after the parsing."""

    def __init__(self, needle, agent_pid, client_log):
        self.needle = needle.encode()
        self.agent_pid = agent_pid
        self.client_log = client_log
        self.hits = []
        self.scans = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        me = os.getpid()
        while not self.stop.is_set():
            clients_started = os.path.exists(self.client_log)
            for d in os.listdir("/proc"):
                if not d.isdigit() or int(d) == me:
                    continue
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        cmdline = f.read()
                except OSError:
                    continue
                if self.needle not in cmdline:
                    continue
                if int(d) == self.agent_pid and not clients_started:
                    continue
                self.hits.append((int(d), cmdline.replace(b"\0", b" ").decode(errors="replace")))
            self.scans += 1

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.hits


def run_watched(agent, password, client_log, *args):
    cmd = [AGENT, "-c", str(agent.config_path)] + [str(a) for a in args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=agent.env)
    w = CmdlineWatcher(password, p.pid, client_log)
    out, err = p.communicate(timeout=600)
    hits = w.finish()
    assert w.scans > 0
    return p.returncode, out, err, hits


def client_argvs(log):
    return [line.split("\0")[:-1] for line in log.read_text().splitlines() if line]


@pytest.fixture
def password():
    # Distinctive, with characters a conninfo must quote (so that it shows escaped on a command line: the
    # checks look for its distinctive head, which shows either way).
    return "pw-" + secrets.token_hex(12) + " q'x"


def head(password):
    return password.split(" ")[0]


def setup_agent(local_agent, src, tmp_path, **extra):
    shim, log = shim_bindir(tmp_path, src.bindir)
    keys = {"conninfo": src.conninfo, "destination": local_agent.store / "postgres", "pg_bindir": shim}
    keys.update(extra)
    local_agent.configure(postgres=keys)
    return log


def conninfo_with_password(cluster, password):
    quoted = password.replace("\\", "\\\\").replace("'", "\\'")
    return f"{cluster.conninfo} password='{quoted}'"


def test_restore_to_conninfo_password_is_on_no_command_line(local_agent, pg_factory, tmp_path, password):
    src = pg_factory()
    src.psql("CREATE TABLE marker (v text); INSERT INTO marker VALUES ('restored');")
    log = setup_agent(local_agent, src, tmp_path)
    local_agent("run", "postgres", check=True)
    dst = pg_factory(auth="scram-sha-256", password=password)
    log.unlink()

    rc, out, err, hits = run_watched(local_agent, head(password), log, "restore", "postgres", "latest", "--to",
                                     conninfo_with_password(dst, password))
    assert rc == 0, err
    assert dst.psql("SELECT v FROM marker").strip() == "restored"
    argvs = client_argvs(log)
    assert any(os.path.basename(a[0]) == "psql" and "--version" not in a for a in argvs), argvs
    assert [a for a in argvs if any(head(password) in x for x in a)] == []
    assert hits == []
    assert head(password) not in out + err


def test_restore_database_password_is_on_no_command_line(local_agent, pg_factory, tmp_path, password):
    """The per-database restore: pg_restore (streaming and with -j from a file) and the psql that creates
    missing roles."""
    src = pg_factory()
    src.psql("CREATE ROLE app LOGIN; CREATE DATABASE appdb OWNER app;")
    src.psql("CREATE TABLE marker (v text); INSERT INTO marker VALUES ('restored'); "
             "ALTER TABLE marker OWNER TO app;", db="appdb")
    log = setup_agent(local_agent, src, tmp_path, per_database="yes")
    local_agent("run", "postgres", check=True)

    for jobs in ("1", "2"):
        dst = pg_factory(auth="scram-sha-256", password=password)
        if log.exists():
            log.unlink()
        rc, out, err, hits = run_watched(local_agent, head(password), log, "restore", "postgres", "latest",
                                         "--database", "appdb", "--jobs", jobs, "--to",
                                         conninfo_with_password(dst, password))
        assert rc == 0, err
        assert dst.psql("SELECT v FROM marker", db="appdb").strip() == "restored"
        argvs = client_argvs(log)
        used = {os.path.basename(a[0]) for a in argvs if "--version" not in a}
        assert {"psql", "pg_restore"} <= used, argvs
        assert [a for a in argvs if any(head(password) in x for x in a)] == []
        assert hits == []
        assert head(password) not in out + err
