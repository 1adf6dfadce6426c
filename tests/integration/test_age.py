"""The agent's age encryption is byte-compatible with the age CLI (Debian's age 1.1.1) both ways."""
import hashlib
import os
import stat
import subprocess

import pytest

from fixtures.age import AGE_TOOL

CHUNK = 64 * 1024
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 7 * 1024 * 1024 + 3]


def payload(n):
    # Incompressible and position-dependent, so reordered or dropped chunks cannot go unnoticed.
    return os.urandom(n)


@pytest.fixture
def keys(agekit):
    """Three recipients: two identities from age-keygen, one from the agent's keygen."""
    a1 = agekit.age_keygen("age1.txt")
    a2 = agekit.age_keygen("age2.txt")
    s1 = agekit.agent_keygen("agent1.txt")
    return [a1, a2, s1]


@pytest.mark.parametrize("size", SIZES)
def test_age_cli_decrypts_agent_output(agekit, keys, size):
    data = payload(size)
    enc = agekit.encrypt(data, [r for _, r in keys]).stdout
    assert enc.startswith(b"age-encryption.org/v1\n")
    for identity, _ in keys:
        p = subprocess.run(["age", "-d", "-i", str(identity)], input=enc, capture_output=True)
        assert p.returncode == 0, p.stderr
        assert p.stdout == data


@pytest.mark.parametrize("size", SIZES)
def test_agent_decrypts_age_cli_output(agekit, keys, size):
    data = payload(size)
    cmd = ["age"] + [a for _, r in keys for a in ("-r", r)]
    enc = subprocess.run(cmd, input=data, capture_output=True, check=True).stdout
    for identity, _ in keys:
        p = agekit.decrypt(enc, identity)
        assert p.returncode == 0, p.stderr
        assert p.stdout == data


def test_identity_file_with_several_keys_and_comments(agekit, keys, tmp_path):
    """Identity files as age-keygen writes them, concatenated: both tools find the key that fits."""
    both = tmp_path / "both.txt"
    both.write_bytes(keys[0][0].read_bytes() + b"\n# the agent's key\n" + keys[2][0].read_bytes())
    data = payload(CHUNK + 5)
    for _, recipient in (keys[0], keys[2]):
        enc = agekit.encrypt(data, [recipient]).stdout
        assert agekit.decrypt(enc, both).stdout == data
        assert subprocess.run(["age", "-d", "-i", str(both)], input=enc, capture_output=True).stdout == data


def test_agent_keygen_writes_age_keygen_format(agekit, tmp_path):
    path, recipient = agekit.agent_keygen("id.txt")
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("# created: ") and lines[0].endswith(("Z", ":00", ":30", ":45"))
    assert lines[1] == f"# public key: {recipient}"
    assert lines[2].startswith("AGE-SECRET-KEY-1") and len(lines[2]) == 74
    # age-keygen agrees on the recipient, and keygen -y prints the same for age-keygen's files.
    assert subprocess.run(["age-keygen", "-y", str(path)], capture_output=True, text=True,
                          check=True).stdout.strip() == recipient
    other, other_recipient = agekit.age_keygen("other.txt")
    p = subprocess.run(agekit.agent_keygen_cmd() + ["-y", str(other)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == other_recipient


def test_agent_keygen_refuses_to_overwrite(agekit, tmp_path):
    path, _ = agekit.agent_keygen("id.txt")
    before = path.read_bytes()
    p = subprocess.run(agekit.agent_keygen_cmd() + ["-o", str(path)], capture_output=True, text=True)
    assert p.returncode != 0
    assert "already exists" in p.stderr
    assert path.read_bytes() == before


def test_agent_keygen_to_stdout(agekit):
    p = subprocess.run(agekit.agent_keygen_cmd(), capture_output=True, text=True, check=True)
    assert p.stdout.splitlines()[2].startswith("AGE-SECRET-KEY-1")
    # stdout is not a terminal here, so the recipient also goes to stderr, as age-keygen does.
    assert p.stderr.startswith("Public key: age1")


def test_rejects_wrong_identity_tampering_and_truncation(agekit, keys, tmp_path):
    (id1, r1), (id2, _), _ = keys
    data = payload(1000)
    enc = agekit.encrypt(data, [r1]).stdout

    p = agekit.decrypt(enc, id2)
    assert p.returncode != 0 and p.stdout == b""
    assert b"none of the 1 age identities" in p.stderr

    flipped = bytearray(enc)
    flipped[-20] ^= 1
    for bad in (bytes(flipped), enc[:-1], enc[:len(enc) - 1016]):
        p = agekit.decrypt(bad, id1)
        assert p.returncode != 0 and p.stdout == b"", p.stderr
        assert b"payload" in p.stderr or b"nonce" in p.stderr
        # The age CLI rejects the same files: this is the format's rule, not our invention.
        assert subprocess.run(["age", "-d", "-i", str(id1)], input=bad, capture_output=True).returncode != 0


def test_encrypt_refuses_bad_recipient(agekit, keys):
    p = agekit.encrypt(b"secret", [keys[0][1], "age1notarecipient"], check=False)
    assert p.returncode != 0
    assert p.stdout == b""
    assert b"age1notarecipient" in p.stderr


def test_large_stream_sha256_matches(agekit, keys, tmp_path):
    """A 64 MiB stream through agent encryption and age decryption, compared by hash (no big buffers)."""
    src = tmp_path / "big"
    h = hashlib.sha256()
    with open(src, "wb") as f:
        for _ in range(64):
            block = os.urandom(1024 * 1024)
            h.update(block)
            f.write(block)
    enc = tmp_path / "big.age"
    with open(src, "rb") as i, open(enc, "wb") as o:
        subprocess.run([AGE_TOOL, "-r", keys[0][1], "-r", keys[2][1]], stdin=i, stdout=o, check=True)
    for identity, _ in (keys[0], keys[2]):
        age = subprocess.Popen(["age", "-d", "-i", str(identity), str(enc)], stdout=subprocess.PIPE)
        got = hashlib.sha256()
        for block in iter(lambda: age.stdout.read(1 << 20), b""):
            got.update(block)
        assert age.wait() == 0
        assert got.hexdigest() == h.hexdigest()
