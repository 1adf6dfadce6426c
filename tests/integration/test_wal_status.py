"""The WAL stream watched like the jobs (issue 18 item 5): its state file read by the D-Bus daemon
(/org/skyforge/Agent1/wal: State, WalLagBytes, LastWalSegment, LastWalUSec, ...), `status` and
`status --json`, the Prometheus textfile, and journal entries with the jobs' fields, against a real
PostgreSQL 15 server streaming over a real slot. The journal is a datagram socket of the test's own, bound
over /run/systemd in the stream's private mount namespace, so every field the agent sends is seen."""
import json
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from fixtures.agent import AGENT, write_config
from test_daemon import NAME, Daemon, busctl
from test_pitr import pitr, wait_for  # noqa: F401 (fixture)

WAL_PATH = "/org/skyforge/Agent1/wal"
WAL_IFACE = "org.skyforge.Agent1.WalStream"
MSG_STARTED = "b8d06561d1a7481891ca96c3ae2ef6a0"
MSG_SUCCEEDED = "eac4d542a7f643f782ac674f5c39d97f"
MSG_WAL_SEGMENT = "30de0dd3a74146bb9b609f4a7e252a6b"
SEGMENT = 16 * 1024 * 1024


def wal_prop(bus, prop):
    p = busctl(bus, "--json=short", "get-property", NAME, WAL_PATH, WAL_IFACE, prop)
    return json.loads(p.stdout)["data"]


def parse_entry(data):
    """journald's native protocol: KEY=VALUE lines, or KEY\\n<le64 size>VALUE\\n for binary values."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            fields[k.decode()] = v.decode()
            i = nl + 1
        else:
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            fields[line.decode()] = data[nl + 9:nl + 9 + n].decode()
            i = nl + 9 + n + 1
    return fields


class Journal:
    def __init__(self, root):
        self.dir = os.path.join(root, "run-systemd")
        os.makedirs(os.path.join(self.dir, "journal"))
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.path.join(self.dir, "journal", "socket"))
        self.sock.setblocking(False)
        self.entries = []

    def wrap(self, argv):
        return ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /run/systemd && exec "$@"', self.dir] + argv

    def find(self, **match):
        while True:
            try:
                self.entries.append(parse_entry(self.sock.recv(1 << 20)))
            except BlockingIOError:
                break
        return [e for e in self.entries if all(e.get(k) == v for k, v in match.items())]

    def close(self):
        self.sock.close()


def metrics(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            if line and not line.startswith("#"):
                k, v = line.split()
                out[k] = float(v)
    return out


def wal_status_json(p):
    docs = [o for o in json.loads(p.agent("status", "--json").stdout) if o["job"] == "wal-stream"]
    return docs[0] if docs else None


def test_stream_state_on_dbus_in_status_metrics_and_journal(pitr, system_bus, tmp_path):
    p = pitr()
    state = os.path.join(p.root, "state")
    prom = os.path.join(p.root, "skyforge.prom")
    write_config(Path(p.conf), {
        "agent": {"state_dir": state, "metrics_file": prom},
        "postgres": {"conninfo": p.pg.conninfo, "destination": p.store, "wal_flush_seconds": 1},
    })
    os.makedirs(state)
    d = Daemon(system_bus, state, str(tmp_path), command=[AGENT, "-c", p.conf, "daemon"])
    journal = Journal(p.root)
    streams = []

    def start():
        log = open(os.path.join(p.root, f"stream-{len(streams)}.log"), "w+")
        s = subprocess.Popen(journal.wrap([AGENT, "-c", p.conf, "wal-stream"]), stdout=subprocess.DEVNULL,
                             stderr=log, env=p.env)
        s.log = log
        streams.append(s)
        wait_for(lambda: s.poll() is not None or wal_prop(system_bus, "State") == "running", "State running")
        assert s.poll() is None, open(log.name).read()
        return s

    try:
        # Never ran here: the object exists and says so; status and the metrics leave it out.
        assert wal_prop(system_bus, "State") == "never"
        assert wal_prop(system_bus, "LastWalSegment") == "" and wal_prop(system_bus, "LastWalUSec") == 0
        assert "WAL stream" not in p.agent("status").stdout and wal_status_json(p) is None

        s = start()
        assert journal.find(MESSAGE_ID=MSG_STARTED, SKYFORGE_JOB="wal-stream")
        p.insert_rows(1, 20)
        f = p.switch_and_wait()
        wait_for(lambda: wal_prop(system_bus, "LastWalSegment") == f, "LastWalSegment on the bus")
        stored_at = wal_prop(system_bus, "LastWalUSec")
        assert abs(stored_at / 1e6 - time.time()) < 120
        assert wal_prop(system_bus, "Timeline") == 1 and wal_prop(system_bus, "Slot") == "skyforge"
        # What the slot holds: the server's end of WAL beyond what is stored, well under a segment here.
        wait_for(lambda: wal_prop(system_bus, "WalLagBytes") < SEGMENT, "a small lag")
        assert wal_prop(system_bus, "WalLagWarning") is False

        text = p.agent("status").stdout
        assert "WAL stream: running (PID" in text and f"last segment {f} stored" in text, text
        j = wal_status_json(p)
        assert j["state"] == "running" and j["last_segment"] == f and j["timeline"] == 1, j
        assert j["slot"] == "skyforge" and isinstance(j["lag_bytes"], int) and j["lag_warning"] is False
        assert 0 <= j["last_segment_age_seconds"] < 120 and j["segments"] >= 1 and j["last_error"] is None

        m = wait_for(lambda: (lambda m: m if m.get("skyforge_wal_last_segment_timestamp_seconds") ==
                              stored_at / 1e6 else None)(metrics(prom)), "the metrics of the segment")
        assert m["skyforge_wal_stream_up"] == 1 and "skyforge_wal_lag_bytes" in m
        assert m["skyforge_wal_lag_warning"] == 0

        (e,) = journal.find(MESSAGE_ID=MSG_WAL_SEGMENT, SKYFORGE_BACKUP_ID=f)
        assert e["SKYFORGE_JOB"] == "wal-stream" and e["SKYFORGE_BYTES"] == str(SEGMENT)
        assert e["PRIORITY"] == "6" and f in e["MESSAGE"]

        # SIGTERM: stopped, its last segment still shown, and a "succeeded" entry with the duration.
        s.send_signal(signal.SIGTERM)
        assert s.wait(timeout=60) == 0, open(s.log.name).read()
        wait_for(lambda: wal_prop(system_bus, "State") == "stopped", "State stopped")
        assert wal_prop(system_bus, "LastWalSegment") == f
        (e,) = journal.find(MESSAGE_ID=MSG_SUCCEEDED, SKYFORGE_JOB="wal-stream")
        assert int(e["SKYFORGE_DURATION_USEC"]) > 0 and int(e["SKYFORGE_BYTES"]) >= SEGMENT
        assert "WAL stream: stopped; last segment " + f in p.agent("status").stdout
        assert metrics(prom)["skyforge_wal_stream_up"] == 0

        # kill -9 writes nothing: the daemon notices the process is gone, and so does status.
        s = start()
        s.kill()
        s.wait()
        wait_for(lambda: wal_prop(system_bus, "State") == "failed", "State failed after kill -9")
        assert "ended without recording" in wal_prop(system_bus, "LastError")
        assert wal_status_json(p)["state"] == "failed"
        assert "WAL stream: failed: the stream process" in p.agent("status").stdout
    finally:
        for s in streams:
            if s.poll() is None:
                s.kill()
                s.wait()
            s.log.close()
        journal.close()
        d.stop()
