"""The SQL rules of planning agree with the Python rules, on SQLite and PostgreSQL.

Planning decides in SQL who gets which variant (``ledger.variant_mask_expression``) and
who receives at all (``models.receiving_condition``); previews, re-planning and the
message builder decide in Python (``rules.variants.choose_variant``,
``rules.statuses.is_receiving``). If the two drifted apart, a reader would be planned
one variant and shown another, or planned a variant that was never rendered.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from newsletter.config import NO_MATCH_POLICIES, load_settings
from newsletter.content.taxonomy import load_taxonomy
from newsletter.delivery.message import headers_from_settings
from newsletter.rules.statuses import (
    SKIP_NO_MATCH,
    SKIP_PAUSED,
    SUBSCRIBER_STATUSES,
    is_receiving,
)
from newsletter.rules.variants import choose_variant
from newsletter.services import subscribers
from newsletter.store import ledger
from newsletter.store.ledger import NewSnapshot
from newsletter.store.models import (
    ConsentRecord,
    Delivery,
    Send,
    SendVariant,
    Subscriber,
    SubscriberTopic,
    receiving_condition,
)
from newsletter.store.views import SummaryInfo

# A small pool of real topic slugs, so that summaries and readers overlap often.
POOL = tuple(t.slug for t in load_taxonomy())[:6]
TODAY = dt.date(2026, 11, 15)
# One send per policy within an example.
MONTHS = {"skip": "2031-01", "full": "2031-02", "teaser": "2031-03"}

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def clean(store) -> None:
    """Empty the tables an example writes (the store is shared by every example)."""
    with store.transaction() as session:
        for model in (Delivery, SendVariant, Send, SubscriberTopic, ConsentRecord, Subscriber):
            session.execute(delete(model))


def snapshot(summary_topics: tuple[frozenset[str], ...], policy: str) -> NewSnapshot:
    """What planning stores (no rendered variants: planning does not need them)."""
    return NewSnapshot(
        subject="Subject",
        content_hash="hash",
        policy=policy,
        summaries=tuple(
            SummaryInfo(f"summary-{i}", f"Summary {i}", slugs)
            for i, slugs in enumerate(summary_topics, 1)
        ),
        headers=headers_from_settings(
            load_settings(overrides={"sender_address": "digest@example.org"}, environ={})
        ),
        variants=(),
    )


topic_sets = st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True).map(frozenset)
readers = st.lists(
    st.tuples(st.lists(st.sampled_from(POOL), max_size=4, unique=True), st.booleans()),
    min_size=1,
    max_size=10,
)


@PROPERTY
@given(summary_topics=st.lists(topic_sets, min_size=1, max_size=4).map(tuple), people=readers)
def test_planning_picks_the_variant_the_python_rule_picks(store_app, summary_topics, people):
    app = store_app
    clean(app.store)
    topics_of: dict[str, tuple[list[str], bool]] = {}
    for n, (topics, all_topics) in enumerate(people):
        address = f"reader{n}@example.org"
        # Some readers take every topic; a reader may also have chosen no topic at all.
        subscribers.add_subscriber(app, address, topics=topics, all_topics=all_topics)
        topics_of[address] = ([] if all_topics else topics, all_topics)
    k = len(summary_topics)

    for policy in NO_MATCH_POLICIES:
        expected = {
            address: choose_variant(summary_topics, topics, all_topics, policy)
            for address, (topics, all_topics) in topics_of.items()
        }

        # What a preview says planning would do.
        variants, skipped = ledger.preview_plan(app.store, summary_topics, policy, TODAY)
        wanted = Counter(key.mask for key in expected.values() if key is not None)
        assert variants == dict(wanted), policy
        no_match = sum(key is None for key in expected.values())
        assert skipped == ({SKIP_NO_MATCH: no_match} if no_match else {}), policy

        # What planning does.
        month = MONTHS[policy]
        ledger.plan_send(app.store, month, snapshot(summary_topics, policy), TODAY)
        rows = {r.email: r for r in ledger.list_deliveries(app.store, month)}
        assert set(rows) == set(expected), policy
        for address, key in expected.items():
            row = rows[address]
            if key is None:
                assert (row.status, row.skip_reason) == ("skipped", SKIP_NO_MATCH), address
            else:
                assert row.status == "pending", (policy, address)
                assert row.skip_reason is None
                assert row.variant_mask == key.mask, (policy, address, topics_of[address], k)


# --- who receives ------------------------------------------------------------------------

PAUSES = ("none", "past", "today", "future")


def pause_end(which: str, today: dt.date, days: int) -> dt.date | None:
    return {
        "none": None,
        "past": today - dt.timedelta(days=days),
        "today": today,
        "future": today + dt.timedelta(days=days),
    }[which]


@PROPERTY
@given(
    today=st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2090, 12, 31)),
    days=st.integers(min_value=1, max_value=800),
)
def test_the_sql_receiving_condition_agrees_with_is_receiving(store_app, today, days):
    app = store_app
    clean(app.store)
    people: dict[str, tuple[str, dt.date | None]] = {}
    with app.store.transaction() as session:
        for status in SUBSCRIBER_STATUSES:
            for which in PAUSES:
                address = f"{status}-{which}@example.org"
                until = pause_end(which, today, days)
                people[address] = (status, until)
                session.add(
                    Subscriber(
                        email=address,
                        name="",
                        status=status,
                        all_topics=True,
                        paused_until=until,
                        source="cli",
                        created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                    )
                )

    # The condition itself, evaluated by the database for every row.
    with app.store.transaction() as session:
        got = dict(session.execute(select(Subscriber.email, receiving_condition(today))).all())
    for address, (status, until) in people.items():
        expected = is_receiving(status, until, today)
        value = got[address]
        # NULL would be neither true nor false: NOT (condition) in planning would go wrong.
        assert value is not None, (address, today)
        assert bool(value) is expected, (address, until, today)

    # The condition as planning uses it: receiving people are queued, paused ones whose
    # pause has not ended are skipped saying so, everyone else gets no row at all.
    summary_topics = (frozenset(POOL[:1]),)
    ledger.plan_send(app.store, "2031-04", snapshot(summary_topics, "skip"), today)
    rows = {r.email: r for r in ledger.list_deliveries(app.store, "2031-04")}
    for address, (status, until) in people.items():
        if is_receiving(status, until, today):
            assert rows[address].status == "pending", (address, until, today)
        elif status == "paused":
            assert (rows[address].status, rows[address].skip_reason) == ("skipped", SKIP_PAUSED)
        else:
            assert address not in rows, (address, until, today)
