"""A fake client and a fake worker on raw pyzmq sockets, speaking the wire protocol through
``pirate_actors.protocol.FrameCodec`` so that tests can add hostile messages of their own.

With a key, each fake keeps a signed session as docs/protocol.md says (its own nonce, the
peer's, a sequence number): ``encode`` seals a message for that session, so it is accepted;
frames a test encodes itself carry no valid seal."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import cloudpickle

import itertools

from pirate_actors.protocol import Calls, Command, Entry, FrameCodec, Heartbeat, Message, Ready, Seal

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
        self.nonce = 0x0C11E47  # this fake's session nonce
        self.worker_nonce = 0
        self._seq = itertools.count(1)

    def encode(self, message: Message) -> list[bytes]:
        """``message`` as the worker's current session accepts it (sealed with a key)."""
        return self.codec.encode(message, Seal(self.nonce, self.worker_nonce, next(self._seq)))

    def await_ready(self, timeout: float = 20.0) -> Ready:
        """The worker's next READY; remembers its routing id (and session, with a key)."""

        def accept(frames: list[bytes]) -> Ready | None:
            message, seal = self.codec.open(frames[1:])
            if isinstance(message, Ready):
                self.worker = frames[0]
                if seal is not None:
                    self.worker_nonce = seal.sender
                return message
            return None

        ready: Ready = self.peer.recv_until(accept, timeout)
        return ready

    def register(self, timeout: float = 20.0) -> Ready:
        """Wait for READY and acknowledge it with a HEARTBEAT."""
        ready = self.await_ready(timeout)
        self.send_raw(self.encode(self.announce))
        return ready

    def send_raw(self, frames: Sequence[bytes]) -> None:
        assert self.worker is not None, "no worker has said READY yet"
        self.peer.send([self.worker, *frames])

    def call(self, request_id: int, procedure: str, *args: Any, timeout: float = 20.0) -> Any:
        """A real call: send REQUEST, return the unpickled REPLY for it."""
        self.send_raw(self.encode(Calls(Command.REQUEST, (
            Entry(request_id, 0, cloudpickle.dumps((procedure, args, {}))),))))
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
        self.nonce = 0xFA4E
        self.client_nonce = 0
        self._seq = itertools.count(1)

    def encode(self, message: Message) -> list[bytes]:
        """``message`` as the client's session with this fake accepts it (sealed with a key)."""
        return self.codec.encode(message, Seal(self.nonce, self.client_nonce, next(self._seq)))

    def ready(self, name: str, capacity: int = 1, timeout: float = 20.0) -> None:
        """Say READY; with a key, also complete the signed registration (answer the client's
        acknowledgement with a HEARTBEAT that carries both nonces)."""
        self.send_raw(self.encode(
            Ready(name, capacity, PATIENT.heartbeat, PATIENT.liveness, ("echo", "ping"))
        ))
        if self.codec.key is None:
            return

        def accept(frames: list[bytes]) -> Seal | None:
            message, seal = self.codec.open(frames)
            return seal if isinstance(message, Heartbeat) and seal is not None else None

        acknowledgement: Seal = self.peer.recv_until(accept, timeout)
        self.client_nonce = acknowledgement.sender
        self.send_raw(self.encode(PATIENT))

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
