"""The mirror against a source whose GETs never finish: retry_time bounds each copy, however little
progress every attempt makes. Two moto servers, a fault proxy in front of the source."""
import os
import subprocess
import time

import pytest

from test_mirror import pair  # noqa: F401 (a fixture)


def test_mirror_of_an_object_whose_get_trickles_fails_within_retry_time(pair, fault_proxy_factory):  # noqa: F811
    pair.put("slow.bin", os.urandom(64 * 1024))
    proxy = fault_proxy_factory(pair.src.port)
    # GETs of the object send 20 bytes a second: above curl's old 1 B/s stall limit, never the object.
    proxy.trickle_if = lambda method, path: method == "GET" and "slow.bin" in path
    pair.configure(src_endpoint=proxy.endpoint)
    conf = pair.agent.config_path
    conf.write_text(conf.read_text().replace("[remote.minio]\n", "[remote.minio]\ntimeout = 2\nretry_time = 6\n"))
    t = time.monotonic()
    try:
        p = pair.run(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"run mirror still running after 120 s ({proxy.trickled} trickled GETs)")
    took = time.monotonic() - t
    assert p.returncode != 0, p.stderr
    assert "slow.bin" in p.stderr and "stalled: less than 1 KiB/s for 2 s" in p.stderr, p.stderr
    assert took < 45, (took, p.stderr)
    assert pair.dst_objects() == {}
