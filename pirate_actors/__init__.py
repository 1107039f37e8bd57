"""pirate_actors: an actor-model worker runtime over ZeroMQ.

A :class:`Client` binds a ROUTER socket; :class:`Worker`\\ s connect to it and serve the public
methods of a :class:`ProcedureActor` subclass from a supervised pool of Pykka actors.
"""

import logging

from ._client import CallOptions, Client
from ._errors import (
    AuthenticationError,
    CallTimeout,
    NoWorkerError,
    PirateError,
    ProtocolError,
    RemoteError,
    RemoteTraceback,
    UnknownProcedure,
    WorkerCrashed,
    WorkerLost,
)
from ._events import Event, EventQueue, Subscription
from ._executor import FunctionActor, RemoteExecutor
from ._future import CallFuture, WorkerInfo
from ._procedures import ProcedureActor, idempotent
from ._worker import Worker

__all__ = [
    "AuthenticationError",
    "CallFuture",
    "CallOptions",
    "CallTimeout",
    "Event",
    "EventQueue",
    "FunctionActor",
    "Client",
    "NoWorkerError",
    "PirateError",
    "ProcedureActor",
    "ProtocolError",
    "RemoteError",
    "RemoteExecutor",
    "RemoteTraceback",
    "Subscription",
    "UnknownProcedure",
    "Worker",
    "WorkerCrashed",
    "WorkerInfo",
    "WorkerLost",
    "idempotent",
]

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
