"""skyforge-agent daemon on a private system bus: the D-Bus API of PRODUCT.md §5, job state followed from
the state files with inotify (PropertiesChanged, Finished), the bus policy (methods root only, reading
open), systemd calls failing cleanly without systemd, sd_notify READY/WATCHDOG/STOPPING, and no wakeups
when idle."""
import json
import os
import pwd
import signal
import socket
import subprocess
import tempfile
import shutil
import threading
import time
import xml.etree.ElementTree as ET

import dbus
import dbus.mainloop.glib
import pytest
from gi.repository import GLib

from fixtures.agent import AGENT, BUILDDIR

NAME = "org.skyforge.Agent1"
MANAGER_PATH = "/org/skyforge/Agent1"
MANAGER = "org.skyforge.Agent1.Manager"
JOB = "org.skyforge.Agent1.Job"
JOBS = ["postgres", "mirror", "config", "volumes"]
JOB_PROPERTIES = {
    "State": "s", "Progress": "d", "LastResult": "s", "LastError": "s", "LastBackupId": "s",
    "LastBytes": "t", "LastStartUSec": "t", "LastEndUSec": "t", "LastSuccessUSec": "t",
    "NextElapseUSec": "t", "LastVerify": "s", "ProgressText": "s",
}


def daemon_command(state_dir):
    """`skyforge-agent daemon` with a configuration whose state_dir (and so the default local store that
    ListBackups lists) is the test's."""
    conf = os.path.join(state_dir, "agent.conf")
    with open(conf, "w") as f:
        f.write(f"[agent]\nstate_dir = {state_dir}\n")
    return [AGENT, "-c", conf, "daemon"]


def job_path(job):
    return f"{MANAGER_PATH}/job/{job}"


def write_state(state_dir, job, **fields):
    """Writes a state file the way a job does: a temp file renamed over <job>.json."""
    s = {"job": job, "state": "idle", "last_result": "", "last_error": "", "last_backup_id": "",
         "last_bytes": 0, "last_start_usec": 0, "last_end_usec": 0, "last_success_usec": 0,
         "progress": -1, "progress_text": "", "last_verify": "", "pid": 0}
    s.update(fields)
    tmp = os.path.join(state_dir, f".#{job}.json.tmp")
    with open(tmp, "w") as f:
        json.dump(s, f)
    os.replace(tmp, os.path.join(state_dir, f"{job}.json"))


