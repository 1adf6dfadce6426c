"""The journal message catalog: journalctl imports it, and it explains every MESSAGE_ID the agent logs
(agent/log/log.h) with a subject, its origin, documentation and text."""
import os
import re
import shutil
import subprocess

import pytest

SRCDIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CATALOG = os.path.join(SRCDIR, "agent", "log", "skyforge-agent.catalog")
LOG_H = os.path.join(SRCDIR, "agent", "log", "log.h")


def message_ids():
    ids = dict(re.findall(r'#define (SKYFORGE_MESSAGE_\w+)\s+"([0-9a-f]{32})"', open(LOG_H).read()))
    assert len(ids) >= 5, f"expected the message ids in {LOG_H}"
    return ids


@pytest.fixture
def catalog_root(tmp_path):
    journalctl = shutil.which("journalctl")
    if not journalctl:
        pytest.fail("journalctl is not installed (apt-get install systemd); the catalog cannot be checked")
    d = tmp_path / "usr" / "lib" / "systemd" / "catalog"
    d.mkdir(parents=True)
    shutil.copy(CATALOG, d)
    p = subprocess.run([journalctl, f"--root={tmp_path}", "--update-catalog"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), f"journalctl --update-catalog:\n{p.stderr}"
    assert (tmp_path / "var" / "lib" / "systemd" / "catalog" / "database").exists()
    return journalctl, tmp_path


def test_catalog_explains_every_message_id(catalog_root):
    journalctl, root = catalog_root
    p = subprocess.run([journalctl, f"--root={root}", "--list-catalog"],
                       capture_output=True, text=True, timeout=60, check=True)
    listed = {line.split()[0] for line in p.stdout.splitlines() if line.strip()}
    for name, mid in message_ids().items():
        assert mid in listed, f"{name} ({mid}) has no catalog entry"


def test_catalog_entries_have_subject_origin_documentation_and_text(catalog_root):
    journalctl, root = catalog_root
    for name, mid in message_ids().items():
        p = subprocess.run([journalctl, f"--root={root}", "--dump-catalog", mid],
                           capture_output=True, text=True, timeout=60, check=True)
        head, _, body = p.stdout.partition("\n\n")
        assert re.search(r"^Subject: .*@SKYFORGE_JOB@", head, re.M), f"{name}: subject names no job"
        assert re.search(r"^Defined-By: skyforge-agent$", head, re.M), name
        assert re.search(r"^Documentation: man:skyforge-agent\(8\)$", head, re.M), name
        assert len(body.split()) > 30, f"{name}: the explanation is too short:\n{body}"


def test_failure_entry_says_what_to_do(catalog_root):
    journalctl, root = catalog_root
    mid = message_ids()["SKYFORGE_MESSAGE_JOB_FAILED"]
    text = subprocess.run([journalctl, f"--root={root}", "--dump-catalog", mid],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert "systemctl start skyforge-backup@@SKYFORGE_JOB@" in text
    assert "skyforge-agent config check" in text
