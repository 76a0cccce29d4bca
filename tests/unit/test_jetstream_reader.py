"""The delivery connection's frame parser: NATS protocol bytes in, deliveries and replies out."""

from __future__ import annotations

import pytest

from services.runtime.jetstream_reader import DeliveryParser, stream_seq


def ack(seq: int, v2: bool = False) -> bytes:
    if v2:
        return f"$JS.ACK.hub.ACCHASH.GOVERNANCE.cons.1.{seq}.{seq}.1700000000000000000.0.r4nd".encode()
    return f"$JS.ACK.GOVERNANCE.cons.1.{seq}.{seq}.1700000000000000000.0".encode()


def hmsg(subject: bytes, reply: bytes, headers: bytes, payload: bytes) -> bytes:
    head = b" ".join([b"HMSG", subject, b"1", *([reply] if reply else []),
                      b"%d" % len(headers), b"%d" % (len(headers) + len(payload))])
    return head + b"\r\n" + headers + payload + b"\r\n"


def event(seq: int, payload: bytes = b'{"id":"e"}') -> bytes:
    return hmsg(b"gov.registry.model.created", ack(seq), b"NATS/1.0\r\nNats-Msg-Id: e\r\n\r\n", payload)


FLOW_CONTROL = hmsg(b"_INBOX.x", b"$JS.FC.GOVERNANCE.cons.abc",
                    b"NATS/1.0 100 FlowControl Request\r\n\r\n", b"")


def test_a_delivery_is_its_stream_sequence_subject_and_exact_payload():
    parser = DeliveryParser()
    parser.feed(event(7, b'{"a": "b\r\nc"}') + b"MSG gov.x 1 " + ack(8) + b" 2\r\nhi\r\n")
    # check: the payload is the bytes between the headers and the frame's end, CRLF and all
    assert list(parser.deliveries) == [(7, "gov.registry.model.created", b'{"a": "b\r\nc"}'),
                                       (8, "gov.x", b"hi")]
    assert parser.parsed == 2 and not parser.outgoing and parser.error is None


def test_frames_cut_anywhere_across_reads_parse_the_same():
    stream = b"INFO {}\r\n" + event(1) + FLOW_CONTROL + event(2) + b"PING\r\n" + event(3)
    whole, bytewise = DeliveryParser(), DeliveryParser()
    whole.feed(stream)
    for i in range(len(stream)):
        bytewise.feed(stream[i:i + 1])
    assert list(bytewise.deliveries) == list(whole.deliveries) and len(whole.deliveries) == 3
    assert list(bytewise.flow_requests) == list(whole.flow_requests) == [(1, b"$JS.FC.GOVERNANCE.cons.abc")]
    assert bytewise.outgoing == whole.outgoing == [b"PONG\r\n"]


def test_a_flow_control_request_waits_for_the_messages_sent_before_it():
    parser = DeliveryParser()
    parser.feed(event(1) + event(2) + FLOW_CONTROL)
    # check: answered once two messages are taken (by the reader), not now
    assert list(parser.flow_requests) == [(2, b"$JS.FC.GOVERNANCE.cons.abc")]
    assert not parser.outgoing and len(parser.deliveries) == 2


def test_a_heartbeat_reporting_a_stalled_consumer_is_answered_at_once():
    parser = DeliveryParser()
    beat = (b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 5\r\n"
            b"Nats-Consumer-Stalled: $JS.FC.G.c.z\r\n\r\n")
    parser.feed(hmsg(b"_INBOX.x", b"", beat, b""))
    parser.feed(hmsg(b"_INBOX.x", b"", b"NATS/1.0 100 Idle Heartbeat\r\n\r\n", b""))
    assert parser.outgoing == [b"PUB $JS.FC.G.c.z 0\r\n\r\n"]
    assert not parser.deliveries and not parser.flow_requests


@pytest.mark.parametrize("frame, said", [
    (b"-ERR 'Authorization Violation'\r\n", "Authorization Violation"),
    (hmsg(b"_INBOX.x", b"", b"NATS/1.0 409 Consumer Deleted\r\n\r\n", b""),
     "NATS/1.0 409 Consumer Deleted"),
])
def test_what_the_server_says_went_wrong_is_kept(frame, said):
    parser = DeliveryParser()
    parser.feed(frame)
    assert parser.error == said


def test_the_stream_sequence_is_read_from_both_ack_subject_forms():
    assert stream_seq(ack(42)) == 42 and stream_seq(ack(43, v2=True)) == 43


def test_a_message_larger_than_any_read_arrives_whole_and_exact():
    big = bytes(range(256)) * 16384  # 4 MiB
    stream = event(1, big) + event(2)
    parser = DeliveryParser()
    for i in range(0, len(stream), 65536):
        parser.feed(stream[i:i + 65536])
    assert [(seq, len(payload)) for seq, _, payload in parser.deliveries] == [(1, len(big)), (2, 10)]
    assert parser.deliveries[0][2] == big
