"""The command line as an operator meets it (issue 19): status wording, and more to come."""
import json


def test_status_shows_jobs_without_a_section_as_not_configured(local_agent, pg):
    local_agent.configure(postgres={"conninfo": pg.conninfo})
    st = {j["job"]: j for j in json.loads(local_agent("status", "--json", check=True).stdout)}
    assert st["postgres"]["state"] == "idle"
    assert st["mirror"]["state"] == st["config"]["state"] == "not configured"
    text = local_agent("status", check=True).stdout.splitlines()
    assert text[2].split()[:3] == ["mirror", "not", "configured"], text

    # A job that ran and then lost its section keeps its last result, and `run all` leaves it out.
    local_agent.configure(postgres={"conninfo": pg.conninfo}, config={"manifests": local_agent.store})
    assert json.loads(local_agent("status", "--json", check=True).stdout)[2]["state"] == "idle"
    # With no sections at all, `run all` runs postgres only (its defaults: the local socket, which has no
    # server here), and libpq's two lines read as two sentences.
    local_agent.configure(agent={"state_dir": local_agent.state_dir})
    p = local_agent("run", "all")
    assert p.returncode == 69, p.stderr
    assert "Job postgres started" in p.stderr and "config" not in p.stderr.replace("conninfo", ""), p.stderr
    assert "No such file or directory. Is the server running locally" in p.stderr, p.stderr


def test_man_pages_are_lint_clean():
    """mandoc -Tlint finds nothing at warning level or above in either page (the date it can parse, no
    unknown macros, no broken lists); style remarks such as long source lines are not counted."""
    import os
    import subprocess
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    pages = [os.path.join(root, "man", p) for p in ("skyforge-agent.8", "skyforge-agent.conf.5")]
    p = subprocess.run(["mandoc", "-Tlint", "-W", "warning"] + pages, capture_output=True, text=True)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr


def run_with_terminal(agent, *args):
    """Runs the agent with stderr on a pseudo-terminal; returns (exit code, what it drew there)."""
    import os
    import pty
    import subprocess
    master, slave = pty.openpty()
    from fixtures.agent import AGENT
    p = subprocess.Popen([AGENT, "-c", str(agent.config_path), *args], stdout=subprocess.PIPE,
                         stderr=slave, env={k: v for k, v in agent.env.items() if k != "SKYFORGE_NO_PROGRESS"})
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    p.communicate(timeout=300)
    return p.returncode, out.decode(errors="replace")


def test_progress_follows_the_terminal_unless_told(local_agent, pg):
    local_agent.configure(postgres={"conninfo": pg.conninfo, "destination": local_agent.store / "pg"})
    rc, drawn = run_with_terminal(local_agent, "run", "postgres")
    assert rc == 0 and "\r\x1b[Kdumping: " in drawn, drawn
    rc, drawn = run_with_terminal(local_agent, "--no-progress", "run", "postgres")
    assert rc == 0 and "dumping: " not in drawn and "\x1b[K" not in drawn, drawn
    # --progress draws it on a pipe too (for a log that wants it).
    p = local_agent("--progress", "run", "postgres", check=True)
    assert "\x1b[Kdumping: " in p.stderr, p.stderr  # (text mode reads the \r as a new line)
    p = local_agent("run", "postgres", check=True)
    assert "dumping: " not in p.stderr, p.stderr


def agent_cmd(*args):
    import subprocess
    from fixtures.agent import AGENT
    return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=60)


COMMANDS = ["run", "list", "status", "verify", "restore", "prune", "recover", "config", "keygen", "daemon",
            "version", "wal-stream", "wal-fetch"]


def test_help_groups_the_commands_within_80_columns():
    p = agent_cmd("--help")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    headings = [line for line in lines if line.endswith(":") and not line.startswith(" ")]
    assert headings[:5] == ["Back up:", "Look:", "Restore:", "Maintain:", "Set up:"], headings
    listed = {line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("   ")
              and not line.lstrip().startswith("-")}
    assert set(COMMANDS) <= listed, set(COMMANDS) - listed


def test_usage_lines_fit_80_columns_one_per_alternative():
    for cmd in COMMANDS:
        out = agent_cmd(cmd, "--help").stdout.splitlines()
        usage = out[:out.index("")] if "" in out else out
        assert usage[0].startswith("Usage: skyforge-agent"), (cmd, usage)
        assert all(len(line) <= 80 for line in usage), (cmd, usage)
    restore = agent_cmd("restore", "--help").stdout
    assert restore.count("skyforge-agent [-c FILE] restore ") == 7, restore
    # An alternative inside brackets stays one alternative, on one line.
    assert "[--time TS | --lsn LSN]" in restore, restore


def test_unknown_commands_and_options_get_the_closest_one():
    p = agent_cmd("stauts")
    assert p.returncode == 64
    assert 'unknown command "stauts"; did you mean "status"?' in p.stderr, p.stderr
    p = agent_cmd("frobnicate")
    assert p.returncode == 64 and "did you mean" not in p.stderr and "unknown command" in p.stderr
    p = agent_cmd("--verbosee", "status")
    assert p.returncode == 64 and "unknown option --verbosee; did you mean --verbose?" in p.stderr, p.stderr
    p = agent_cmd("-c")
    assert p.returncode == 64 and "option -c needs an argument" in p.stderr, p.stderr
