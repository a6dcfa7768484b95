"""A realistic, seeded demo workspace: three consecutive days of landing files (the demo runs
the first two; the third is left for the reader's own run) and a few manual CSVs, in every
input format the pipeline reads.

- people: ~10,000 people with varied attributes; day 1 as CSV (with a handful of broken rows
  to show quarantine), day 2 as Parquet (plans changed, people joined and left);
- events: 90 days of history of a dozen kinds, skewed (a few very active people, many idle),
  landed on day 1 as gzipped CSV; day 2's events as JSON lines, with re-sent and late events
  and events of people not yet in the snapshot; day 3: people as Parquet, a day of events;
- inbox: manual-segment uploads before the first day (VIPs by id, beta testers by email), and
  `later_uploads` to drop between the days (a removal by email with an unknown address, more
  VIPs, and a broken export that the run refuses).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from transforms.errors import SegmentsError
from transforms.storage.roots import Root

FIRST_DAY = date(2026, 3, 30)
SECOND_DAY = FIRST_DAY + timedelta(days=1)
THIRD_DAY = FIRST_DAY + timedelta(days=2)
HISTORY_DAYS = 90
SEED = 20260330

PLANS = (["free", "trial", "pro", "enterprise"], [0.55, 0.15, 0.25, 0.05])
COUNTRIES = (
    ["US", "DE", "GB", "FR", "BR", "IN", "CA", "ES", "NL", "JP"],
    [0.32, 0.12, 0.1, 0.08, 0.08, 0.08, 0.07, 0.06, 0.05, 0.04],
)
FIRST_NAMES = [
    "Ada",
    "Bo",
    "Chen",
    "Dara",
    "Eli",
    "Fatima",
    "Gus",
    "Hana",
    "Ivo",
    "Jules",
    "Kemal",
    "Lea",
    "Mo",
    "Nia",
    "Omar",
    "Pia",
    "Quinn",
    "Rui",
    "Sol",
    "Tess",
]
# (name, share of all events); purchases carry an amount and a currency, and every event
# properties (`_properties`).
EVENT_KINDS = [
    ("page_viewed", 0.42),
    ("email_opened", 0.14),
    ("login", 0.11),
    ("email_clicked", 0.06),
    ("feature_used", 0.08),
    ("added_to_cart", 0.05),
    ("search", 0.05),
    ("purchase", 0.03),
    ("support_ticket_opened", 0.02),
    ("invite_sent", 0.02),
    ("subscription_renewed", 0.01),
    ("app_installed", 0.01),
]
CURRENCIES = (["USD", "EUR", "GBP"], [0.6, 0.3, 0.1])


@dataclass(frozen=True)
class DemoFiles:
    """What `write_demo_workspace` wrote, by root-relative key."""

    landing: list[str]
    inbox: list[str]
    later_uploads: dict[str, bytes]
    """Uploads a marketer drops between the two days: (inbox key, content)."""


def demo_people(
    rng: np.random.Generator, count: int, first_id: int, joined_days: int = 820
) -> pl.DataFrame:
    """`count` people who signed up during the `joined_days` days before the first day."""
    ids = np.arange(first_id, first_id + count)
    plan = rng.choice(PLANS[0], size=count, p=PLANS[1])
    first = datetime.combine(FIRST_DAY, datetime.min.time(), UTC) - timedelta(days=joined_days)
    created = [
        first + timedelta(seconds=int(s)) for s in rng.integers(0, joined_days * 86400, size=count)
    ]
    age = pl.Series(rng.integers(18, 80, size=count)).set(pl.Series(rng.random(count) < 0.3), None)
    trial_end = [
        (FIRST_DAY + timedelta(days=int(d))) if p == "trial" else None
        for p, d in zip(plan, rng.integers(-3, 14, size=count), strict=True)
    ]
    return pl.DataFrame(
        {
            "person_id": [f"{i:06d}" for i in ids],
            "email": [
                f"{FIRST_NAMES[i % 20].lower()}.{i}@example.{'com' if i % 7 else 'org'}"
                for i in ids
            ],
            "first_name": [FIRST_NAMES[i % 20] for i in ids],
            "plan": plan,
            "country": rng.choice(COUNTRIES[0], size=count, p=COUNTRIES[1]),
            "age": age.cast(pl.Int64),
            "lifetime_value": np.round(rng.gamma(1.2, 60, size=count) * (plan != "free"), 2),
            "email_opt_in": rng.random(count) < 0.7,
            "created_at": pl.Series(created, dtype=pl.Datetime("us", "UTC")),
            "trial_ends_on": pl.Series(trial_end, dtype=pl.Date),
        }
    )


def demo_events(
    rng: np.random.Generator,
    person_ids: list[str],
    start: datetime,
    days: int,
    per_day: float,
    id_prefix: str,
) -> pl.DataFrame:
    """Events over `days` days from `start`; activity per person is heavily skewed."""
    activity = rng.lognormal(mean=0.0, sigma=1.4, size=len(person_ids))
    activity *= per_day / activity.mean()
    counts = rng.poisson(activity * days)
    owners = np.repeat(np.array(person_ids, dtype=object), counts)
    total = len(owners)
    names, shares = zip(*EVENT_KINDS, strict=True)
    kind = rng.choice(np.array(names, dtype=object), size=total, p=np.array(shares) / sum(shares))
    seconds = rng.integers(0, days * 86400, size=total)
    is_purchase = kind == "purchase"
    amount = np.where(is_purchase, np.round(rng.lognormal(3.5, 0.9, size=total), 2), np.nan)
    currency = np.where(is_purchase, rng.choice(CURRENCIES[0], size=total, p=CURRENCIES[1]), None)
    order = np.argsort(seconds, kind="stable")
    stamps = pl.lit(start) + pl.duration(seconds=pl.Series(seconds[order]))
    return pl.DataFrame(
        {
            "event_id": [f"{id_prefix}{i:08d}" for i in range(total)],
            "person_id": owners[order].tolist(),
            "name": kind[order].tolist(),
            "timestamp": pl.select(stamps.dt.cast_time_unit("us")).to_series(),
            "amount": pl.Series(amount[order], dtype=pl.Float64).fill_nan(None),
            "currency": pl.Series(currency[order].tolist(), dtype=pl.String),
            "properties": _properties(kind[order], amount[order]),
        }
    )


def _properties(kinds: np.ndarray, amounts: np.ndarray) -> list[str]:
    """Each event's properties as JSON text, from its position and kind (no random draws, so
    the rest of the demo is what it was): every event's `source`; a purchase's `product_id` and
    `price` (its amount); a renewal's `plan`; a campaign on clicked emails, which the events
    contract does not declare (ingest drops it and counts it)."""
    texts = []
    for position, (kind, amount) in enumerate(zip(kinds.tolist(), amounts.tolist(), strict=True)):
        properties: dict[str, object] = {"source": "app" if position % 3 == 0 else "web"}
        if kind == "purchase":
            properties |= {"product_id": f"sku_{position * 7919 % 40:03d}", "price": amount}
        elif kind == "subscription_renewed":
            properties["plan"] = "enterprise" if position % 5 == 0 else "pro"
        elif kind == "email_clicked":
            properties["campaign"] = "spring_sale"
        texts.append(json.dumps(properties))
    return texts


def _csv_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer, datetime_format="%Y-%m-%dT%H:%M:%S%.fZ")
    return buffer.getvalue()


def _broken_people_rows(people: pl.DataFrame) -> pl.DataFrame:
    """A few rows a real export gets wrong, to show the quarantine in the demo."""
    text = people.head(4).cast(pl.String)
    return pl.DataFrame(
        [
            {**text.row(0, named=True), "person_id": "900001", "plan": "platinum"},
            {**text.row(1, named=True), "person_id": "900002", "age": "forty"},
            {**text.row(2, named=True), "person_id": "900003", "created_at": "yesterday"},
            {**text.row(3, named=True), "person_id": "900004", "email": "not-an-email"},
            {**text.row(3, named=True), "first_name": "Duplicate"},
        ]
    )


def write_demo_workspace(landing: Root, inbox: Root, people_count: int = 10_000) -> DemoFiles:
    """Write the demo's landing files for FIRST_DAY, SECOND_DAY and THIRD_DAY, and its inbox
    CSVs."""
    rng = np.random.default_rng(SEED)
    day1, day2 = FIRST_DAY.isoformat(), SECOND_DAY.isoformat()
    written_landing, written_inbox = [], []

    people1 = demo_people(rng, people_count, first_id=1)
    people1_text = pl.concat(
        [people1.cast(pl.String), _broken_people_rows(people1)], how="vertical"
    )
    key = f"people/{day1}/people.csv"
    landing.write_bytes(key, _csv_bytes(people1_text))
    written_landing.append(key)

    leavers = set(rng.choice(people1["person_id"].to_list(), size=40, replace=False).tolist())
    upgraded = rng.random(people1.height) < 0.03
    people2 = pl.concat(
        [
            people1.with_columns(
                plan=pl.when(pl.Series(upgraded)).then(pl.lit("pro")).otherwise(pl.col("plan"))
            ).filter(~pl.col("person_id").is_in(leavers)),
            demo_people(rng, 60, first_id=people_count + 1, joined_days=2),
        ],
        how="vertical",
    )
    key = f"people/{day2}/people.parquet"
    buffer = io.BytesIO()
    people2.write_parquet(buffer)
    landing.write_bytes(key, buffer.getvalue())
    written_landing.append(key)

    history_start = datetime.combine(FIRST_DAY, datetime.min.time(), UTC) - timedelta(
        days=HISTORY_DAYS - 1
    )
    history = demo_events(
        rng, people1["person_id"].to_list(), history_start, HISTORY_DAYS, 0.35, "h"
    )
    key = f"events/{day1}/events-history.csv.gz"
    landing.write_bytes(key, _csv_bytes(history))
    written_landing.append(key)

    day2_start = datetime.combine(SECOND_DAY, datetime.min.time(), UTC)
    today = demo_events(rng, people2["person_id"].to_list(), day2_start, 1, 0.35, "d")
    late = demo_events(
        rng, people1["person_id"].to_list()[:500], day2_start - timedelta(days=1), 1, 0.2, "late"
    )
    strangers = demo_events(rng, ["x-unknown-1", "x-unknown-2"], day2_start, 1, 3.0, "s")
    resent = today.head(25)
    day2_events = pl.concat([today, late, strangers, resent], how="vertical")
    key = f"events/{day2}/events.jsonl"
    landing.write_bytes(key, day2_events.write_ndjson().encode())
    written_landing.append(key)
    written_landing += _third_day(landing, rng, people2)

    vip = people2.filter(pl.col("lifetime_value") > 200).head(150).select("person_id")
    beta = people2.sample(80, seed=SEED).select("email")
    first_uploads = {
        "vip_customers/2026-03-30-vip-list.csv": _csv_bytes(vip),
        "beta_testers/beta-signups.csv": _csv_bytes(beta),
    }
    for key, data in first_uploads.items():
        inbox.write_bytes(key, data)
    written_inbox += list(first_uploads)
    unknown = pl.DataFrame({"email": ["not-a-customer@example.net"]})
    later_uploads = {
        "beta_testers/remove/opted-out.csv": _csv_bytes(
            pl.concat([beta.head(5), unknown], how="vertical")
        ),
        "vip_customers/2026-03-31-more-vips.csv": _csv_bytes(
            people2.filter(pl.col("lifetime_value") > 200).slice(150, 20).select("person_id")
        ),
        "vip_customers/broken-export.csv": b"customer name;segment\nAda;vip\n",
    }
    return DemoFiles(landing=written_landing, inbox=written_inbox, later_uploads=later_uploads)


def _third_day(landing: Root, rng: np.random.Generator, people: pl.DataFrame) -> list[str]:
    """THIRD_DAY's landing files: the people of day 2, a few more of them on a paid plan, and
    a day of their events."""
    day = THIRD_DAY.isoformat()
    upgraded = pl.Series(rng.random(people.height) < 0.01)
    people3 = people.with_columns(
        plan=pl.when(upgraded).then(pl.lit("pro")).otherwise(pl.col("plan"))
    )
    buffer = io.BytesIO()
    people3.write_parquet(buffer)
    start = datetime.combine(THIRD_DAY, datetime.min.time(), UTC)
    events = demo_events(rng, people3["person_id"].to_list(), start, 1, 0.35, "t")
    keys = {
        f"people/{day}/people.parquet": buffer.getvalue(),
        f"events/{day}/events.jsonl": events.write_ndjson().encode(),
    }
    for key, data in keys.items():
        landing.write_bytes(key, data)
    return list(keys)


MARKER = ".segments-demo"


def prepare_demo_roots(roots: list[Root]) -> None:
    """Empty the roots for a fresh demo, but only roots a previous demo created: anything else
    that is not empty is refused, so the demo never deletes real data."""
    for root in roots:
        files = [f for f in root.list_files("", recursive=True) if f.name != MARKER]
        if files and not root.exists(MARKER):
            raise SegmentsError(
                f"{root.url} is not empty and was not written by the demo",
                hint="point --landing/--lake/--inbox at empty folders for the demo",
            )
        root.delete([f.key for f in files])
        root.write_bytes(MARKER, b"written by `segments demo`; the next demo may empty it\n")