class NotifySocket:
    """A NOTIFY_SOCKET the test binds, collecting what the daemon sends with sd_notify."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def wait_for(self, line, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages:
                if line in m.split("\n"):
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {line!r} from sd_notify within {timeout}s; got {self.messages}")
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()


class Daemon:
    def __init__(self, bus, state_dir, tmp, env=None, command=None):
        self.bus = bus
        self.state_dir = state_dir
        self.notify = NotifySocket(os.path.join(tmp, "notify"))
        e = bus.env()
        e.pop("JOURNAL_STREAM", None)
        e.pop("WATCHDOG_USEC", None)
        e.pop("WATCHDOG_PID", None)
        e["NOTIFY_SOCKET"] = self.notify.path
        e.update(env or {})
        self.stderr_path = os.path.join(tmp, "daemon.stderr")
        self.proc = subprocess.Popen(command or daemon_command(state_dir), env=e, stdout=subprocess.DEVNULL,
                                     stderr=open(self.stderr_path, "w"))
        try:
            self.notify.wait_for("READY=1")
        except AssertionError:
            self.proc.kill()
            raise AssertionError(f"daemon not ready; stderr:\n{self.stderr()}")

    def stderr(self):
        return open(self.stderr_path).read()

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()


@pytest.fixture
def state_dir():
    d = tempfile.mkdtemp(prefix="skyforge-state-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon(system_bus, state_dir, tmp_path):
    d = Daemon(system_bus, state_dir, str(tmp_path))
    yield d
    d.kill()


def busctl(bus, *args, user=None, check=True):
    cmd = ["busctl", "--system", "--no-pager"] + [str(a) for a in args]
    if user:
        pw = pwd.getpwnam(user)
        cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, env=bus.env(), timeout=30)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd}: exit {p.returncode}\n{p.stderr}")
    return p


def get_property(bus, job, prop, user=None):
    p = busctl(bus, "--json=short", "get-property", NAME, job_path(job), JOB, prop, user=user)
    return json.loads(p.stdout)["data"]


class SignalWatch:
    """Signals from the daemon, received with python3-dbus on the private bus."""

    def __init__(self, address):
        self.conn = dbus.bus.BusConnection(address, mainloop=dbus.mainloop.glib.DBusGMainLoop())
        self.signals = []
        self.conn.add_signal_receiver(self._on_signal, bus_name=NAME, path_keyword="path",
                                      member_keyword="member", interface_keyword="interface")

    def _on_signal(self, *args, path=None, member=None, interface=None):
        self.signals.append((path, interface, member, args))

    def wait_for(self, predicate, timeout=10, what="signal"):
        ctx = GLib.MainContext.default()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in self.signals:
                if predicate(s):
                    return s
            ctx.iteration(False) or time.sleep(0.01)
        raise AssertionError(f"no {what} within {timeout}s; got {self.signals}")

    def close(self):
        self.conn.close()


@pytest.fixture
def signals(system_bus, daemon):
    w = SignalWatch(system_bus.address)
    # The match rule is in place once a round trip through the bus has completed.
    w.conn.get_unique_name()
    dbus.Interface(w.conn.get_object("org.freedesktop.DBus", "/org/freedesktop/DBus"),
                   "org.freedesktop.DBus").GetId()
    yield w
    w.close()


def properties_changed(job, **expected):
    def match(s):
        path, iface, member, args = s
        if path != job_path(job) or member != "PropertiesChanged" or args[0] != JOB:
            return False
        return all(k in args[1] and args[1][k] == v for k, v in expected.items())
    return match


# --- introspection ---

def introspect(bus, path, user=None):
    p = busctl(bus, "--xml-interface", "introspect", NAME, path, user=user)
    return ET.fromstring(p.stdout)


def test_manager_interface_matches_the_spec(daemon):
    root = introspect(daemon.bus, MANAGER_PATH)
    iface = root.find(f"interface[@name='{MANAGER}']")
    assert iface is not None
    methods = {m.get("name"): ("".join(a.get("type") for a in m.findall("arg[@direction='in']")),
                               "".join(a.get("type") for a in m.findall("arg[@direction='out']")))
               for m in iface.findall("method")}
    assert methods == {"ListJobs": ("", "a(ssso)"), "StartJob": ("s", "o"), "CancelJob": ("s", "o"),
                       "ListBackups": ("s", "a(sstttb)"), "ListBackupsWithNode": ("s", "a(ssstttb)")}
    assert sorted(n.get("name") for n in root.findall("node")) == ["job", "wal"]
    jobs = introspect(daemon.bus, MANAGER_PATH + "/job")
    assert sorted(n.get("name") for n in jobs.findall("node")) == sorted(JOBS)


@pytest.mark.parametrize("job", JOBS)
def test_job_interface_matches_the_spec(daemon, job):
    root = introspect(daemon.bus, job_path(job))
    iface = root.find(f"interface[@name='{JOB}']")
    assert iface is not None
    props = {p.get("name"): p.get("type") for p in iface.findall("property")}
    assert props == JOB_PROPERTIES
    assert all(p.get("access") == "read" for p in iface.findall("property"))
    sigs = {s.get("name"): [(a.get("name"), a.get("type")) for a in s.findall("arg")]
            for s in iface.findall("signal")}
    assert sigs == {"Finished": [("job", "s"), ("result", "s"), ("backup_id", "s")]}


# --- state ---

def test_job_that_never_ran_reads_idle(daemon):
    assert get_property(daemon.bus, "mirror", "State") == "idle"
    assert get_property(daemon.bus, "mirror", "LastResult") == ""
    assert get_property(daemon.bus, "mirror", "Progress") == -1


def test_state_written_before_start_is_served(system_bus, state_dir, tmp_path):
    write_state(state_dir, "config", last_result="success", last_backup_id="20261125T023000Z",
                last_bytes=4096, last_end_usec=1795617946000000, last_success_usec=1795617946000000,
                last_verify="ok: restored 5 databases")
    d = Daemon(system_bus, state_dir, str(tmp_path))
    try:
        assert get_property(system_bus, "config", "LastBackupId") == "20261125T023000Z"
        assert get_property(system_bus, "config", "LastBytes") == 4096
        assert get_property(system_bus, "config", "LastSuccessUSec") == 1795617946000000
        assert get_property(system_bus, "config", "LastVerify") == "ok: restored 5 databases"
    finally:
        d.kill()


def test_state_file_change_emits_properties_changed_and_reads_back(daemon, signals):
    start = time.time_ns() // 1000
    write_state(daemon.state_dir, "postgres", state="running", last_start_usec=start, progress=0.0,
                progress_text="dumping: 0 B of ~3.4 GiB (0 %), 0 B/s", pid=os.getpid())
    signals.wait_for(properties_changed("postgres", State="running"), what="PropertiesChanged State=running")
    line = "dumping: 1.2 GiB of ~3.4 GiB (35 %), 41 MiB/s, ETA 54s"
    write_state(daemon.state_dir, "postgres", state="running", last_start_usec=start, progress=0.35,
                progress_text=line, pid=os.getpid())
    sig = signals.wait_for(properties_changed("postgres", Progress=0.35), what="PropertiesChanged Progress")
    # Only what changed is announced: the fraction and the line systemctl status shows.
    assert set(sig[3][1]) == {"Progress", "ProgressText"}
    assert get_property(daemon.bus, "postgres", "ProgressText") == line
    assert get_property(daemon.bus, "postgres", "State") == "running"
    assert get_property(daemon.bus, "postgres", "Progress") == 0.35
    assert get_property(daemon.bus, "postgres", "LastStartUSec") == start
    # Other jobs are untouched.
    assert not any(s[0] != job_path("postgres") for s in signals.signals)


def test_run_ending_emits_finished_with_result_and_backup_id(daemon, signals):
    write_state(daemon.state_dir, "postgres", state="running", last_start_usec=10, progress=0.5)
    signals.wait_for(properties_changed("postgres", State="running"))
    write_state(daemon.state_dir, "postgres", state="idle", last_result="success",
                last_backup_id="20261125T020000Z", last_bytes=123456, last_start_usec=10, last_end_usec=20,
                last_success_usec=20)
    fin = signals.wait_for(lambda s: s[2] == "Finished", what="Finished")
    assert fin[0] == job_path("postgres") and fin[1] == JOB
    assert list(fin[3]) == ["postgres", "success", "20261125T020000Z"]
    ch = signals.wait_for(properties_changed("postgres", State="idle"))
    assert ch[3][1]["LastBytes"] == 123456
    # The timer was re-armed by systemd: its value is invalidated, not sent.
    assert "NextElapseUSec" in ch[3][2]
    assert get_property(daemon.bus, "postgres", "LastResult") == "success"


def test_failed_run_emits_finished_failed_with_error(daemon, signals):
    write_state(daemon.state_dir, "mirror", state="running", last_start_usec=10)
    signals.wait_for(properties_changed("mirror", State="running"))
    write_state(daemon.state_dir, "mirror", state="failed", last_result="failed",
                last_error="cannot reach S3 at http://127.0.0.1:1: connection refused", last_start_usec=10,
                last_end_usec=30)
    fin = signals.wait_for(lambda s: s[2] == "Finished", what="Finished")
    assert list(fin[3]) == ["mirror", "failed", ""]
    assert get_property(daemon.bus, "mirror", "State") == "failed"
    assert "connection refused" in get_property(daemon.bus, "mirror", "LastError")


def test_unrelated_and_temporary_files_are_ignored(daemon, signals):
    with open(os.path.join(daemon.state_dir, "notes.txt"), "w") as f:
        f.write("x")
    with open(os.path.join(daemon.state_dir, "unknownjob.json"), "w") as f:
        f.write("{}")
    write_state(daemon.state_dir, "config", state="running")
    signals.wait_for(properties_changed("config", State="running"))
    assert all(s[0] == job_path("config") for s in signals.signals)


def test_garbage_state_file_keeps_the_last_good_state(daemon, signals):
    write_state(daemon.state_dir, "config", state="running")
    signals.wait_for(properties_changed("config", State="running"))
    with open(os.path.join(daemon.state_dir, "config.json"), "w") as f:
        f.write("{not json")
    assert get_property(daemon.bus, "config", "State") == "running"
    assert daemon.proc.poll() is None


def test_job_process_killed_without_a_result_reads_failed(daemon, signals):
    job = subprocess.Popen(["sleep", "60"])
    try:
        write_state(daemon.state_dir, "postgres", state="running", last_start_usec=time.time_ns() // 1000,
                    pid=job.pid)
        signals.wait_for(properties_changed("postgres", State="running"))
        job.kill()
        job.wait()
        fin = signals.wait_for(lambda s: s[2] == "Finished", what="Finished after the kill")
        assert list(fin[3]) == ["postgres", "failed", ""]
        assert get_property(daemon.bus, "postgres", "State") == "failed"
        assert f"PID {job.pid}" in get_property(daemon.bus, "postgres", "LastError")
    finally:
        job.kill()
        job.wait()


def test_stale_running_state_from_before_a_restart_reads_failed(system_bus, state_dir, tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_state(state_dir, "mirror", state="running", last_start_usec=time.time_ns() // 1000, pid=gone.pid)
    # A PID that was reused by a process started after the job recorded its start (here: this test,
    # started long after the hour-old start time) is not the job either.
    write_state(state_dir, "config", state="running", last_start_usec=time.time_ns() // 1000 - 3600 * 10**6,
                pid=os.getpid())
    d = Daemon(system_bus, state_dir, str(tmp_path))
    try:
        assert get_property(system_bus, "mirror", "State") == "failed"
        assert get_property(system_bus, "config", "State") == "failed"
    finally:
        d.kill()


def test_running_job_alive_stays_running(daemon, signals):
    write_state(daemon.state_dir, "config", state="running", last_start_usec=time.time_ns() // 1000,
                pid=os.getpid())
    signals.wait_for(properties_changed("config", State="running"))
    time.sleep(0.3)
    assert get_property(daemon.bus, "config", "State") == "running"


# --- policy and methods ---

def test_reading_and_introspection_are_open_to_any_user(daemon):
    assert get_property(daemon.bus, "postgres", "State", user="nobody") == "idle"
    root = introspect(daemon.bus, job_path("postgres"), user="nobody")
    assert root.find(f"interface[@name='{JOB}']") is not None
    p = busctl(daemon.bus, "--json=short", "call", NAME, job_path("postgres"),
               "org.freedesktop.DBus.Properties", "GetAll", "s", JOB, user="nobody")
    assert set(json.loads(p.stdout)["data"][0]) == set(JOB_PROPERTIES)


@pytest.mark.parametrize("method,args", [("ListJobs", []), ("StartJob", ["s", "postgres"]),
                                         ("CancelJob", ["s", "postgres"]), ("ListBackups", ["s", ""]),
                                         ("ListBackupsWithNode", ["s", ""])])
def test_methods_are_refused_for_non_root(daemon, method, args):
    p = busctl(daemon.bus, "call", NAME, MANAGER_PATH, MANAGER, method, *args, user="nobody", check=False)
    assert p.returncode != 0
    assert "Access denied" in p.stderr or "AccessDenied" in p.stderr, p.stderr


def test_only_root_may_own_the_name(daemon):
    # The name is taken by the running daemon; a second one as `nobody` is refused by the policy before
    # it could even queue.
    p = busctl(daemon.bus, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
               "RequestName", "su", NAME, "4", user="nobody", check=False)
    assert p.returncode != 0 and ("not allowed to own" in p.stderr or "Access denied" in p.stderr), p.stderr


def test_list_jobs_as_root(daemon):
    write_state(daemon.state_dir, "mirror", state="failed", last_result="failed")
    deadline = time.monotonic() + 10
    while True:
        p = busctl(daemon.bus, "--json=short", "call", NAME, MANAGER_PATH, MANAGER, "ListJobs")
        data = json.loads(p.stdout)["data"][0]
        if ["mirror", "failed", "failed", job_path("mirror")] in data or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert data == [["postgres", "idle", "", job_path("postgres")],
                    ["mirror", "failed", "failed", job_path("mirror")],
                    ["config", "idle", "", job_path("config")],
                    ["volumes", "idle", "", job_path("volumes")]]


def test_list_backups_as_root_answers_an_array(daemon):
    p = busctl(daemon.bus, "--json=short", "call", NAME, MANAGER_PATH, MANAGER, "ListBackups", "s",
               "postgres")
    assert json.loads(p.stdout) == {"type": "a(sstttb)", "data": [[]]}
    p = busctl(daemon.bus, "--json=short", "call", NAME, MANAGER_PATH, MANAGER, "ListBackupsWithNode", "s",
               "volumes")
    assert json.loads(p.stdout) == {"type": "a(ssstttb)", "data": [[]]}


def test_list_backups_equals_list_json(system_bus, local_agent, pg_factory, tmp_path):
    src = pg_factory()
    local_agent.configure(postgres={"conninfo": src.conninfo, "destination": local_agent.store / "postgres"})
    ids = []
    for _ in range(2):
        ids.append(local_agent("run", "postgres", check=True).stdout.strip())
        time.sleep(1.1)
    listed = json.loads(local_agent("list", "--json", check=True).stdout)
    assert [b["id"] for b in listed] == ids[::-1]
    expected = [[b["job"], b["id"], b["started_usec"], b["finished_usec"], b["bytes"], b["encrypted"]]
                for b in listed]

    # Started normally (with its configuration, no --state-dir), as skyforge-agent.service does.
    d = Daemon(system_bus, str(local_agent.state_dir), str(tmp_path),
               command=[AGENT, "-c", str(local_agent.config_path), "daemon"])
    try:
        for job in ("postgres", ""):
            p = busctl(system_bus, "--json=short", "call", NAME, MANAGER_PATH, MANAGER, "ListBackups", "s", job)
            assert json.loads(p.stdout) == {"type": "a(sstttb)", "data": [expected]}
        p = busctl(system_bus, "--json=short", "call", NAME, MANAGER_PATH, MANAGER, "ListBackups", "s",
                   "mirror")
        assert json.loads(p.stdout)["data"] == [[]]  # mirror keeps no manifests
    finally:
        d.stop()


def test_list_backups_with_node_names_each_volumes_backups_node(system_bus, pg_factory, tmp_path):
    """Each node keeps its volumes backups in a folder of its own, and two nodes' backups may share an id:
    ListBackupsWithNode tells them apart ("" for the cluster-wide jobs); ListBackups keeps its six fields."""
    from fixtures.agent import write_config
    from test_volumes_nodes import node_agent, tree
    dest = tmp_path / "store" / "volumes"
    agents = {}
    for n in ("node-a", "node-b"):
        agents[n] = node_agent(tmp_path, n, dest, paths=tree(tmp_path / f"src-{n}", n))
        agents[n]("run", "volumes", check=True)
    a = agents["node-a"]
    write_config(a.config_path, {
        "agent": {"state_dir": a.state_dir, "work_dir": tmp_path / "work-node-a", "node_name": "node-a"},
        "postgres": {"conninfo": pg_factory().conninfo, "destination": tmp_path / "store" / "postgres"},
        "volumes": {"destination": dest, "paths": tmp_path / "src-node-a"}})
    a("run", "postgres", check=True)
    listed = json.loads(a("list", "--json", check=True).stdout)
    assert sorted((b["job"], b.get("node")) for b in listed) == [
        ("postgres", None), ("volumes", "node-a"), ("volumes", "node-b")]
    with_node = [[b["job"], b.get("node") or "", b["id"], b["started_usec"], b["finished_usec"], b["bytes"],
                  b["encrypted"]] for b in listed]

    d = Daemon(system_bus, str(agents["node-a"].state_dir), str(tmp_path),
               command=[AGENT, "-c", str(agents["node-a"].config_path), "daemon"])
    try:
        for job in ("volumes", "postgres", ""):
            want = [e for e in with_node if job in ("", e[0])]
            p = busctl(system_bus, "--json=short", "call", NAME, MANAGER_PATH, MANAGER, "ListBackupsWithNode",
                       "s", job)
            assert json.loads(p.stdout) == {"type": "a(ssstttb)", "data": [want]}
            p = busctl(system_bus, "--json=short", "call", NAME, MANAGER_PATH, MANAGER, "ListBackups", "s", job)
            assert json.loads(p.stdout) == {"type": "a(sstttb)", "data": [[e[:1] + e[2:] for e in want]]}
        # A job outside node folders: "" for its node.
        p = busctl(system_bus, "--json=short", "call", NAME, MANAGER_PATH, MANAGER, "ListBackupsWithNode",
                   "s", "mirror")
        assert json.loads(p.stdout) == {"type": "a(ssstttb)", "data": [[]]}
    finally:
        d.stop()


class StalledS3:
    """An "S3 server" that accepts connections, reads the requests and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = threading.Event()
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.accepted.set()

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_list_backups_on_a_stalled_store_keeps_the_loop_and_watchdog_going(system_bus, local_agent, tmp_path):
    s3 = StalledS3()
    secret = tmp_path / "stalled.secret"
    secret.write_text("x\n")
    os.chmod(secret, 0o600)
    # The S3 client would wait 300 s for this store; the watchdog fires every 0.5 s.
    local_agent.configure(remote__stalled={"endpoint": s3.endpoint, "region": "us-east-1",
                                           "access_key_id": "x", "secret_access_key_file": secret,
                                           "path_style": "yes", "timeout": "300"},
                          postgres={"destination": "stalled:bkt/postgres/"})
    os.makedirs(local_agent.state_dir, exist_ok=True)
    d = Daemon(system_bus, str(local_agent.state_dir), str(tmp_path), env={"WATCHDOG_USEC": "1000000"},
               command=[AGENT, "-c", str(local_agent.config_path), "daemon"])
    call = None
    try:
        call = subprocess.Popen(["busctl", "--system", "--timeout=120", "call", NAME, MANAGER_PATH, MANAGER, "ListBackups",
                                 "s", "postgres"], env=system_bus.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert s3.accepted.wait(60), "the listing never reached the store"
        # The store is being read and stalls. The daemon still answers, and still feeds the watchdog.
        d.notify.messages.clear()
        assert get_property(system_bus, "postgres", "State") == "idle"
        d.notify.wait_for("WATCHDOG=1", timeout=30)
        d.notify.messages.clear()
        d.notify.wait_for("WATCHDOG=1", timeout=30)
        assert call.poll() is None  # still waiting for its answer
        children = subprocess.run(["pgrep", "-P", str(d.proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 1, children  # the listing runs in a child process
        # Stopping the daemon ends the listing too, at once.
        assert d.stop(timeout=30) == 0, d.stderr()
        out, err = call.communicate(timeout=60)
        assert call.returncode != 0
        assert not os.path.exists(f"/proc/{children[0]}") or \
            open(f"/proc/{children[0]}/stat").read().split()[2] == "Z"
    finally:
        if call and call.poll() is None:
            call.kill()
        d.kill()
        s3.close()


def test_list_backups_reports_the_store_error(system_bus, local_agent, tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    secret = tmp_path / "gone.secret"
    secret.write_text("x\n")
    os.chmod(secret, 0o600)
    local_agent.configure(remote__gone={"endpoint": f"http://127.0.0.1:{port}", "region": "us-east-1",
                                        "access_key_id": "x", "secret_access_key_file": secret,
                                        "path_style": "yes", "max_attempts": "1"},
                          postgres={"destination": "gone:bkt/postgres/"})
    os.makedirs(local_agent.state_dir, exist_ok=True)
    d = Daemon(system_bus, str(local_agent.state_dir), str(tmp_path),
               command=[AGENT, "-c", str(local_agent.config_path), "daemon"])
    try:
        p = busctl(system_bus, "call", NAME, MANAGER_PATH, MANAGER, "ListBackups", "s", "postgres", check=False)
        assert p.returncode != 0
        assert "cannot list backups" in p.stderr and f"127.0.0.1:{port}" in p.stderr, p.stderr
        assert get_property(system_bus, "postgres", "State") == "idle"  # and the daemon goes on
    finally:
        d.kill()


@pytest.mark.parametrize("method", ["StartJob", "CancelJob"])
def test_start_and_cancel_without_systemd_fail_with_a_clear_error(daemon, method):
    p = busctl(daemon.bus, "call", NAME, MANAGER_PATH, MANAGER, method, "s", "postgres", check=False)
    assert p.returncode != 0
    assert "skyforge-backup@postgres.service" in p.stderr
    assert "org.freedesktop.systemd1" in p.stderr and "is systemd running" in p.stderr, p.stderr
    # ... and the daemon keeps serving.
    assert daemon.proc.poll() is None
    assert get_property(daemon.bus, "postgres", "State") == "idle"


def test_unknown_job_is_rejected(daemon):
    p = busctl(daemon.bus, "call", NAME, MANAGER_PATH, MANAGER, "StartJob", "s", "etc-passwd", check=False)
    assert p.returncode != 0 and "unknown job 'etc-passwd'" in p.stderr, p.stderr


def test_next_elapse_is_zero_without_systemd_and_answers_fast(daemon):
    t0 = time.monotonic()
    assert get_property(daemon.bus, "postgres", "NextElapseUSec") == 0
    assert time.monotonic() - t0 < 3


# --- lifecycle ---

def test_ready_carries_a_status_line(daemon):
    ready = daemon.notify.wait_for("READY=1")
    assert f"STATUS=Following 4 jobs in {daemon.state_dir}" in ready.split("\n")


def test_sigterm_stops_cleanly_with_stopping(daemon):
    assert daemon.stop() == 0, daemon.stderr()
    daemon.notify.wait_for("STOPPING=1")
    p = busctl(daemon.bus, "status", NAME, check=False)
    assert p.returncode != 0


def test_watchdog_is_fed_when_systemd_asks(system_bus, state_dir, tmp_path):
    d = Daemon(system_bus, state_dir, str(tmp_path), env={"WATCHDOG_USEC": "200000"})
    try:
        d.notify.wait_for("WATCHDOG=1", timeout=5)
    finally:
        d.kill()


def test_removed_state_dir_ends_the_daemon_with_an_error(daemon):
    shutil.rmtree(daemon.state_dir)
    rc = daemon.proc.wait(timeout=10)
    assert rc != 0
    assert "state directory" in daemon.stderr()


def context_switches(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def test_idle_daemon_does_not_wake_up(daemon):
    # Let start-up settle (a reply being flushed, the last notify), then measure 5 s of idling.
    get_property(daemon.bus, "postgres", "State")
    time.sleep(0.5)
    before = context_switches(daemon.proc.pid)
    time.sleep(5)
    after = context_switches(daemon.proc.pid)
    print(f"context switches of the idle daemon over 5 s: {after - before}")
    assert after == before


def test_the_service_is_the_small_daemon_without_the_backup_libraries(daemon):
    """`skyforge-agent daemon` becomes skyforge-agentd (same pid: systemd's MainPID and watchdog carry
    over), which maps none of the libraries only the jobs need: an idle service costs a few MiB, not the
    whole agent (issue 20, item 4; bench/daemon measures it)."""
    exe = os.readlink(f"/proc/{daemon.proc.pid}/exe")
    assert os.path.basename(exe) == "skyforge-agentd", exe
    maps = open(f"/proc/{daemon.proc.pid}/maps").read()
    for lib in ("libcurl", "libssl", "libcrypto", "libpq", "libarchive", "libiniparser"):
        assert lib not in maps, f"the daemon maps {lib}"
    assert "libsystemd" in maps
