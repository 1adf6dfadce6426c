"""Encrypted postgres dumps (zstd -> age) end to end against real PostgreSQL and the age CLI."""
import json
import os
import subprocess

from fixtures.age import age_keypair
from fixtures.postgres import load_sample_data


def store_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_encrypted_dump_roundtrip_equal_dumpall(local_agent, pg_factory, tmp_path):
    key, recipient = age_keypair(tmp_path, "key")
    other_key, other_recipient = age_keypair(tmp_path, "other")
    src = pg_factory()
    load_sample_data(src, big_rows=20000)
    local_agent.configure(postgres={"conninfo": src.conninfo, "destination": local_agent.store / "postgres",
                                    "recipients": f"{recipient}, {other_recipient}", "identity_file": key})
    backup_id = local_agent("run", "postgres", check=True).stdout.strip()

    b = json.loads(local_agent("list", "--json", check=True).stdout)[0]
    assert b["encrypted"] is True and sorted(b["recipients"]) == sorted([recipient, other_recipient])
    assert [o["name"] for o in b["objects"]] == [f"{backup_id}.sql.zst.age"]
    stored = local_agent.store / "postgres" / f"{backup_id}.sql.zst.age"
    raw = stored.read_bytes()
    assert raw.startswith(b"age-encryption.org/v1\n")
    assert b"CREATE ROLE" not in raw and b"netbox" not in raw

    dst = pg_factory()
    local_agent("restore", "postgres", backup_id, "--to", dst.conninfo, check=True)
    assert dst.dumpall() == src.dumpall()

    # Stock tools read it too: age -d | zstd -d gives the SQL of pg_dumpall, for either recipient.
    for k in (key, other_key):
        plain = subprocess.run(f"age -d -i {k} {stored} | zstd -d", shell=True, check=True,
                               capture_output=True).stdout
        assert plain.startswith(b"--\n-- PostgreSQL database cluster dump\n--")
        assert b"CREATE DATABASE gitea" in plain or b'CREATE DATABASE "gitea"' in plain


def test_restore_refuses_wrong_or_missing_identity(local_agent, pg_factory, tmp_path):
    key, recipient = age_keypair(tmp_path, "key")
    wrong, _ = age_keypair(tmp_path, "wrong")
    src = pg_factory()
    src.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
    keys = {"conninfo": src.conninfo, "destination": local_agent.store / "postgres", "recipients": recipient}
    local_agent.configure(postgres=keys)
    backup_id = local_agent("run", "postgres", check=True).stdout.strip()

    dst = pg_factory()
    before = dst.dumpall()
    p = local_agent("restore", "postgres", "latest", "--to", dst.conninfo)
    assert p.returncode == 78, p.stderr
    assert f"backup {backup_id} is encrypted" in p.stderr and "identity_file" in p.stderr

    local_agent.configure(postgres=dict(keys, identity_file=wrong))
    p = local_agent("restore", "postgres", "latest", "--to", dst.conninfo)
    assert p.returncode == 65, p.stderr
    assert f"no identity in {wrong} matches the recipients of backup {backup_id}" in p.stderr
    assert dst.dumpall() == before

    local_agent.configure(postgres=dict(keys, identity_file=key))
    local_agent("restore", "postgres", "latest", "--to", dst.conninfo, check=True)
    assert dst.psql("SELECT x FROM t").strip() == "42"


def bech32_encode(hrp, data):
    """BIP 173 bech32 of bytes (age's recipient encoding)."""
    charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    acc = bits = 0
    words = []
    for b in data:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)

    def polymod(values):
        gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]
        chk = 1
        for v in values:
            top = chk >> 25
            chk = (chk & 0x1ffffff) << 5 ^ v
            for i in range(5):
                chk ^= gen[i] if (top >> i) & 1 else 0
        return chk
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    pm = polymod(expanded + words + [0] * 6) ^ 1
    checksum = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(charset[w] for w in words + checksum)


def test_unusable_recipient_stores_nothing(local_agent, pg_factory):
    """Fail closed: a well-formed recipient that encryption cannot use (the all-zero X25519 point, a
    low-order key) fails the run with nothing stored: no object, no manifest."""
    src = pg_factory()
    dest = local_agent.store / "postgres"
    local_agent.configure(postgres={"conninfo": src.conninfo, "destination": dest,
                                    "recipients": bech32_encode("age", bytes(32))})
    p = local_agent("run", "postgres")
    assert p.returncode == 78, p.stderr
    assert "cannot encrypt the dump" in p.stderr and "nothing was stored" in p.stderr
    assert p.stdout == ""
    assert not dest.exists() or store_files(dest) == []
    assert json.loads(local_agent("list", "--json", check=True).stdout) == []
