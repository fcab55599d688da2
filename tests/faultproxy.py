"""A fault-injecting TCP proxy for tests: the service talks to MariaDB through it.

Modes (switch at any time with :meth:`FaultProxy.set_mode`):

* ``forward``   – pass bytes both ways;
* ``refuse``    – new connections are accepted and immediately reset (RST), existing ones reset;
* ``reset``     – forward, but reset every connection after ``reset_after`` bytes in either
                  direction (a reset in the middle of a query or of its answer);
* ``blackhole`` – accept, read and never answer (a hung server / dropped packets);
* ``slow``      – forward with ``delay`` seconds before each chunk.

Everything stays on 127.0.0.1. The proxy is a fault at the lowest layer (the socket): the
service, SQLAlchemy and PyMySQL above it are real.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time


def _rst(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 3306) -> None:
        self.target = (target_host, target_port)
        self.mode = "forward"
        self.delay = 0.2
        self.reset_after = 200
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[tuple[socket.socket, socket.socket | None]] = []
        self._lock = threading.Lock()
        self.connections = 0
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def set_mode(self, mode: str) -> None:
        assert mode in ("forward", "refuse", "reset", "blackhole", "slow")
        self.mode = mode
        if mode in ("refuse", "reset"):
            self.kill_all()

    def kill_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for client, upstream in conns:
            _rst(client)
            if upstream is not None:
                _rst(upstream)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self._listener], [], [], 0.1)
                if not r:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            mode = self.mode
            if mode == "refuse":
                _rst(client)
                continue
            if mode == "blackhole":
                with self._lock:
                    self._conns.append((client, None))
                threading.Thread(target=self._sink, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _rst(client)
                continue
            with self._lock:
                self._conns.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _sink(self, client: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([client], [], [], 0.2)
                if r and not client.recv(65536):
                    return
        except (OSError, ValueError):  # closed by kill_all() from another thread
            return

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        moved = 0
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([client, upstream], [], [], 0.2)
                if self.mode == "blackhole":
                    continue  # stop answering on live connections too
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if self.mode == "slow":
                        time.sleep(self.delay)
                    moved += len(data)
                    dest = client if s is upstream else upstream
                    if self.mode == "reset" and moved > self.reset_after:
                        dest.sendall(data[: len(data) // 2])  # half of it, then the connection dies
                        raise ConnectionResetError("injected reset")
                    dest.sendall(data)
        except (OSError, ValueError):  # ValueError: a socket closed by kill_all() from another thread
            pass
        finally:
            _rst(client)
            _rst(upstream)

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self.kill_all()
