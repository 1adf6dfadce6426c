"""Bash completion (conf/bash-completion/skyforge-agent, installed by the Debian package through
dh_bash-completion): commands, options per command, job names from the configuration, backup ids of a real
store, recover's step names (issue 19, item 1). Each case sources bash-completion and the file in a real
bash and asks for the candidates as readline would."""
import os
import re
import shlex
import subprocess

from fixtures.agent import AGENT

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPLETION = os.path.join(ROOT, "conf", "bash-completion", "skyforge-agent")
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


def complete(line, env=None):
    """The candidates bash offers for `line` (the cursor at its end), as a sorted list."""
    assert line.startswith("skyforge-agent")
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    words[0] = AGENT
    script = "\n".join([
        f"source {BASH_COMPLETION}",
        f"source {COMPLETION}",
        "COMP_WORDS=(" + " ".join(shlex.quote(w) for w in words) + ")",
        f"COMP_CWORD={len(words) - 1}",
        "COMP_LINE=" + shlex.quote(AGENT + line[len("skyforge-agent"):]),
        "COMP_POINT=${#COMP_LINE}",
        "_skyforge_agent",
        'printf "%s\\n" "${COMPREPLY[@]}"',
    ])
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0 and not p.stderr, p.stderr
    return sorted(x for x in p.stdout.split("\n") if x)


def test_commands_complete_from_their_prefix():
    assert complete("skyforge-agent re") == ["recover", "restore"]
    assert "status" in complete("skyforge-agent ")
    assert complete("skyforge-agent --ver") == ["--verbose", "--version"]


def test_restore_offers_what_can_be_restored():
    assert complete("skyforge-agent restore ") == ["config", "mirror", "postgres", "volumes"]


def test_restore_postgres_offers_the_ids_in_the_store(local_agent, pg):
    local_agent.configure(postgres={"conninfo": pg.conninfo, "destination": local_agent.store / "postgres"})
    ids = sorted(local_agent("run", "postgres", check=True).stdout.split()
                 + local_agent("run", "postgres", check=True).stdout.split())
    assert len(set(ids)) == 2
    got = complete(f"skyforge-agent -c {local_agent.config_path} restore postgres ")
    assert got == sorted(ids + ["latest"])
    # A prefix narrows them; verify offers the same ids (no "latest" there).
    assert complete(f"skyforge-agent -c {local_agent.config_path} restore postgres {ids[1][:15]}") == [ids[1]]
    assert complete(f"skyforge-agent --config={local_agent.config_path} verify postgres ") == ids


def test_job_names_come_from_the_configuration(local_agent, pg):
    local_agent.configure(postgres={"conninfo": pg.conninfo})
    assert complete(f"skyforge-agent -c {local_agent.config_path} run ") == ["all", "postgres"]
    local_agent.configure(postgres={"conninfo": pg.conninfo},
                          config={"manifests": local_agent.store, "recipients": "age1" + "q" * 58})
    got = complete(f"skyforge-agent -c {local_agent.config_path} run ")
    # The config job's section is there now (its recipient is not valid, but status still lists it).
    assert got == ["all", "config", "postgres"], got


def test_a_failing_lookup_completes_nothing(tmp_path):
    assert complete(f"skyforge-agent -c {tmp_path}/missing.conf restore postgres ") == ["latest"]


def test_recover_steps_are_the_steps_of_recover_plan(local_agent):
    local_agent.configure()
    plan = local_agent("recover", "--plan").stdout
    steps = [line.split()[0] for line in plan.splitlines() if line and not line.startswith(" ")]
    assert steps, plan
    assert complete("skyforge-agent recover --step ") == sorted(steps)
    assert complete("skyforge-agent recover --step ma") == ["manifests"]


def test_every_option_offered_is_one_the_command_takes():
    text = open(COMPLETION).read()
    table = dict(re.findall(r'\[([a-z]+)\]="([^"]*)"', text))
    assert set(table) >= {"run", "list", "status", "verify", "restore", "prune", "recover", "config"}
    for cmd, opts in table.items():
        usage = subprocess.run([AGENT, cmd, "--help"], capture_output=True, text=True, check=True).stdout
        for o in opts.split():
            if o != "--help":
                assert o in usage, f"{cmd} {o} is not in `skyforge-agent {cmd} --help`"
        assert complete(f"skyforge-agent {cmd} -") == sorted(opts.split())


def test_run_dry_run_offers_the_jobs_that_have_one(local_agent, pg):
    local_agent.configure(postgres={"conninfo": pg.conninfo},
                          config={"manifests": local_agent.store, "recipients": "age1" + "q" * 58},
                          volumes={"destination": local_agent.store / "volumes"})
    assert "volumes" in complete(f"skyforge-agent -c {local_agent.config_path} run ")
    got = complete(f"skyforge-agent -c {local_agent.config_path} run --dry-run ")
    assert got == ["config", "postgres"], got
    assert complete(f"skyforge-agent -c {local_agent.config_path} run postgres -n c") == ["config"]


def test_global_options_include_progress():
    assert complete("skyforge-agent --pro") == ["--progress"]
    assert complete("skyforge-agent --no-") == ["--no-progress"]
