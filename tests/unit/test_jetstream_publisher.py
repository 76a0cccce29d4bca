"""The publishing connection's ack parser: the server's replies in, each publish's outcome out."""

from __future__ import annotations

from services.runtime.jetstream_publisher import AckParser

PREFIX = b"_INBOX.abc."


def reply(token: bytes, payload: bytes) -> bytes:
    return b"MSG " + PREFIX + token + b" 1 %d\r\n" % len(payload) + payload + b"\r\n"


def status(token: bytes, line: bytes) -> bytes:
    block = b"NATS/1.0 " + line + b"\r\n\r\n"
    return b"HMSG " + PREFIX + token + b" 1 %d %d\r\n" % (len(block), len(block)) + block + b"\r\n"


ACKED = b'{"stream":"DECISIONS","seq":41}'
DUPLICATE = b'{"stream":"DECISIONS","seq":41,"duplicate":true}'
REFUSED = b'{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}'


def test_each_reply_resolves_its_own_token_acked_or_with_the_reason():
    parser = AckParser(PREFIX)
    parser.feed(reply(b"1", ACKED) + reply(b"2", DUPLICATE) + reply(b"3", REFUSED)
                + status(b"4", b"503") + b"PING\r\n")
    assert parser.outcomes[:2] == [(b"1", None), (b"2", None)]  # a duplicate is stored: acked
    assert parser.outcomes[2][0] == b"3" and "expected stream does not match" in parser.outcomes[2][1]
    assert "code 400" in parser.outcomes[2][1]
    assert parser.outcomes[3] == (b"4", "no stream takes this subject")
    assert parser.outgoing == [b"PONG\r\n"]


def test_replies_cut_anywhere_across_reads_give_the_same_outcomes():
    stream = (b'INFO {"max_payload":1048576}\r\n' + reply(b"7", ACKED) + status(b"8", b"503")
              + reply(b"9", REFUSED) + reply(b"10", ACKED))
    whole = AckParser(PREFIX)
    whole.feed(stream)
    for cut in range(1, len(stream)):
        parser = AckParser(PREFIX)
        parser.feed(stream[:cut])
        parser.feed(stream[cut:])
        assert parser.outcomes == whole.outcomes, cut
    assert [t for t, _ in whole.outcomes] == [b"7", b"8", b"9", b"10"]
    assert whole.info == {"max_payload": 1048576}


def test_an_error_reply_that_is_not_the_usual_json_is_still_a_failure_quoting_it():
    parser = AckParser(PREFIX)
    parser.feed(reply(b"1", b'{"error": "odd"}') + reply(b"2", b'"error" but not json'))
    assert all(why and "JetStream answered" in why for _, why in parser.outcomes)
    assert parser.error is None
