"""The syndication index as articles accumulate: per-article cost, state held and resident memory at 10k to 500k.

    .venv/bin/python benchmarks/bench_scale.py [--shared ../shared] [--articles 500000] [--per-day 20000]
        [--horizon-days 7]

Issue 17's second goal: cost flat as work grows, and memory bounded by the
horizon, not by the number of articles ever seen. A pipeline run to 500,000
articles takes hours here, so this drives the index's own pure functions the
way a runner does, and holds their state the way the local runner's state
servicer holds it (a dict of each bucket's encoded bytes): every article's
queries are `index_step`s on the buckets they fall in, each bucket decoded
and encoded per access. The articles are real signatures (the labelled set of
`syndication_labelled.py`, 17 languages) under fresh ids with fresh index
keys spread over all `BUCKETS` as real keys are, so no two of them are copies:
what is measured is the index's bookkeeping, not matching. Event time
advances by `--per-day` articles a day, so once the horizon has passed,
entries older than it are due to go.

Prints at each checkpoint (10k, 100k, 250k, 500k by default): CPU ms per
article over the last 2,000 articles, the index state held (encoded bytes,
entries, of which within the horizon, buckets), and the process's resident
memory (VmRSS), then the ratio of the last checkpoint's cost to the first's.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_syndication import to_article  # noqa: E402
from benchmarks.syndication_labelled import build  # noqa: E402
from wirecopy.transforms import syndication as syn  # noqa: E402

DAY_MS = 24 * 3600 * 1000
TIMED_WINDOW = 2_000
CHECKPOINTS = (10_000, 100_000, 250_000, 500_000)


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def donor_queries(shared: Path) -> list[list[syn.IndexQuery]]:
    """Each labelled article's index queries (their signatures and key counts are what a real article has)."""
    labelled, _ = build(shared, bases_per_language=10)
    start_ms = int(dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    donors = []
    for position, item in enumerate(labelled):
        article = to_article(item, position, start_ms, True)
        donors.append([m for _, m in syn.fan_out(article) if isinstance(m, syn.IndexQuery)])
    return donors


def fresh_article(donor: list[syn.IndexQuery], number: int, event_ms: int, rng: random.Random):
    """The donor's queries as article `number`'s, published at `event_ms`, each under a fresh key and bucket."""
    article_id = f"scale-{number}"
    key = syn.SortKey(event_ms, event_ms, number, article_id)
    root = syn.Root(event_ms, number, article_id)
    for query in donor:
        index_key = rng.getrandbits(64)
        bucket = index_key % syn.BUCKETS
        yield (
            bucket,
            dataclasses.replace(
                query, article_id=article_id, keys=frozenset({index_key}), sort_key=key, root=root, bucket=bucket
            ),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--articles", type=int, default=CHECKPOINTS[-1])
    parser.add_argument("--per-day", type=int, default=20_000, help="articles per day of event time")
    parser.add_argument("--horizon-days", type=float, default=syn.DEFAULT_HORIZON_MS / DAY_MS)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    donors = donor_queries(args.shared)
    horizon_ms = int(args.horizon_days * DAY_MS)
    start_ms = int(dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    print(
        f"index of {args.articles:,} articles at {args.per_day:,} a day, horizon {args.horizon_days:g} days "
        f"({int(args.per_day * args.horizon_days):,} articles within it); {len(donors):,} donor signatures, "
        f"{sum(map(len, donors)) / len(donors):.1f} buckets per article; BUCKETS {syn.BUCKETS:,}; "
        f"resident at start {resident_mib():,.0f} MiB"
    )
    print(
        f"{'articles':>9} {'CPU ms/article':>15} {'state MiB':>10} {'entries':>11} {'in horizon':>11} "
        f"{'buckets':>10} {'RSS MiB':>8}"
    )
    buckets: dict[int, bytes] = {}
    checkpoints = [c for c in CHECKPOINTS if c <= args.articles]
    costs = {}
    window_started = time.process_time()
    for number in range(args.articles):
        event_ms = start_ms + number * DAY_MS // args.per_day
        for bucket_id, query in fresh_article(donors[number % len(donors)], number, event_ms, rng):
            held = buckets.get(bucket_id)
            bucket, _ = syn.index_step(held and syn.decode_bucket(held), query, bucket_id, horizon_ms)
            buckets[bucket_id] = syn.encode_bucket(bucket)
        done = number + 1
        if done % TIMED_WINDOW == 0:
            cost = (time.process_time() - window_started) * 1000 / TIMED_WINDOW
            if done in checkpoints:
                costs[done] = cost
                report(done, cost, buckets, event_ms - horizon_ms)
            window_started = time.process_time()
    first, last = costs[checkpoints[0]], costs[checkpoints[-1]]
    print(f"cost at {checkpoints[-1]:,} over cost at {checkpoints[0]:,}: {last / first:.2f}")
    return 0


def report(done: int, cost: float, buckets: dict[int, bytes], oldest_live_ms: int) -> None:
    """One checkpoint's row (decoding every bucket to count its entries is outside the timed windows)."""
    entries = live = 0
    for held in buckets.values():
        for entry in syn.decode_bucket(held).entries:
            entries += 1
            live += entry.event_ms >= oldest_live_ms
    state = sum(map(len, buckets.values())) / 2**20
    print(
        f"{done:>9,} {cost:>15.3f} {state:>10,.0f} {entries:>11,} {live:>11,} {len(buckets):>10,} "
        f"{resident_mib():>8,.0f}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
