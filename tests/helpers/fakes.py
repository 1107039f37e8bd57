"""A fake client and a fake worker on raw pyzmq sockets, speaking the wire protocol through
``pirate_actors.protocol.FrameCodec`` so that tests can add hostile messages of their own."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import cloudpickle

from pirate_actors.protocol import Calls, Command, Entry, FrameCodec, Heartbeat, Ready

from .raw import RawPeer

__all__ = ["FakeClient", "FakeWorker", "request"]

PATIENT = Heartbeat(10.0, 3)
"""What fakes announce: judge me by 10 s x 3, so nobody gives up on a fake during a test."""


def request(codec: FrameCodec, request_id: int, body: bytes) -> list[bytes]:
    """The frames of a one-call REQUEST (the body is ``(procedure, args, kwargs)``, pickled)."""
    return codec.encode(Calls(Command.REQUEST, (Entry(request_id, 0, body),)))


class FakeClient:
    """A raw ROUTER bound on a free loopback port, playing the client of one worker."""

    def __init__(self, key: bytes | None, announce: Heartbeat = PATIENT) -> None:
        self.announce = announce
        """The heartbeat this fake announces (it never heartbeats on its own)."""
        self.peer = RawPeer.router()
        self.endpoint = self.peer.endpoint
        self.codec = FrameCodec(key)
        self.worker: bytes | None = None
        self.seen: dict[Command, dict[int, bytes]] = {}
        """Every call entry received so far: command -> request id -> body."""

    def await_ready(self, timeout: float = 20.0) -> Ready:
        """The worker's next READY; remembers its routing id."""

        def accept(frames: list[bytes]) -> Ready | None:
            message = self.codec.decode(frames[1:])
            if isinstance(message, Ready):
                self.worker = frames[0]
                return message
            return None

        ready: Ready = self.peer.recv_until(accept, timeout)
        return ready

    def register(self, timeout: float = 20.0) -> Ready:
        """Wait for READY and acknowledge it with a HEARTBEAT."""
        ready = self.await_ready(timeout)
        self.send_raw(self.codec.encode(self.announce))
        return ready

    def send_raw(self, frames: Sequence[bytes]) -> None:
        assert self.worker is not None, "no worker has said READY yet"
        self.peer.send([self.worker, *frames])

    def call(self, request_id: int, procedure: str, *args: Any, timeout: float = 20.0) -> Any:
        """A real call: send REQUEST, return the unpickled REPLY for it."""
        self.send_raw(request(self.codec, request_id, cloudpickle.dumps((procedure, args, {}))))
        return pickle.loads(self.await_entries(Command.REPLY, {request_id}, timeout)[request_id])

    def await_entries(self, command: Command, request_ids: set[int], timeout: float = 20.0) -> dict[int, bytes]:
        """The bodies of ``command`` entries for every id in ``request_ids``, receiving until all
        have arrived (entries received earlier count: every entry is kept in ``self.seen``)."""

        def accept(frames: list[bytes] | None) -> bool:
            if frames is not None:
                message = self.codec.decode(frames[1:])
                if isinstance(message, Calls):
                    for entry in message.entries:
                        self.seen.setdefault(message.command, {})[entry.request_id] = entry.body
            return request_ids <= set(self.seen.get(command, {}))

        if not accept(None):
            self.peer.recv_until(accept, timeout)
        return {i: self.seen[command][i] for i in request_ids}

    @property
    def errors(self) -> set[int]:
        """Request ids of every ERROR entry received so far."""
        return set(self.seen.get(Command.ERROR, {}))

    def close(self) -> None:
        self.peer.close()


class FakeWorker:
    """A raw DEALER connected to a client, playing a worker."""

    def __init__(self, endpoint: str, key: bytes | None, identity: bytes | None = None) -> None:
        self.peer = RawPeer.dealer(endpoint, identity)
        self.codec = FrameCodec(key)

    def ready(self, name: str, capacity: int = 1) -> None:
        self.send_raw(self.codec.encode(
            Ready(name, capacity, PATIENT.heartbeat, PATIENT.liveness, ("echo", "ping"))
        ))

    def send_raw(self, frames: Sequence[bytes]) -> None:
        self.peer.send(frames)

    def next_request(self, timeout: float = 20.0) -> Entry:
        """The first entry of the next REQUEST the client sends (heartbeats are skipped)."""

        def accept(frames: list[bytes]) -> Entry | None:
            message = self.codec.decode(frames)
            if isinstance(message, Calls) and message.command is Command.REQUEST:
                return message.entries[0]
            return None

        entry: Entry = self.peer.recv_until(accept, timeout)
        return entry

    def next_message(self, kind: type, timeout: float = 20.0) -> Any:
        """The next message of type ``kind`` from the client (others are skipped)."""

        def accept(frames: list[bytes]) -> Any:
            message = self.codec.decode(frames)
            return message if isinstance(message, kind) else None

        return self.peer.recv_until(accept, timeout)

    def close(self) -> None:
        self.peer.close()
