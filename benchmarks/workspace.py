"""A seeded, realistic benchmark workspace: landing files for two consecutive days, inbox
uploads and 56 segment definitions.

- people: one snapshot per day (day 2: a few people joined, left, or changed plan);
- events: 90 days of history landed on day 1, one day of new events landed on day 2; activity
  is skewed (a few very active people, many idle), 40 event names with Zipf-like frequencies,
  money events carry an amount and a currency;
- definitions: attribute filters, 48 distinct event features (windows of 1 to 90 days, some
  with event-column filters, an `ago` window, `event_count_distinct`, `performed_regularly`),
  two `performed_in_order` sequences, `bucket`, `days_in_segment`, `in_segment` chains and
  two manual segments fed from the inbox.

Every segment is also written as hand-written SQL over one row per person (feature columns
`f<i>`, sequence columns `q<i>`, segment columns `s_<id>`, the previous run's `member_since`
as `since_<id>`), for the DuckDB peer of `benchmarks.materialize_bench`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from transforms.cli.demo import COUNTRIES, FIRST_DAY, HISTORY_DAYS, PLANS, SECOND_DAY

SEED = 20260331
EVENT_NAMES = [
    "page_viewed",
    "screen_viewed",
    "session_started",
    "email_opened",
    "search",
    "login",
    "feature_used",
    "notification_received",
    "email_delivered",
    "item_viewed",
    "email_clicked",
    "added_to_cart",
    "push_opened",
    "video_played",
    "comment_posted",
    "file_uploaded",
    "report_exported",
    "checkout_started",
    "purchase",
    "invite_sent",
    "support_ticket_opened",
    "profile_updated",
    "coupon_applied",
    "removed_from_cart",
    "review_written",
    "wishlist_added",
    "share_clicked",
    "app_installed",
    "subscription_renewed",
    "plan_upgraded",
    "refund_requested",
    "password_reset",
    "team_created",
    "integration_connected",
    "survey_answered",
    "webinar_joined",
    "plan_downgraded",
    "subscription_cancelled",
    "account_deleted_request",
    "gift_card_redeemed",
]
NAME_SHARES = 1.0 / np.arange(1, len(EVENT_NAMES) + 1) ** 1.1  # Zipf-like
NAME_SHARES /= NAME_SHARES.sum()
MONEY_EVENTS = ["purchase", "subscription_renewed", "refund_requested", "gift_card_redeemed"]
CURRENCIES = (["USD", "EUR", "GBP"], [0.6, 0.3, 0.1])
PEOPLE_PER_FILE = 1_000_000
ACTIVITY_SIGMA = 1.6
"""Spread of the lognormal activity per person: the top 1% do about a fifth of all events."""


def _person_ids(ids: np.ndarray) -> pl.Expr:
    return pl.lit(pl.Series(ids)).cast(pl.String).str.zfill(8)


def people_frame(rng: np.random.Generator, first_id: int, count: int) -> pl.DataFrame:
    """`count` people who signed up during the 820 days before day 1."""
    ids = np.arange(first_id, first_id + count)
    plan = rng.choice(np.array(PLANS[0]), size=count, p=PLANS[1])
    first = datetime.combine(FIRST_DAY, datetime.min.time(), UTC) - timedelta(days=820)
    age = np.where(rng.random(count) < 0.3, -1, rng.integers(18, 80, size=count))
    trial_days = rng.integers(-3, 14, size=count)
    return pl.select(
        person_id=_person_ids(ids),
        email=pl.format("user.{}@example.com", pl.lit(pl.Series(ids))),
        first_name=pl.lit("Sam"),
        plan=pl.lit(pl.Series(plan)),
        country=pl.lit(pl.Series(rng.choice(np.array(COUNTRIES[0]), size=count, p=COUNTRIES[1]))),
        age=pl.lit(pl.Series(age)).replace(-1, None).cast(pl.Int64),
        lifetime_value=pl.lit(pl.Series(np.round(rng.gamma(1.2, 60, size=count), 2)))
        * (pl.lit(pl.Series(plan)) != "free"),
        email_opt_in=pl.lit(pl.Series(rng.random(count) < 0.7)),
        created_at=pl.lit(first)
        + pl.duration(seconds=pl.lit(pl.Series(rng.integers(0, 820 * 86400, size=count)))),
        trial_ends_on=pl.when(pl.lit(pl.Series(plan)) == "trial").then(
            pl.lit(FIRST_DAY) + pl.duration(days=pl.lit(pl.Series(trial_days)))
        ),
    ).with_columns(pl.col("created_at").dt.cast_time_unit("us").dt.replace_time_zone("UTC"))


def events_frame(
    rng: np.random.Generator,
    first_id: int,
    count: int,
    start: datetime,
    days: int,
    per_person_day: float,
    id_prefix: str,
) -> pl.DataFrame:
    """Events of people `first_id..first_id+count` over `days` days from `start`, in time order
    (as an export delivers them)."""
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, size=count)
    activity *= per_person_day / activity.mean()
    counts = rng.poisson(activity * days)
    owners = np.repeat(np.arange(first_id, first_id + count), counts)
    total = len(owners)
    kind = rng.choice(len(EVENT_NAMES), size=total, p=NAME_SHARES)
    seconds = rng.integers(0, days * 86400, size=total)
    money = np.isin(kind, [EVENT_NAMES.index(n) for n in MONEY_EVENTS])
    amount = np.where(money, np.round(rng.lognormal(3.5, 0.9, size=total), 2), np.nan)
    currency = np.where(money, rng.choice(3, size=total, p=CURRENCIES[1]), -1)
    order = np.argsort(seconds, kind="stable")
    return pl.select(
        event_id=pl.format(f"{id_prefix}{{}}", pl.int_range(total, dtype=pl.Int64)),
        person_id=_person_ids(owners[order]),
        name=pl.lit(pl.Series(EVENT_NAMES)).gather(pl.lit(pl.Series(kind[order]))),
        timestamp=(pl.lit(start) + pl.duration(seconds=pl.lit(pl.Series(seconds[order]))))
        .dt.cast_time_unit("us")
        .dt.replace_time_zone("UTC"),
        amount=pl.lit(pl.Series(amount[order])).fill_nan(None),
        currency=pl.lit(pl.Series(CURRENCIES[0])).gather(
            pl.lit(pl.Series(currency[order])).replace(-1, None)
        ),
        properties=pl.lit('{"source": "app"}'),
    )


def _next_snapshot(rng: np.random.Generator, people: pl.DataFrame) -> pl.DataFrame:
    """Day 2's snapshot: 0.1% left, 0.5% changed plan, 0.2% joined."""
    count = people.height
    stays = people.filter(pl.lit(pl.Series(rng.random(count) >= 0.001)))
    new_plan = pl.lit(pl.Series(rng.choice(np.array(PLANS[0]), size=stays.height)))
    changed = stays.with_columns(
        plan=pl.when(pl.lit(pl.Series(rng.random(stays.height) < 0.005)))
        .then(new_plan)
        .otherwise("plan")
    ).with_columns(
        trial_ends_on=pl.when(pl.col("plan") == "trial").then(
            pl.col("trial_ends_on").fill_null(SECOND_DAY + timedelta(days=14))
        )
    )
    joined = people_frame(rng, count + 1, max(count // 500, 1))
    return pl.concat([changed, joined])


@dataclass(frozen=True)
class Scale:
    people: int
    events: int

    @property
    def per_person_day(self) -> float:
        return self.events / self.people / HISTORY_DAYS


HISTORY_EVENTS_PER_DATE = 10_000_000
"""The history lands over as many dates as keep each date's events at about this many (S: all
on day 1; L: ten dates of nine days each), as a workspace running for months received it."""


def history_landings(scale: Scale) -> list[tuple[date, int, int]]:
    """(ingest date, first day offset, days) of each landing of the 90 days of history; the
    last lands on day 1, each holds the days up to its ingest date."""
    count = max(1, round(scale.events / HISTORY_EVENTS_PER_DATE))
    ends = [round(HISTORY_DAYS * (k + 1) / count) for k in range(count)]
    starts = [0, *ends[:-1]]
    return [
        (FIRST_DAY - timedelta(days=HISTORY_DAYS - end), start, end - start)
        for start, end in zip(starts, ends, strict=True)
    ]


def write_landing(folder: Path, scale: Scale) -> None:
    """The history (people, events of 90 days up to day 1, over `history_landings`) and day 2
    (people, one day of events) as Parquet."""
    done = folder / ".complete"
    if done.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(SEED)
    people = people_frame(rng, 1, scale.people)
    for day, _, _ in history_landings(scale):
        _write(people, folder / "people" / day.isoformat() / "people.parquet")
    _write(
        _next_snapshot(rng, people), folder / "people" / SECOND_DAY.isoformat() / "people.parquet"
    )
    first = datetime.combine(FIRST_DAY, datetime.min.time(), UTC) - timedelta(days=HISTORY_DAYS - 1)
    landings = [
        (d, first + timedelta(days=offset), days) for d, offset, days in history_landings(scale)
    ]
    landings.append((SECOND_DAY, first + timedelta(days=HISTORY_DAYS), 1))
    for day, start, days in landings:
        per_day = scale.per_person_day
        for part, offset in enumerate(range(0, scale.people, PEOPLE_PER_FILE)):
            count = min(PEOPLE_PER_FILE, scale.people - offset)
            frame = events_frame(
                rng, offset + 1, count, start, days, per_day, f"{day:%m%d}-{part}-"
            )
            _write(frame, folder / "events" / day.isoformat() / f"events-{part:03d}.parquet")
    done.touch()


def _write(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)


def write_inbox(folder: Path, people: int, day: date) -> dict[str, list[str]]:
    """Manual uploads of `day` (person ids, one CSV per manual segment); returns them."""
    rng = np.random.default_rng(SEED + (day - FIRST_DAY).days)
    uploads = {
        "vip": rng.choice(people, size=max(people // 1000, 1), replace=False) + 1,
        "do_not_contact": rng.choice(people, size=max(people // 2000, 1), replace=False) + 1,
    }
    added = {}
    for sid, ids in uploads.items():
        frame = pl.select(person_id=_person_ids(np.sort(ids)))
        path = folder / sid / f"upload-{day.isoformat()}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_csv(path)
        added[sid] = frame["person_id"].to_list()
    return added


@dataclass(frozen=True)
class FeatureSpec:
    """One event aggregate, as a definition writes it and as an engineer writes it in SQL."""

    aggregate: str  # count | sum | last | distinct
    event: str
    days: int
    where: str | None = None
    """An event-column filter, the same text in the segment language and in DuckDB SQL."""
    ago: int = 0
    """When not 0, the window is `ago => ('<days> days', '<ago> days')`: (as_of - days, as_of -
    ago]."""
    column: str | None = None
    """The column whose distinct values `distinct` counts."""

    def call(self) -> str:
        column = {"sum": ", amount", "distinct": f", {self.column}"}.get(self.aggregate, "")
        function = {
            "count": "event_count",
            "sum": "event_sum",
            "last": "last_event_at",
            "distinct": "event_count_distinct",
        }
        if self.ago:
            options = f", ago => ('{self.days} days', '{self.ago} days')"
        else:
            options = f", within => '{self.days} days'"
        if self.where:
            options += f", where => {self.where}"
        return f"{function[self.aggregate]}('{self.event}'{column}{options})"

    @property
    def own_pass(self) -> bool:
        """Computed apart from the one pass of the other features (`relation`): a distinct
        count in that pass's group-by makes DuckDB keep a hash table per person and value."""
        return self.aggregate == "distinct"

    def _tests(self, as_of: str) -> list[str]:
        tests = [] if self.event == "*" else [f"name = '{self.event}'"]
        tests.append(f"timestamp > TIMESTAMPTZ '{as_of}' - INTERVAL {self.days} DAY")
        if self.ago:
            tests.append(f"timestamp <= TIMESTAMPTZ '{as_of}' - INTERVAL {self.ago} DAY")
        if self.where:
            tests.append(f"({self.where})")
        return tests

    def relation(self, index: int, events: str, as_of: str) -> str:
        """A CTE `d<index>` (person_id, f<index>) of a feature computed in its own pass: the
        distinct (person, value) pairs of the window, counted per person."""
        tests = [*self._tests(as_of), f"timestamp <= TIMESTAMPTZ '{as_of}'"]
        return (
            f"d{index} AS (SELECT person_id, count({self.column}) AS f{index}"
            f" FROM (SELECT DISTINCT person_id, {self.column} FROM {events}"
            f" WHERE {' AND '.join(tests)}) GROUP BY person_id)"
        )

    def sql(self, as_of: str) -> str:
        tests = self._tests(as_of)
        value = {
            "count": "count(*)",
            "sum": "sum(amount)",
            "last": "max(timestamp)",
            "distinct": f"count(DISTINCT {self.column})",
        }
        return f"{value[self.aggregate]} FILTER (WHERE {' AND '.join(tests)})"

    def sql_value(self, index: int) -> str:
        """The feature column as a predicate sees it (counts and sums are 0 without events)."""
        return f"f{index}" if self.aggregate == "last" else f"coalesce(f{index}, 0)"


@dataclass(frozen=True)
class RegularlySpec:
    """`performed_regularly`: at least `at_least` of the last `periods` periods of `every` days
    hold `times` events or more; in SQL, one count per period and how many reach `times`."""

    event: str
    every: int
    periods: int
    at_least: int
    times: int = 1

    @property
    def days(self) -> int:
        return self.every * self.periods

    def call(self) -> str:
        return (
            f"performed_regularly('{self.event}', every => '{self.every} days',"
            f" periods => {self.periods}, at_least => {self.at_least}, times => {self.times})"
        )

    def sql(self, as_of: str) -> str:
        periods = [
            f"(count(*) FILTER (WHERE name = '{self.event}'"
            f" AND timestamp > TIMESTAMPTZ '{as_of}' - INTERVAL {(k + 1) * self.every} DAY"
            f" AND timestamp <= TIMESTAMPTZ '{as_of}' - INTERVAL {k * self.every} DAY)"
            f" >= {self.times})::INTEGER"
            for k in range(self.periods)
        ]
        return " + ".join(periods)

    def sql_value(self, index: int) -> str:
        return f"coalesce(f{index}, 0) >= {self.at_least}"


@dataclass(frozen=True)
class SequenceSpec:
    """`performed_in_order`: events named like the steps, each strictly after the one before
    and at most `gap_hours` after it, all in the last `days` days."""

    steps: tuple[str, ...]
    gap_hours: int
    days: int

    def call(self) -> str:
        steps = ", ".join(f"'{step}'" for step in self.steps)
        return (
            f"performed_in_order({steps}, gap => '{self.gap_hours} hours',"
            f" within => '{self.days} days')"
        )

    def sql(self, index: int, events: str, as_of: str) -> str:
        """CTEs `q<index>_<k>` (the step-k events that end an ordered run of the first k steps)
        and `q<index>` (person_id, q<index>: the people who did all of them), over the relation
        `events`: each step's events ASOF-joined to the latest qualifying event of the step
        before, strictly earlier."""
        window = (
            f"timestamp <= TIMESTAMPTZ '{as_of}'"
            f" AND timestamp > TIMESTAMPTZ '{as_of}' - INTERVAL {self.days} DAY"
        )
        first = f"q{index}_1"
        ctes = [
            f"{first} AS (SELECT person_id, timestamp FROM {events}"
            f" WHERE name = '{self.steps[0]}' AND {window})"
        ]
        for k, step in enumerate(self.steps[1:], start=2):
            ctes.append(
                f"q{index}_{k} AS (SELECT b.person_id, b.timestamp"
                f" FROM (SELECT person_id, timestamp FROM {events}"
                f" WHERE name = '{step}' AND {window}) b"
                f" ASOF JOIN q{index}_{k - 1} a"
                f" ON b.person_id = a.person_id AND b.timestamp > a.timestamp"
                f" WHERE b.timestamp <= a.timestamp + INTERVAL {self.gap_hours} HOUR)"
            )
        ctes.append(
            f"q{index} AS (SELECT DISTINCT person_id, TRUE AS q{index}"
            f" FROM q{index}_{len(self.steps)})"
        )
        return ",\n  ".join(ctes)


WINDOWS = [1, 3, 7, 14, 30, 60, 90]
FEATURES = [
    *(FeatureSpec("count", name, WINDOWS[i % 7]) for i, name in enumerate(EVENT_NAMES[:30])),
    FeatureSpec("count", "*", 7),
    FeatureSpec("count", "*", 30),
    FeatureSpec("last", "*", 90),
    FeatureSpec("count", "page_viewed", 30),
    FeatureSpec("count", "login", 30),
    FeatureSpec("count", "email_clicked", 90),
    FeatureSpec("count", "purchase", 30, "amount > 100"),
    FeatureSpec("count", "purchase", 90, "currency = 'USD'"),
    FeatureSpec("sum", "purchase", 30),
    FeatureSpec("sum", "purchase", 90, "currency IN ('EUR', 'GBP')"),
    FeatureSpec("count", "subscription_renewed", 90, "amount >= 20"),
    FeatureSpec("count", "refund_requested", 60, "amount > 50"),
    FeatureSpec("last", "purchase", 90),
    FeatureSpec("count", "session_started", 7),
    FeatureSpec("count", "purchase", 90, ago=30),
    FeatureSpec("distinct", "purchase", 90, column="currency"),
    FeatureSpec("distinct", "*", 30, column="name"),
    RegularlySpec("page_viewed", every=7, periods=4, at_least=3),
]
"""48 distinct features: 30 names with windows of 1 to 90 days, any-event counts, filters, an
`ago` window, distinct counts and a regularity (its four weekly counts are features of their
own in the project; the peer computes them inline)."""
SEQUENCES = [
    SequenceSpec(("item_viewed", "added_to_cart", "purchase"), gap_hours=72, days=30),
    SequenceSpec(("checkout_started", "purchase"), gap_hours=24, days=14),
]
"""`performed_in_order` calls; Q{i} in a template."""
F = {
    "page7": 0,
    "session14": 2,
    "search60": 4,
    "login90": 5,
    "installs90": 27,
    "active7": 30,
    "active30": 31,
    "last_seen": 32,
    "page30": 33,
    "login30": 34,
    "email_clicks90": 35,
    "big_buys30": 36,
    "usd_buys90": 37,
    "spend30": 38,
    "spend_eur_gbp90": 39,
    "renewals90": 40,
    "refunds60": 41,
    "last_purchase": 42,
    "session7": 43,
    "checkout14": 17,
    "purchase30": 18,
    "purchase_90_30_ago": 44,
    "currencies90": 45,
    "names30": 46,
    "weekly_pages": 47,
}

HAND_WRITTEN = [
    ("paid_europe", "plan IN ('pro', 'enterprise') AND country IN ('DE', 'FR', 'ES', 'NL', 'GB')"),
    ("trials_ending", "plan = 'trial' AND trial_ends_on <= DATE '2026-04-05'"),
    ("new_signups", "created_at > TIMESTAMP '2026-03-01 00:00:00'"),
    ("high_ltv", "lifetime_value > 150"),
    ("opted_in_adults", "email_opt_in = TRUE AND age >= 21"),
    ("us_free", "plan = 'free' AND country = 'US'"),
    ("active_week", "F{active7} >= 1"),
    ("active_month_only", "F{active30} >= 1 AND F{active7} = 0"),
    ("dormant", "F{last_seen} < TIMESTAMP '2026-03-01 00:00:00' OR F{last_seen} IS NULL"),
    ("big_spenders", "F{spend30} > 200 OR F{big_buys30} >= 2"),
    ("usd_buyers", "F{usd_buys90} >= 3 AND country = 'US'"),
    ("europe_spenders", "F{spend_eur_gbp90} > 300 AND country IN ('DE', 'FR', 'ES', 'NL', 'GB')"),
    ("loyal_renewers", "F{renewals90} >= 2 AND F{refunds60} = 0"),
    ("lapsed_buyers", "F{last_purchase} < TIMESTAMP '2026-03-10 00:00:00'"),
    ("power_searchers", "F{search60} >= 10 AND F{page30} >= 20"),
    ("lapsed_loggers", "F{login90} >= 5 AND F{login30} = 0"),
    ("email_clickers", "F{email_clicks90} >= 5 AND email_opt_in = TRUE"),
    ("new_app_users", "F{installs90} >= 1 AND created_at > TIMESTAMP '2026-01-01 00:00:00'"),
    ("reachable", "email_opt_in = TRUE AND NOT S(do_not_contact)"),
    ("engaged", "S(active_week) AND F{session7} >= 3"),
    ("engaged_reachable", "S(engaged) AND S(reachable)"),
    ("vip_engaged", "S(vip) OR (S(engaged_reachable) AND plan = 'enterprise')"),
    ("winback", "S(reachable) AND NOT S(active_week) AND S(high_ltv)"),
    ("upsell_free", "S(engaged_reachable) AND plan = 'free' AND NOT S(vip)"),
]
"""Segments as teams write them; F{x} is a feature, S(id) another segment."""
LANGUAGE_2 = [
    ("lapsed_purchasers", "F{purchase_90_30_ago} >= 1 AND F{purchase30} = 0"),
    ("multi_currency_buyers", "F{currencies90} >= 2 AND F{names30} >= 8"),
    ("cart_to_purchase", "Q{{0}} AND S(reachable)"),
    ("abandoned_checkout", "F{checkout14} >= 1 AND NOT Q{{1}}"),
    ("engaged_holdout", "S(engaged) AND B(100) < 10"),
    ("weekly_regulars", "F{weekly_pages} AND D(engaged) >= 1 AND NOT S(engaged_holdout)"),
]
"""Segments using the language's later additions: an `ago` window, `event_count_distinct`,
`performed_in_order` (Q{i}), `bucket` (B(n)), `performed_regularly` and `days_in_segment`
(D(id): whole days since the previous run's `member_since`)."""
PLAN_NAMES = ["free", "trial", "pro", "enterprise"]


def _generated(count: int) -> list[tuple[str, str]]:
    """Segments over the per-name features, so every feature is used."""
    specs = []
    for i in range(count):
        a, b = i % 30, (i * 7 + 11) % 30
        low, high = 1 + i % 3, 3 + i % 5
        where = f"F{a} >= {low} AND F{b} < {high}"
        if i % 3 == 0:
            where += f" AND plan = '{PLAN_NAMES[i % 4]}'"
        if i % 5 == 0:
            where = f"({where}) OR F{(i + 24) % 30} >= 20"
        specs.append((f"usage_{i:02d}", where))
    return specs


GENERATED = 24


def segment_templates() -> list[tuple[str, str | None]]:
    """(segment id, template) of the 56 segments, each after the segments it reads; manual
    segments have no template."""
    hand = [(sid, text.format(**F)) for sid, text in [*HAND_WRITTEN, *LANGUAGE_2]]
    return [("vip", None), ("do_not_contact", None), *hand, *_generated(GENERATED)]


def tenure_segments() -> list[str]:
    """The segments whose `days_in_segment` some template reads (D(id))."""
    found = {m.group(1) for _, t in segment_templates() if t for m in _DAYS.finditer(t)}
    return sorted(found)


_DAYS = re.compile(r"\bD\((\w+)\)")


def _render(
    template: str,
    feature: Callable[[int], str],
    segment: Callable[[str], str],
    sequence: Callable[[int], str],
    days: Callable[[str], str],
    bucket: Callable[[int], str],
) -> str:
    text = re.sub(r"\bF(\d+)\b", lambda m: feature(int(m.group(1))), template)
    text = re.sub(r"\bQ\{(\d+)\}", lambda m: sequence(int(m.group(1))), text)
    text = re.sub(r"\bB\((\d+)\)", lambda m: bucket(int(m.group(1))), text)
    text = _DAYS.sub(lambda m: days(m.group(1)), text)
    return re.sub(r"\bS\((\w+)\)", lambda m: segment(m.group(1)), text)


def definition(template: str) -> str:
    """A template in the segment language."""
    return _render(
        template,
        lambda i: FEATURES[i].call(),
        lambda s: f"in_segment('{s}')",
        lambda i: SEQUENCES[i].call(),
        lambda s: f"days_in_segment('{s}')",
        lambda n: f"bucket({n})",
    )


def hand_sql(template: str, day: date = SECOND_DAY) -> str:
    """A template in hand-written SQL over feature columns f<i>, sequence columns q<i>,
    segment columns s_<id> and the previous run's member_since as since_<id>, for run date
    `day`."""
    return _render(
        template,
        lambda i: FEATURES[i].sql_value(i),
        lambda s: f"s_{s}",
        lambda i: f"coalesce(q{i}, false)",
        lambda s: (
            f"CASE WHEN s_{s} THEN date_diff('day', coalesce(since_{s}, DATE '{day}'),"
            f" DATE '{day}') END"
        ),
        # the first 8 hexadecimal digits of md5(':' || person_id) as an integer, modulo n
        lambda n: f"(('0x' || left(md5(':' || person_id), 8))::BIGINT % {n})",
    )


def write_definitions(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for sid, template in segment_templates():
        body = (
            "type: manual\n"
            if template is None
            else f"type: data_driven\nwhere: |\n  {definition(template)}\n"
        )
        (folder / f"{sid}.yaml").write_text(f"name: {sid}\n{body}")
