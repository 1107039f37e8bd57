"""The wire protocol, sans-IO: frames in, events out; no sockets and no clock of its own.

Two layers, each with no I/O: :mod:`._wire` encodes, signs, checks and decodes single-frame
messages (and owns every size the other layers budget with); :mod:`._session` keeps each side's
heartbeats, liveness and registration as a small state machine whose methods take ``now``. The
socket code hands a message's frames to :meth:`WorkerProtocol.receive` or
:meth:`ClientProtocol.receive` and sends what comes back. ``docs/protocol.md`` describes every
frame.
"""

from ._session import (
    BadCalls,
    CallsReceived,
    ClientLost,
    ClientProtocol,
    ClientRegistered,
    Event,
    LocalProtocolError,
    Peer,
    SessionState,
    Stats,
    WorkerGone,
    WorkerLeaving,
    WorkerPeer,
    WorkerProtocol,
    WorkerRegistered,
    WorkerState,
)
from ._wire import (
    CALLS_HEADER,
    DEFAULT_MAX_MESSAGE_SIZE,
    ENTRY_HEADER,
    MAC_SIZE,
    SIGNATURE,
    STARTED,
    Calls,
    Command,
    Disconnect,
    Entry,
    Flag,
    FrameCodec,
    Heartbeat,
    MalformedCalls,
    Message,
    Ready,
    check_settings,
)

__all__ = [
    "BadCalls",
    "CALLS_HEADER",
    "Calls",
    "CallsReceived",
    "ClientLost",
    "ClientProtocol",
    "ClientRegistered",
    "Command",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Disconnect",
    "ENTRY_HEADER",
    "Entry",
    "Event",
    "Flag",
    "FrameCodec",
    "Heartbeat",
    "LocalProtocolError",
    "MAC_SIZE",
    "MalformedCalls",
    "Message",
    "Peer",
    "Ready",
    "SIGNATURE",
    "STARTED",
    "SessionState",
    "Stats",
    "WorkerGone",
    "WorkerLeaving",
    "WorkerPeer",
    "WorkerProtocol",
    "WorkerRegistered",
    "WorkerState",
    "check_settings",
]
