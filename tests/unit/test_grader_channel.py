"""Fast tier: how the grader process takes its connection to the student kernel (no kernel, no sandbox).

The host passes the connection over a SOCK_SEQPACKET socket pair with a token (SCM_RIGHTS) and names
the token on the pipe; the grader keeps the descriptor that came with that token, closes any other (one
left by an earlier grader child), and talks to the harness over it in frames.
"""

from __future__ import annotations

import json
import socket
import sys
import threading

import pytest

from torchsteps.sandbox import crossing, grader


@pytest.fixture(autouse=True)
def _crossing_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "_torchsteps_crossing", crossing)  # its name inside the sandbox


class _Link:
    """The pipe to the host: answers "connect" with the token given."""

    def __init__(self, replies):
        self.sent, self.replies = [], list(replies)

    def send(self, **message):
        self.sent.append(message)

    def receive(self):
        return self.replies.pop(0)


def _frame_server(sock, reply_for):
    """Answer one request frame on ``sock`` as the harness's serve loop does."""
    head = sock.recv(12, socket.MSG_WAITALL)
    header = json.loads(sock.recv(int.from_bytes(head[:4], "little"), socket.MSG_WAITALL))
    payload = sock.recv(int.from_bytes(head[4:], "little"), socket.MSG_WAITALL) if int.from_bytes(head[4:], "little") else b""
    reply = reply_for(header, payload)
    sock.sendall(len(reply).to_bytes(8, "little") + reply)


def test_the_descriptor_that_came_with_the_token_is_kept_and_a_stale_one_closed():
    host_end, grader_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stale_harness, stale_grader = socket.socketpair()
    harness, for_grader = socket.socketpair()
    socket.send_fds(host_end, [b"old-token"], [stale_grader.fileno()])
    socket.send_fds(host_end, [b"new-token"], [for_grader.fileno()])
    stale_grader.close()
    for_grader.close()
    g = grader.Grader(_Link([{"op": "connected", "token": b"new-token".hex()}]), fd_channel=grader_end)

    encoder = crossing.Encoder()
    answer = crossing.dumps(encoder, encoder.encode({"answer": 42}))
    server = threading.Thread(target=_frame_server, args=(harness, lambda header, payload: answer))
    server.start()
    message = g.request("names", "", b"request")
    server.join(5)
    assert crossing.Decoder(message).decode(message["tree"]) == {"answer": 42}
    assert g.link.sent == [{"op": "connect"}]
    # The stale descriptor was closed by the grader: its peer sees the end of the stream.
    stale_harness.settimeout(2)
    assert stale_harness.recv(1) == b""
    g._disconnect()
    harness.settimeout(2)
    assert harness.recv(1) == b"", "closing the grader's end ends the serve loop"


def test_a_reply_over_the_limit_is_not_read_and_fails_the_call():
    host_end, grader_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    harness, for_grader = socket.socketpair()
    socket.send_fds(host_end, [b"t"], [for_grader.fileno()])
    for_grader.close()
    g = grader.Grader(_Link([{"op": "connected", "token": b"t".hex()}]), fd_channel=grader_end, max_reply_bytes=1000)
    harness.sendall((10**9).to_bytes(8, "little"))  # announces 1 GB, sends nothing more
    with pytest.raises(grader.StudentCallFailed, match="too large"):
        g.request("call", "f", b"")
    assert g.student is None


def test_a_refused_connection_fails_the_call_with_the_hosts_reason():
    g = grader.Grader(_Link([{"op": "failed", "reason": "the kernel died in cell 4"}]), fd_channel=None)
    with pytest.raises(grader.StudentCallFailed, match="the kernel died in cell 4"):
        g.request("call", "f", b"")
