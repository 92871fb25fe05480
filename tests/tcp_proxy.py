"""A loopback TCP proxy a test or benchmark controls: forward, refuse or stall the connections to a server.

Used by tests/test_spool.py and bench/task_overhead.py to take PostgreSQL away from forewarn and give it back
without touching the server: :meth:`Proxy.refuse` drops every connection and refuses new ones (a database
that is down), :meth:`Proxy.stall` holds every byte in flight (one that accepts and never answers), and
:meth:`Proxy.resume` forwards again, the held bytes first.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Proxy:
    """A loopback TCP proxy to PostgreSQL that forwards, refuses (drops every connection) or stalls (holds bytes)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.refusing = False
        self.flowing = threading.Event()
        self.flowing.set()
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def refuse(self) -> None:
        self.refusing = True
        for sock in self.sockets:
            _hang_up(sock)
        self.sockets.clear()

    def stall(self) -> None:
        self.refusing = False  # accept new connections (and hold their bytes), even right after refuse()
        self.flowing.clear()

    def resume(self) -> None:
        self.refusing = False
        self.flowing.set()

    def close(self) -> None:
        self.closed = True
        self.resume()
        self.refuse()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            if self.refusing:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _hang_up(sock)


def _hang_up(sock: socket.socket) -> None:
    """Close ``sock`` so both ends notice: shutdown wakes a thread blocked reading it, close alone does not."""
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
