"""A TCP proxy on 127.0.0.1 that can cut a connection at a chosen client command.

It forwards bytes both ways between a client and a real server and counts them. Give
``cut_at=(pattern, n)`` and the ``n``-th client line holding ``pattern`` is not
forwarded: both sockets are closed instead, as when a network path dies mid-session.
Used to drop an IMAP session halfway through a fetch against the real Dovecot (plain
IMAP, so the proxy can read the commands).
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class CuttingProxy:
    """Listen on a free loopback port and forward to ``target`` (host, port)."""

    def __init__(self, target: tuple[str, int], cut_at: tuple[bytes, int] | None = None) -> None:
        self.target = target
        self.cut_at = cut_at
        self.seen = 0  # client lines holding the pattern so far
        self.cut = threading.Event()  # set once a connection was cut
        self.to_client = 0  # bytes the server sent through the proxy
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def start(self) -> CuttingProxy:
        """Accept connections in a thread of its own."""
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        """Close the listener and every connection; wait for the threads."""
        self._stopping = True
        with suppress(OSError):  # wakes the thread blocked in accept()
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(10)

    def _spawn(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=30)
            with self._lock:
                self._sockets += [client, server]
            self._spawn(self._upstream, client, server)
            self._spawn(self._downstream, server, client)

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        """Client to server, line by line, so a command can be held back."""
        buffer = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if self._should_cut(line):
                        self._close(client, server)
                        return
                    server.sendall(line + b"\n")
                # A literal (APPEND) may carry bytes without a line end yet: pass them on.
                if buffer and self.cut_at is None:
                    server.sendall(buffer)
                    buffer = b""
        except OSError:
            pass
        self._close(client, server)

    def _downstream(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                with self._lock:
                    self.to_client += len(data)
                client.sendall(data)
        except OSError:
            pass
        self._close(client, server)

    def _should_cut(self, line: bytes) -> bool:
        if self.cut_at is None or self.cut.is_set():
            return False
        pattern, n = self.cut_at
        if pattern not in line:
            return False
        with self._lock:
            self.seen += 1
            if self.seen < n:
                return False
        self.cut.set()
        return True

    def _close(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                sock.close()
