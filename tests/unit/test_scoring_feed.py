"""What each replica's feed hands on: typed deployment and alias events, nothing it cannot read,
and nothing the store read at subscription already covered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.envelope import make_event
from contracts.registry.events import ModelAliasSet
from contracts.scoring.events import DeploymentChanged
from services.scoring.messaging import FEED_SUBJECTS, ReplicaFeed


def _raw(data, at: datetime) -> bytes:
    return make_event(data, subject="deployment/fraud", actor="user:ops", time=at).canonical_bytes()


def test_the_feed_takes_deployment_changes_and_alias_sets():
    assert FEED_SUBJECTS == ["gov.scoring.deployment.changed", "gov.registry.model_alias.set"]


def test_it_hands_on_typed_events_and_skips_what_it_cannot_read_or_the_scan_already_saw():
    seen = []
    feed = ReplicaFeed(bus=None, on_event=seen.append, on_subscribed=lambda: None)
    feed.subscribed_at = now = datetime.now(UTC)
    changed = DeploymentChanged(model="fraud", champion=2, canary=None, shadow=[], previous_champion=1)
    aliased = ModelAliasSet(name="fraud", alias="challenger", version=3, previous_version=None,
                            evidence="review-fraud-v3", reason=None)
    # act
    feed._one(_raw(changed, now))
    feed._one(_raw(aliased, now - timedelta(seconds=5)))
    feed._one(_raw(changed, now - timedelta(minutes=5)))  # committed long before the store was read
    feed._one(b"{not json")
    feed._one(_raw(changed, now).replace(b'"champion":2', b'"champion":"two"'))
    # check: the two recent events, typed; the rest skipped without an error
    assert seen == [changed, aliased]
