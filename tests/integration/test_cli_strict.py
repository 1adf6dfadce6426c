"""The rough edges of issue 19 items 4 and 5: every command's unknown option gets the closest known one,
an argument beyond those a command takes is an error with its usage line, read-only commands create
nothing (a local destination that does not exist stays so), and backup objects carry a Content-Type
(S3: checked with boto3's head_object against moto; local: the user.skyforge.content-type attribute)."""
import json
import os

import pytest

from fixtures.postgres import load_sample_data
from test_cli import agent_cmd
from test_json import configure_local
from test_postgres_s3 import bucket_keys, remote_keys


@pytest.mark.parametrize("args,typed,meant", [
    (["list", "--jsn"], "--jsn", "--json"),
    (["status", "--jsonn"], "--jsonn", "--json"),
    (["run", "postgres", "--dryrun"], "--dryrun", "--dry-run"),
    (["prune", "--dry-rnu"], "--dry-rnu", "--dry-run"),
    (["verify", "--restor-test"], "--restor-test", "--restore-test"),
    (["restore", "postgres", "--databse", "x"], "--databse", "--database"),
    (["recover", "--stp", "minio"], "--stp", "--step"),
    (["config", "check", "--conect"], "--conect", "--connect"),
    (["keygen", "--outptu", "k"], "--outptu", "--output"),
    (["daemon", "--stat-dir", "d"], "--stat-dir", "--state-dir"),
    # Two neighbours swapped count as one edit: a short name gets its suggestion too.
    (["list", "--josn"], "--josn", "--json"),
])
def test_unknown_command_option_gets_the_closest_one(args, typed, meant):
    p = agent_cmd("-c", "/nonexistent/agent.conf", *args)
    assert p.returncode == 64, p.stderr
    cmd = args[0]
    assert f"skyforge-agent {cmd}: unknown option {typed}; did you mean {meant}?" in p.stderr, p.stderr
    assert f"Try 'skyforge-agent {cmd} --help'." in p.stderr
    # One message, not getopt's own "unrecognized option" line besides it.
    assert "unrecognized" not in p.stderr, p.stderr


def test_a_long_option_without_its_argument_is_named_as_typed():
    p = agent_cmd("-c", "/nonexistent/agent.conf", "restore", "postgres", "--to-datadir")
    assert p.returncode == 64
    assert "skyforge-agent restore: option --to-datadir needs an argument." in p.stderr, p.stderr
    p = agent_cmd("-c", "/nonexistent/agent.conf", "restore", "-t")
    assert p.returncode == 64 and "option -t needs an argument." in p.stderr, p.stderr


@pytest.mark.parametrize("args,extra", [
    (["list", "postgres", "--json", "EXTRA"], "EXTRA"),
    (["status", "EXTRA"], "EXTRA"),
    (["prune", "postgres", "EXTRA"], "EXTRA"),
    (["restore", "postgres", "latest", "EXTRA", "--to", "host=x"], "EXTRA"),
    (["recover", "--plan", "EXTRA"], "EXTRA"),
    (["daemon", "EXTRA"], "EXTRA"),
    (["wal-stream", "EXTRA"], "EXTRA"),
    (["version", "EXTRA"], "EXTRA"),
])
def test_extra_arguments_are_an_error_with_the_usage_line(args, extra):
    p = agent_cmd("-c", "/nonexistent/agent.conf", *args)
    assert p.returncode == 64, (args, p.returncode, p.stdout, p.stderr)
    assert f"skyforge-agent {args[0]}: unexpected argument '{extra}'" in p.stderr, p.stderr
    assert f"Usage: skyforge-agent [-c FILE] {args[0]}" in p.stderr, p.stderr
    assert p.stdout == ""


def test_read_only_commands_do_not_create_the_destination(local_agent, pg, tmp_path):
    configure_local(local_agent, pg, tmp_path)
    dest = local_agent.store / "postgres"
    assert not dest.exists()

    p = local_agent("list")
    assert p.returncode == 0, p.stderr
    assert f"no backups yet: {dest} does not exist" in p.stderr and "No backups." in p.stderr
    p = local_agent("list", "--json")
    assert p.returncode == 0 and json.loads(p.stdout) == [], p.stderr
    assert not dest.exists()

    p = local_agent("verify", "postgres")
    assert p.returncode == 66 and f"no backups of postgres at {dest}; has the job run?" in p.stderr, p.stderr
    p = local_agent("restore", "postgres", "--to", pg.conninfo)
    assert p.returncode == 66 and f"no backups yet: {dest} does not exist" in p.stderr, p.stderr
    p = local_agent("prune", "--dry-run")
    assert p.returncode == 0 and f"no backups yet: {dest} does not exist" in p.stdout, p.stdout + p.stderr
    p = local_agent("prune")
    assert p.returncode == 0, p.stderr
    p = local_agent("status")
    assert p.returncode == 0, p.stderr
    p = local_agent("config", "check", "--connect")
    assert "directory does not exist yet; the first run creates it" in p.stdout, p.stdout + p.stderr
    assert not dest.exists() and not local_agent.store.exists()

    # The first run creates it.
    local_agent("run", "postgres", check=True)
    assert dest.is_dir()


def xattr(path, name):
    try:
        return os.getxattr(path, name).decode()
    except OSError:
        return None


def test_local_backup_objects_keep_their_content_type(local_agent, pg, tmp_path):
    load_sample_data(pg, big_rows=100)
    configure_local(local_agent, pg, tmp_path, per_database="yes")
    bid = local_agent("run", "postgres", check=True).stdout.strip()
    dest = local_agent.store / "postgres"
    try:
        os.setxattr(dest, "user.skyforge.probe", b"1")
    except OSError:
        pytest.skip("this file system keeps no user extended attributes")
    assert xattr(dest / f"{bid}.sql.zst.age", "user.skyforge.content-type") == "application/age-encrypted"
    assert xattr(dest / f"{bid}.json", "user.skyforge.content-type") == "application/json"
    assert xattr(dest / bid / "db" / "gitea.dump.age", "user.skyforge.content-type") == \
        "application/age-encrypted"


def test_s3_backup_objects_carry_a_content_type(s3_server, s3_bucket, local_agent, pg, tmp_path):
    load_sample_data(pg, big_rows=100)
    configure_local(local_agent, pg, tmp_path, {"remote__minio": remote_keys(s3_server, tmp_path)},
                    destination=f"minio:{s3_bucket}")
    bid = local_agent("run", "postgres", check=True).stdout.strip()
    c = s3_server.client()
    assert bucket_keys(c, s3_bucket) == [f"{bid}.json", f"{bid}.sql.zst.age"]
    assert c.head_object(Bucket=s3_bucket, Key=f"{bid}.sql.zst.age")["ContentType"] == \
        "application/age-encrypted"
    assert c.head_object(Bucket=s3_bucket, Key=f"{bid}.json")["ContentType"] == "application/json"

    # Unencrypted: zstd.
    configure_local(local_agent, pg, tmp_path, {"remote__minio": remote_keys(s3_server, tmp_path)},
                    destination=f"minio:{s3_bucket}", recipients="")
    bid2 = local_agent("run", "postgres", check=True).stdout.strip()
    assert c.head_object(Bucket=s3_bucket, Key=f"{bid2}.sql.zst")["ContentType"] == "application/zstd"
