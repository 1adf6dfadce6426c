"""`config check` as a process: FILE:LINE messages on stderr, exit 78 on errors, "FILE: OK" otherwise.

Runs the real binary: `skyforge-agent -c FILE config check`.
"""
import os
import subprocess

import pytest

BUILDDIR = os.environ.get("SKYFORGE_BUILDDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
AGENT = os.path.join(BUILDDIR, "skyforge-agent")
EX_CONFIG = 78


def config(path, *args):
    return subprocess.run([AGENT, "-c", str(path), "config", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def write(tmp_path):
    def _write(name, text, mode=0o644):
        p = tmp_path / name
        p.write_text(text)
        p.chmod(mode)
        return p
    return _write


def test_config_check_reports_every_error_with_line_and_exits_78(write):
    secret = write("minio.secret", "s3cr3t\n", 0o644)
    conf = write("agent.conf", f"""[agent]
log_level = loud

[remote.minio]
endpoint = http://127.0.0.1:9000
access_key_id = backup
secret_access_key_file = {secret}

[postgres]
retention_dys = 7
destination = offsite:skyforge-backups/postgres/
""")
    p = config(conf, "check")
    assert p.returncode == EX_CONFIG, p.stderr
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert lines == [
        f"{conf}:2: log_level: 'loud' is not a log level (debug, info, notice, warning, err)",
        f"{conf}:7: secret_access_key_file: secret file {secret} is accessible by group or others "
        f"(mode 0644); run chmod 600 {secret}",
        f"{conf}:10: unknown key 'retention_dys' in [postgres]; did you mean 'retention_days'?",
        f"{conf}:11: destination: remote 'offsite' is not defined; add a [remote.offsite] section or use "
        f"one of the defined remotes: minio",
    ]


def test_config_check_passes_after_fixes_and_prints_warnings(write):
    secret = write("minio.secret", "s3cr3t\n", 0o600)
    conf = write("agent.conf", f"""[remote.minio]
endpoint = https://127.0.0.1:9000
access_key_id = backup
secret_access_key_file = {secret}
tls_verify = no

[postgres]
retention_days = 7
""")
    p = config(conf, "check")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{conf}: OK (1 warning)\n"
    assert p.stderr.startswith(f"{conf}:5: warning: tls_verify = no")


def test_config_check_refuses_a_node_name_that_cannot_name_a_folder(write, tmp_path):
    # node_name names this node's folder of volumes backups (DEST/NODE/) and its Lease holder.
    conf = write("agent.conf", f"""[agent]
node_name = ../node-a

[volumes]
destination = {tmp_path}/volumes
""")
    p = config(conf, "check")
    assert p.returncode == EX_CONFIG, p.stderr
    assert p.stderr.splitlines() == [
        f"{conf}:2: node_name: '../node-a' is not a node name (1 to 253 of the letters, digits, '-', '_' and "
        f"'.', not starting with '.' or '-', and not a backup id): it names this node's folder of volumes "
        f"backups and its Lease holder; use the node's Kubernetes name"]
    conf.write_text(conf.read_text().replace("../node-a", "node-a"))
    p = config(conf, "check")
    assert (p.returncode, p.stdout, p.stderr) == (0, f"{conf}: OK\n", "")


def test_config_check_warns_when_the_host_name_cannot_stand_in_for_node_name(write, tmp_path):
    # Unset node_name means the host name; in a UTS namespace of its own the host name can be one that
    # cannot name a folder.
    conf = write("agent.conf", f"""[volumes]
destination = {tmp_path}/volumes
""")
    # hostname(1) refuses "node a"; sethostname(2) takes it, as the kernel does.
    run = ["unshare", "--uts", "/usr/bin/python3", "-c",
           "import os, socket, sys; socket.sethostname(sys.argv[1]); "
           "os.execv(sys.argv[2], [sys.argv[2], '-c', sys.argv[3], 'config', 'check'])"]
    p = subprocess.run(run + ["node a", AGENT, str(conf)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{conf}: OK (1 warning)\n"
    assert p.stderr.startswith(f'{conf}:1: warning: [volumes] stores into a folder named after this node, and '
                               f'node_name is unset, so the host name "node a" would name it'), p.stderr
    assert "set in [agent] to the node's Kubernetes name" in p.stderr
    p = subprocess.run(run + ["node-a", AGENT, str(conf)], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"{conf}: OK\n", "")
    conf.write_text("[agent]\nnode_name = node-a\n" + conf.read_text())
    p = subprocess.run(run + ["node a", AGENT, str(conf)], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"{conf}: OK\n", "")


def test_config_check_missing_explicit_file(tmp_path):
    missing = tmp_path / "nope.conf"
    p = config(missing, "check")
    assert p.returncode == EX_CONFIG
    assert p.stderr == f"{missing}: cannot read {missing}: No such file or directory\n"


def test_config_show_never_prints_secrets(write):
    secret = write("offsite.secret", "TOPSECRET-VALUE\n", 0o600)
    conf = write("agent.conf", f"""[remote.offsite]
endpoint = https://s3.example
access_key_id = AKIAEXAMPLE
secret_access_key_file = {secret}
""")
    p = config(conf, "show")
    assert p.returncode == 0, p.stderr
    assert "TOPSECRET" not in p.stdout
    assert f"secret_access_key_file = {secret}\n" in p.stdout
    assert "retention_days = 30\n" in p.stdout


def test_missing_secret_of_one_remote_fails_only_what_uses_it(write, tmp_path):
    """Two remotes, one with a missing secret file: `status` and `list postgres` (local store) work;
    `run config` (on the broken remote) fails with 78 and says so once; `config check` still fails."""
    good = write("good.secret", "s3cr3t\n", 0o600)
    missing = tmp_path / "broken.secret"
    conf = write("agent.conf", f"""[agent]
state_dir = {tmp_path}/state
work_dir = {tmp_path}/work

[remote.good]
endpoint = http://127.0.0.1:9
access_key_id = backup
secret_access_key_file = {good}

[remote.broken]
endpoint = http://127.0.0.1:9
access_key_id = backup
secret_access_key_file = {missing}

[postgres]
destination = {tmp_path}/store/postgres

[config]
manifests = {tmp_path}
kubeconfig = {tmp_path}/k3s.yaml
recipients = age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
destination = broken:skyforge-backups/config/
""")
    env = dict(os.environ, SKYFORGE_NO_PROGRESS="1")
    env.pop("JOURNAL_STREAM", None)

    def agent(*args):
        return subprocess.run([AGENT, "-c", str(conf), *args], capture_output=True, text=True, timeout=60,
                              env=env)

    p = agent("status")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].startswith("JOB")
    p = agent("list", "postgres")
    assert p.returncode == 0, p.stderr
    assert str(missing) not in p.stderr

    p = agent("run", "config")
    assert p.returncode == EX_CONFIG, p.stderr
    assert p.stderr.count(f"secret file {missing} does not exist") == 1, p.stderr
    assert 'remote "broken"' in p.stderr

    p = config(conf, "check")
    assert p.returncode == EX_CONFIG
    assert f"{conf}:13: secret_access_key_file: secret file {missing} does not exist" in p.stderr

    # status works even when the configuration has errors elsewhere: one warning, then the state.
    conf.write_text(conf.read_text().replace("[postgres]\n", "[postgres]\nretention_days = many\n"))
    p = agent("status")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].startswith("JOB")
    assert p.stderr.count("\n") == 1 and "error(s), first: retention_days" in p.stderr, p.stderr
    assert agent("list", "postgres").returncode == EX_CONFIG
