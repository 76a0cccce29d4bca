"""What the bus says about where NATS is never includes the URL's credentials."""

from __future__ import annotations

import pytest

from services.runtime.bus import Bus, BusUnavailable, without_credentials
from services.runtime.settings import Settings


@pytest.mark.parametrize("url, shown", [
    ("nats://audit:s3cret@nats.internal:4222", "nats://nats.internal:4222"),
    ("nats://t0ken@127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ("127.0.0.1:4222", "127.0.0.1:4222"),
])
def test_a_server_url_is_shown_without_user_password_or_token(url, shown):
    assert without_credentials(url) == shown


def test_the_unavailable_error_a_caller_may_see_names_the_server_but_not_the_password():
    bus = Bus(Settings(nats_url="nats://audit:s3cret@nats.internal:4222"), "audit")
    with pytest.raises(BusUnavailable) as unavailable:
        bus.jetstream()  # not connected
    assert "nats://nats.internal:4222" in str(unavailable.value)
    assert "s3cret" not in str(unavailable.value)
