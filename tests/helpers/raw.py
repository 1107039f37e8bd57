"""Raw pyzmq peers that speak (or mangle) the wire protocol, for hostile-input tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

__all__ = ["RawPeer"]


class RawPeer:
    """One socket in its own context (so ``close()`` really releases its port), plus a monitor.

    ``RawPeer.router()`` binds a free loopback port (``.endpoint``) and plays a client;
    ``RawPeer.dealer(endpoint)`` connects and plays a worker.
    """

    def __init__(self, kind: int, identity: bytes | None = None) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.socket = self.context.socket(kind)
        self.socket.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.socket.setsockopt(zmq.ROUTING_ID, identity)
        self.monitor = self.socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
        )
        self.endpoint = ""

    @classmethod
    def router(cls) -> RawPeer:
        peer = cls(zmq.ROUTER)
        port = peer.socket.bind_to_random_port("tcp://127.0.0.1")
        peer.endpoint = f"tcp://127.0.0.1:{port}"
        return peer

    @classmethod
    def dealer(cls, endpoint: str, identity: bytes | None = None) -> RawPeer:
        peer = cls(zmq.DEALER, identity)
        peer.socket.connect(endpoint)
        peer.endpoint = endpoint
        return peer

    def send(self, frames: Sequence[bytes]) -> None:
        self.socket.send_multipart(list(frames))

    def recv(self, timeout: float = 10.0) -> list[bytes]:
        if not self.socket.poll(int(timeout * 1000)):
            raise AssertionError(f"nothing received within {timeout:g} s")
        return self.socket.recv_multipart()

    def recv_until(self, accept: Callable[[list[bytes]], Any], timeout: float = 10.0) -> Any:
        """Receive until ``accept(frames)`` returns something truthy; returns that."""
        deadline = time.monotonic() + timeout
        while True:
            frames = self.recv(max(0.0, deadline - time.monotonic()))
            result = accept(frames)
            if result:
                return result

    def wait_event(self, event: int, timeout: float = 10.0) -> None:
        """Block until the socket's monitor reports ``event`` (e.g. zmq.EVENT_DISCONNECTED)."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.monitor.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                raise AssertionError(f"no socket event {event} within {timeout:g} s")
            if recv_monitor_message(self.monitor)["event"] == event:
                return

    def close(self) -> None:
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)
        self.context.term()
