"""The WAN proxy of the mirror benchmark (fixtures/wan_proxy.py) delays, and delays only: a request and its
reply cost a round trip of twice the delay, a large transfer flows at full speed shifted by the delay
(pipelined, not a sleep per chunk), and the optional bandwidth cap holds."""
import socket
import threading
import time

import pytest


@pytest.fixture
def echo_server():
    """A TCP server on 127.0.0.1 that sends back every byte it receives, one thread per connection."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve(conn):
        with conn:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    return
                conn.sendall(data)

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()


def send_and_echo(port, size):
    """Sends size bytes through a connection to port and reads the echo; returns (seconds to the first
    echoed byte, seconds to the last)."""
    payload = bytes(range(256)) * (1 << 12)  # 1 MiB
    with socket.create_connection(("127.0.0.1", port)) as s:
        def send():
            left = size
            while left > 0:
                n = min(left, len(payload))
                s.sendall(payload[:n])
                left -= n
            s.shutdown(socket.SHUT_WR)

        t0 = time.monotonic()
        threading.Thread(target=send, daemon=True).start()
        got, first = 0, None
        while True:
            data = s.recv(1 << 20)
            if not data:
                break
            if first is None:
                first = time.monotonic() - t0
            got += len(data)
        assert got == size
        return first, time.monotonic() - t0


def test_wan_proxy_delays_every_round_trip(echo_server, wan_proxy_factory):
    proxy = wan_proxy_factory(echo_server, delay=0.05)
    for _ in range(3):
        first, total = send_and_echo(proxy.port, 100)
        assert first >= 0.1, f"a round trip through a 50 ms each way proxy took {first:.3f} s"
        assert total < 2, f"a 100-byte round trip took {total:.3f} s"
    # A new connection's handshake is not delayed (the proxy accepts at once), its first bytes are.
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
    assert time.monotonic() - start >= 0.1


def test_wan_proxy_does_not_cap_throughput(echo_server, wan_proxy_factory):
    # Pipelined, not a sleep per chunk: the proxy keeps reading while what it read waits out the delay, so a
    # direction holds everything that arrived during the last `delay` seconds at once. A proxy that slept
    # the delay per chunk (read, sleep, write) would hold one read of at most 256 KiB, and take 128 x 0.5 s
    # each way for these 32 MiB. Checked by what the proxy held, not by seconds: no wall-clock bound that a
    # busy machine can break (2 MiB held needs 4 MB/s through the proxy).
    delay = 0.5
    size = 32 << 20
    proxy = wan_proxy_factory(echo_server, delay=delay)
    first, total = send_and_echo(proxy.port, size)
    assert first >= 2 * delay
    assert proxy.bytes >= 2 * size
    assert proxy.max_held >= 2 << 20, (
        f"the proxy held at most {proxy.max_held} bytes at once while 32 MiB went through it with a 0.5 s "
        "delay each way: it delays chunk by chunk instead of pipelining")


def test_wan_proxy_caps_bandwidth_when_asked(echo_server, wan_proxy_factory):
    rate = 10e6  # bytes per second each way
    proxy = wan_proxy_factory(echo_server, delay=0.01, rate=rate)
    size = 8 << 20
    _, total = send_and_echo(proxy.port, size)
    assert total >= size / rate, f"8 MiB at 10 MB/s took {total:.2f} s"
    assert total < 4 * size / rate + 2
