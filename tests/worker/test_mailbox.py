"""drain(): how the loops read a socket — whole messages, a bounded batch, and no more frames
of one message kept than it takes to see that it is malformed."""

from __future__ import annotations

from typing import Iterator

import pytest
import zmq

from pirate_actors._mailbox import MAX_FRAMES, drain

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    """A ROUTER and a DEALER connected to it over loopback."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    dealer = context.socket(zmq.DEALER)
    try:
        router.bind("tcp://127.0.0.1:*")
        dealer.connect(router.getsockopt_string(zmq.LAST_ENDPOINT))
        yield router, dealer
    finally:
        dealer.close(0)
        router.close(0)
        context.term()


def test_a_message_of_many_frames_is_handed_on_cut_short_and_the_next_one_whole(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    router, dealer = pair
    dealer.send_multipart([b"frame %d" % i for i in range(100)])
    dealer.send(b"the next message")
    assert router.poll(5000)
    seen: list[list[bytes]] = []
    while len(seen) < 2:
        assert router.poll(5000)
        drain(router, lambda frames, _frame: seen.append(frames))
    many, single = seen
    assert len(many) == MAX_FRAMES == 3  # routing id and the first two frames, no more
    assert many[1:] == [b"frame 0", b"frame 1"]
    assert single[1:] == [b"the next message"]  # read from its own start, not mid-message


def test_draining_a_socket_with_nothing_waiting_hands_on_nothing_and_says_it_is_drained(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    router, dealer = pair
    seen: list[list[bytes]] = []
    assert drain(router, lambda frames, _frame: seen.append(frames)) is True
    assert seen == []
    dealer.send(b"one")
    assert router.poll(5000)
    assert drain(router, lambda frames, _frame: seen.append(frames)) is True
    assert drain(router, lambda frames, _frame: seen.append(frames)) is True  # empty again
    assert [frames[1:] for frames in seen] == [[b"one"]]
