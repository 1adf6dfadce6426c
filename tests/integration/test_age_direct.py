"""Encryption reads straight into the age stage's plaintext rounds (no copy) from pipes grown to 1 MiB, on
two threads, and decryption reads a round ahead and writes its plaintext without a copy: sizes at chunk and
round boundaries stay byte-compatible with the age CLI both ways, from pipes and files, and damage is
refused with EX_DATAERR (65)."""
import fcntl
import os
import subprocess
import threading

import pytest

from fixtures.age import AGE_TOOL

CHUNK = 64 * 1024
CIPHER = CHUNK + 16
ROUND = 8  # chunks per round (agent/pipe/age.c AGE_BATCH)
EX_DATAERR = 65

MIB = 1024 * 1024
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, ROUND * CHUNK, ROUND * CHUNK + 1, 2 * ROUND * CHUNK,
         5 * 1024 * 1024 + 3, 8 * 1024 * 1024, 4 * MIB - 1, 12 * MIB + CHUNK]


@pytest.fixture
def key(agekit):
    return agekit.age_keygen("k.txt")


def header_len(enc):
    end = enc.index(b"\n---")
    return end + enc[end + 1:].index(b"\n") + 2 + 16  # + payload nonce


def chunks(size):
    return max(1, (size + CHUNK - 1) // CHUNK)


@pytest.mark.parametrize("size", SIZES)
def test_boundary_sizes_from_a_pipe_and_a_file_both_ways(agekit, key, tmp_path, size):
    identity, recipient = key
    data = os.urandom(size)
    from_pipe = agekit.encrypt(data, [recipient]).stdout
    plain = tmp_path / "plain"
    plain.write_bytes(data)
    with open(plain, "rb") as f:
        from_file = subprocess.run([AGE_TOOL, "-r", recipient], stdin=f, capture_output=True,
                                   check=True).stdout
    for enc in (from_pipe, from_file):
        # Exactly the chunks the spec asks for: no empty final chunk after a full last round.
        assert len(enc) == header_len(enc) + size + 16 * chunks(size)
        p = subprocess.run(["age", "-d", "-i", str(identity)], input=enc, capture_output=True)
        assert p.returncode == 0, p.stderr
        assert p.stdout == data
    cli = subprocess.run(["age", "-r", recipient], input=data, capture_output=True, check=True).stdout
    p = agekit.decrypt(cli, identity)
    assert p.returncode == 0, p.stderr
    assert p.stdout == data
    (tmp_path / "cli.age").write_bytes(cli)
    with open(tmp_path / "cli.age", "rb") as f:
        p = subprocess.run([AGE_TOOL, "-d", "-i", str(identity)], stdin=f, capture_output=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == data


@pytest.mark.parametrize("size", [ROUND * CHUNK, 3 * ROUND * CHUNK + 100])
def test_truncated_or_tampered_refused_with_65(agekit, key, size):
    identity, recipient = key
    data = os.urandom(size)
    enc = agekit.encrypt(data, [recipient]).stdout
    h = header_len(enc)
    last = h + (chunks(size) - 1) * CIPHER
    cases = {
        "truncated at a round boundary": enc[:h + ROUND * CIPHER] if size > ROUND * CHUNK else None,
        "truncated inside a chunk": enc[:h + CIPHER + 1000],
        "the final chunk dropped": enc[:last],
        "a flipped bit in the final chunk": enc[:last + 3] + bytes([enc[last + 3] ^ 4]) + enc[last + 4:],
        "a flipped tag bit in the final chunk": enc[:-1] + bytes([enc[-1] ^ 1]),
        "an empty final chunk appended": enc + enc[-16:],
        "data after the final chunk": enc + b"\0",
    }
    for what, bad in cases.items():
        if bad is None:
            continue
        p = agekit.decrypt(bad, identity)
        assert p.returncode == EX_DATAERR, (what, p.returncode, p.stderr)
        assert b"payload" in p.stderr, (what, p.stderr)
        assert data.startswith(p.stdout), what  # only authenticated plaintext, in order
        assert len(p.stdout) < size or what.startswith(("data after", "an empty")), what
        assert subprocess.run(["age", "-d", "-i", str(identity)], input=bad,
                              capture_output=True).returncode != 0, what


def test_input_and_output_pipes_are_grown_to_1_mib(agekit, key):
    """The default 64 KiB pipe costs a context switch per 64 KiB between the writer and the agent."""
    identity, recipient = key
    data = os.urandom(3 * 1024 * 1024 + 5)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    assert fcntl.fcntl(in_w, fcntl.F_GETPIPE_SZ) == 64 * 1024
    p = subprocess.Popen([AGE_TOOL, "-r", recipient], stdin=in_r, stdout=out_w)
    os.close(out_w)  # in_r stays open here too, so its size can be read after the agent is gone
    got = []
    reader = threading.Thread(
        target=lambda: got.append(b"".join(iter(lambda: os.read(out_r, 1 << 20), b""))))
    reader.start()
    with os.fdopen(in_w, "wb") as w:
        w.write(data)
    assert p.wait(timeout=120) == 0
    reader.join(timeout=120)
    sizes = (fcntl.fcntl(in_r, fcntl.F_GETPIPE_SZ), fcntl.fcntl(out_r, fcntl.F_GETPIPE_SZ))
    os.close(in_r)
    os.close(out_r)
    assert sizes == (1024 * 1024, 1024 * 1024)
    dec = subprocess.run(["age", "-d", "-i", str(identity)], input=got[0], capture_output=True)
    assert dec.returncode == 0 and dec.stdout == data


def test_age_tool_links_only_the_age_stages():
    """bench/age times age-tool against the age CLI: loading all of the agent's libraries (53 with their
    dependencies) cost ~0.07 CPU-s and 8 MiB before a byte was encrypted."""
    needed = subprocess.run(["readelf", "-d", AGE_TOOL], capture_output=True, text=True, check=True).stdout
    libs = [line.split("[")[1].rstrip("]") for line in needed.splitlines() if "(NEEDED)" in line]
    assert "libcrypto.so.3" in libs
    unused = ("libcurl", "libpq", "libarchive", "libzstd", "libyaml")
    assert not [lib for lib in libs if lib.startswith(unused)], libs
