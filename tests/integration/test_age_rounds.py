"""The age stages work on rounds of 8 chunks with two threads: sizes and damage at round boundaries."""
import os
import subprocess

import pytest

CHUNK = 64 * 1024
CIPHER = CHUNK + 16
ROUND = 8


@pytest.fixture
def key(agekit):
    return agekit.age_keygen("k.txt")


def header_len(enc):
    return enc.index(b"\n---") + enc[enc.index(b"\n---") + 1:].index(b"\n") + 2 + 16  # + payload nonce


@pytest.mark.parametrize("chunks,extra", [(ROUND, 0), (ROUND, 1), (ROUND - 1, CHUNK - 1), (2 * ROUND, 0),
                                          (2 * ROUND + 1, 5)])
def test_round_boundaries_both_ways(agekit, key, chunks, extra):
    identity, recipient = key
    data = os.urandom(chunks * CHUNK + extra)
    enc = agekit.encrypt(data, [recipient]).stdout
    assert subprocess.run(["age", "-d", "-i", str(identity)], input=enc, capture_output=True,
                          check=True).stdout == data
    cli = subprocess.run(["age", "-r", recipient], input=data, capture_output=True, check=True).stdout
    p = agekit.decrypt(cli, identity)
    assert p.returncode == 0, p.stderr
    assert p.stdout == data


def test_damage_inside_and_across_rounds_is_refused(agekit, key):
    identity, recipient = key
    data = os.urandom(2 * ROUND * CHUNK + 100)
    enc = agekit.encrypt(data, [recipient]).stdout
    h = header_len(enc)
    chunk = [enc[h + i * CIPHER:h + (i + 1) * CIPHER] for i in range(2 * ROUND + 1)]
    swapped = enc[:h] + b"".join(chunk[:2] + [chunk[3], chunk[2]] + chunk[4:])
    cases = {
        "truncated at a round boundary": enc[:h + ROUND * CIPHER],
        "truncated at a chunk boundary inside a round": enc[:h + (ROUND + 3) * CIPHER],
        "two chunks swapped": swapped,
        "a flipped bit in the second round": enc[:h + ROUND * CIPHER + 7] +
        bytes([enc[h + ROUND * CIPHER + 7] ^ 1]) + enc[h + ROUND * CIPHER + 8:],
        "data after the final chunk": enc + b"x",
    }
    for what, bad in cases.items():
        p = agekit.decrypt(bad, identity)
        assert p.returncode != 0, what
        assert b"payload" in p.stderr, (what, p.stderr)
        # Only authenticated plaintext came out, in order.
        assert data.startswith(p.stdout), what
        assert subprocess.run(["age", "-d", "-i", str(identity)], input=bad, capture_output=True).returncode != 0
