"""Syndication benchmark: clustering quality, sketch speed and lookup cost (prints figures).

    .venv/bin/pip install -e '.[bench]'     # datasketch, the comparison baseline
    .venv/bin/python benchmarks/bench_syndication.py [--shared ../shared] [--seed 7] [--pipeline [--baseline REV]]

Quality is measured on the labelled set of `benchmarks/syndication_labelled.py`
(base articles from the real corpus, randomised copies in every language,
same-topic hard negatives, site boilerplate on copies and negatives alike).
Our stage runs its own pure functions in arrival order, exactly as the local
runner's fused stages do. `--pipeline` also runs the Beam transform on
FnApiRunner, checks it assigns the same clusters, and prints the stage's cost
per article there: (the same pipeline with the stage - without it) / articles,
so the harness's own cost (Create, pickling, writing) is left out;
`--baseline REV` does the same, with quality, for the stage as of a git
revision, in the same run. Its clusters are read
as a consumer reads them: `cluster.id` per article, with `merged` events
applied (union-find); the raw ids are printed too. Side by side: datasketch
MinHash (128 permutations, word 5-shingles of the same fingerprints) with
MinHashLSH at several thresholds, each article queried before it is
inserted, matches unioned.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import gc
import io
import json
import math
import pickle
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.syndication_labelled import LabelledArticle, build  # noqa: E402
from wirecopy.schemas.records import Article, Rejected, SourceRecord  # noqa: E402
from benchmarks.in_order import InOrder  # noqa: E402
from wirecopy.transforms import syndication as syn  # noqa: E402
from wirecopy.transforms import syndication_sketch as sketching  # noqa: E402
from wirecopy.transforms.normalise import draft_article, finish, fingerprint  # noqa: E402

LSH_THRESHOLDS = (0.2, 0.3, 0.5, 0.7)


def to_article(labelled: LabelledArticle, position: int, start_ms: int, boilerplate_removed: bool) -> Article:
    """The article as the syndication stage receives it.

    With `boilerplate_removed`, through the normalise stage's generic
    boilerplate patterns (not its per-source template learning); without, the
    whole text, site chrome and all.
    """
    raw = {
        "id": labelled.article_id,
        "text": labelled.text,
        "title": labelled.title,
        "published_at": labelled.published_at,
    }
    source = SourceRecord("labelled", 0, position, b"", timestamp_ms=start_ms + position * 1000)
    article = finish(draft_article(Article(source, raw)))
    if not boilerplate_removed:
        article = article.with_content(dataclasses.replace(article.content, text=labelled.text))
    return article.with_language({"code": "und", "confidence": 0.0})


# --- our stage, in process --------------------------------------------------


def run_stage(articles: list[Article]) -> InOrder:
    """Every article through the stage's steps in arrival order."""
    run = InOrder()
    for article in articles:
        run.send(article)
    return run


class UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


# --- metrics -------------------------------------------------------------------


def _pairs(count: int) -> int:
    return count * (count - 1) // 2


def scores(truth: dict[str, str], predicted: dict[str, str]) -> dict[str, float]:
    """Adjusted Rand index and pairwise precision, recall, F1."""
    ids = list(truth)
    contingency = collections.Counter((truth[i], predicted[i]) for i in ids)
    true_sizes = collections.Counter(truth[i] for i in ids)
    predicted_sizes = collections.Counter(predicted[i] for i in ids)
    together = sum(_pairs(n) for n in contingency.values())
    true_pairs = sum(_pairs(n) for n in true_sizes.values())
    predicted_pairs = sum(_pairs(n) for n in predicted_sizes.values())
    expected = true_pairs * predicted_pairs / _pairs(len(ids))
    maximum = (true_pairs + predicted_pairs) / 2
    precision = together / predicted_pairs if predicted_pairs else 1.0
    recall = together / true_pairs if true_pairs else 1.0
    return {
        "ari": (together - expected) / (maximum - expected),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "clusters": len(predicted_sizes),
    }


def _row(name: str, figures: dict[str, float]) -> str:
    return (
        f"  {name:<38} ARI {figures['ari']:.4f}  P {figures['precision']:.4f}  R {figures['recall']:.4f}  "
        f"F1 {figures['f1']:.4f}  clusters {figures['clusters']}"
    )


# --- datasketch baseline ---------------------------------------------------------


def word_shingles(fingerprint: str, size: int = 5) -> list[bytes]:
    words = fingerprint.split()
    return [" ".join(words[i : i + size]).encode("utf-8") for i in range(max(1, len(words) - size + 1))]


def datasketch_minhashes(fingerprints: list[str]):
    from datasketch import MinHash

    hashes = []
    for text in fingerprints:
        minhash = MinHash(num_perm=128, seed=1)
        minhash.update_batch(word_shingles(text))
        hashes.append(minhash)
    return hashes


def datasketch_clusters(ids: list[str], minhashes, threshold: float) -> dict[str, str]:
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    groups = UnionFind()
    for article_id, minhash in zip(ids, minhashes):
        for other in lsh.query(minhash):
            groups.union(article_id, other)
        lsh.insert(article_id, minhash)
    return {article_id: groups.find(article_id) for article_id in ids}


# --- speed -----------------------------------------------------------------------


def time_sketches(fingerprints: list[str], rounds: int = 5) -> tuple[float, float]:
    """(ms per article for our sketch, ms per article for datasketch MinHash-128), same articles, same run."""
    from datasketch import MinHash

    def ours():
        for text in fingerprints:
            sketching.sketch(text)

    def theirs():
        for text in fingerprints:
            minhash = MinHash(num_perm=128, seed=1)
            minhash.update_batch(word_shingles(text))

    results = []
    for run in (ours, theirs):
        run()
        best = min(_timed(run) for _ in range(rounds))
        results.append(best * 1000 / len(fingerprints))
    return results[0], results[1]


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def time_lookups(articles: list[Article], in_state: int, queries: int, rng: random.Random) -> dict[str, float]:
    """Per-article index cost with `in_state` articles in state.

    Buckets are independent, so the index holding `in_state` articles is
    reproduced where a query looks: every bucket an article's queries touch is
    filled with as many unrelated entries as it would hold on average
    (Poisson, mean in_state x keys per article / BUCKETS), made from real
    signatures, then the query is timed, including encoding and decoding the
    bucket state as the runner does.
    """
    donors = [(m, a) for a in articles[:400] for _, m in syn.fan_out(a) if isinstance(m, syn.IndexQuery)]
    keys_per_article = len(donors) / 400
    mean = in_state * keys_per_article / syn.BUCKETS
    samples, entries_seen = [], []
    for article in rng.sample(articles, queries):
        queries_of_article = [(k, m) for k, m in syn.fan_out(article) if isinstance(m, syn.IndexQuery)]
        prepared = []
        for bucket_id, query in queries_of_article:
            bucket = None
            for _ in range(_poisson(rng, mean)):
                donor, owner = rng.choice(donors)
                if owner.article_id == article.article_id:
                    continue
                fake = dataclasses_replace_query(donor, rng)
                bucket, _ = syn.index_step(bucket, fake, bucket_id)
            prepared.append((bucket_id, query, bucket and syn.encode_bucket(bucket)))
            entries_seen.append(len(bucket.entries) if bucket else 0)
        started = time.perf_counter()
        for bucket_id, query, encoded in prepared:
            bucket, _ = syn.index_step(encoded and syn.decode_bucket(encoded), query, bucket_id)
            syn.encode_bucket(bucket)
        samples.append(time.perf_counter() - started)
    return {
        "ms_per_article": statistics.mean(samples) * 1000,
        "entries_per_bucket": statistics.mean(entries_seen),
        "buckets_per_article": keys_per_article,
    }


def dataclasses_replace_query(query: syn.IndexQuery, rng: random.Random) -> syn.IndexQuery:
    """An unrelated article's query that landed in this bucket under another key (a bucket collision)."""
    other_id = f"state-{rng.getrandbits(48):x}"
    return dataclasses.replace(
        query,
        article_id=other_id,
        keys=frozenset({rng.getrandbits(64)}),
        root=syn.Root(query.root.arrival_ms, query.root.offset, other_id),
        sort_key=query.sort_key._replace(article_id=other_id),
    )


def _poisson(rng: random.Random, mean: float) -> int:
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def state_bytes(articles: list[Article]) -> dict[str, float]:
    """Measured state per article: index buckets and home shards as their state is stored (versioned bytes), entries."""
    buckets: dict[int, syn.Bucket] = {}
    shards: dict[int, syn.Shard] = {}
    for article in articles:
        for key, message in syn.fan_out(article):
            if isinstance(message, syn.IndexQuery):
                buckets[key], message = syn.index_step(buckets.get(key), message, key)
                key = syn.home_shard(message.article_id)
            shards[key], _ = syn.home_step(shards.get(key), message)
    entries = sum(len(b.entries) for b in buckets.values())
    total = sum(len(syn.encode_bucket(b)) for b in buckets.values())
    home = sum(len(syn.encode_shard(s)) for s in shards.values())
    return {
        "bytes_per_article": total / len(articles),
        "entries_per_article": entries / len(articles),
        "home_bytes_per_article": home / len(articles),
    }


# --- main ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--bases-per-language", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pipeline", action="store_true", help="also run the Beam transform on FnApiRunner")
    parser.add_argument("--baseline", help="with --pipeline: also time the stage as of this git revision")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    labelled, skipped = build(args.shared, bases_per_language=args.bases_per_language, seed=args.seed)
    start_ms = int(dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    truth = {item.article_id: item.story for item in labelled}
    stories = collections.Counter(truth.values())
    languages = sorted({item.language for item in labelled})
    print(
        f"Labelled set: {len(labelled)} articles, {sum(1 for n in stories.values() if n > 1)} stories with copies, "
        f"{sum(1 for n in stories.values() if n == 1)} hard negatives, {len(languages)} languages "
        f"({' '.join(languages)}); corpus near-copies skipped as bases/negatives: {sum(skipped.values())} "
        f"(built in {time.perf_counter() - started:.0f} s)"
    )

    rejected = set()
    for position, item in enumerate(labelled):
        try:
            to_article(item, position, start_ms, True)
        except Rejected:
            rejected.add(item.article_id)
    if rejected:
        print(f"Left out: {len(rejected)} articles the normalise stage rejects (nothing left but boilerplate)")
        labelled = [item for item in labelled if item.article_id not in rejected]
        truth = {item.article_id: item.story for item in labelled}
    modes = {
        "boilerplate removed by the normalise stage's generic patterns": True,
        "no boilerplate removal at all (site chrome left in)": False,
    }
    for mode, removed in modes.items():
        articles = [to_article(item, position, start_ms, removed) for position, item in enumerate(labelled)]
        print(f"\n=== Fingerprints: {mode}")
        started = time.perf_counter()
        run = run_stage(articles)
        assignments, events = run.clusters, run.events
        elapsed = time.perf_counter() - started
        kinds = collections.Counter(e.type for e in events)
        print(
            f"Our stage ({elapsed * 1000 / len(articles):.2f} ms per article in process; events: "
            + ", ".join(f"{kinds[k]} {k}" for k in ("created", "joined", "merged"))
            + ")"
        )
        consumer = run.unions()
        print(_row("cluster.id + merged events (consumer)", scores(truth, consumer)))
        print(_row("cluster.id alone", scores(truth, {i: c["id"] for i, c in assignments.items()})))
        by_kind = collections.Counter(c["match"] for c in assignments.values())
        print("  matches: " + ", ".join(f"{k} {by_kind[k]}" for k in ("new", "exact", "near", "contained")))
        _per_language(labelled, truth, consumer)
        ids = [article.article_id for article in articles]
        minhashes = datasketch_minhashes([fingerprint(article.content.text) for article in articles])
        print("datasketch MinHashLSH (128 perm, word 5-shingles of the same fingerprints) + union-find")
        for threshold in LSH_THRESHOLDS:
            print(_row(f"threshold {threshold}", scores(truth, datasketch_clusters(ids, minhashes, threshold))))
        if args.pipeline and removed:
            _pipeline_check(articles, assignments)
            _pipeline_costs(articles, truth, args.baseline)

    articles = [to_article(item, position, start_ms, True) for position, item in enumerate(labelled)]
    sized = [
        fingerprint(a.content.text)
        for a in articles
        if 2500 <= len(fingerprint(a.content.text).encode("utf-8")) <= 3500
    ]
    gc.collect()
    ours, theirs = time_sketches(sized)
    print(
        f"\nSketch time per ~3 KB article ({len(sized)} fingerprints of 2.5-3.5 KB, best of 5, one core): "
        f"ours {ours:.3f} ms, datasketch MinHash-128 {theirs:.3f} ms (datasketch/ours {theirs / ours:.1f}x)"
    )
    rng = random.Random(args.seed)
    for in_state in (10_000, 500_000):
        lookup = time_lookups(articles, in_state, 300, rng)
        print(
            f"Index lookup with {in_state:>7,} articles in state: {lookup['ms_per_article']:.3f} ms per article "
            f"({lookup['buckets_per_article']:.1f} buckets per article, "
            f"{lookup['entries_per_bucket']:.2f} entries per touched bucket)"
        )
    size = state_bytes(articles)
    print(
        f"Index state: {size['bytes_per_article']:.0f} bytes per article (as the bucket state coder stores it), "
        f"{size['entries_per_article']:.1f} bucket entries per article; home shard: "
        f"{size['home_bytes_per_article']:.0f} bytes per decided article"
    )
    return 0


def _per_language(labelled: list[LabelledArticle], truth: dict[str, str], predicted: dict[str, str]) -> None:
    rows = []
    for language in sorted({item.language for item in labelled}):
        ids = [item.article_id for item in labelled if item.language == language]
        figures = scores({i: truth[i] for i in ids}, {i: predicted[i] for i in ids})
        rows.append(f"{language} {figures['ari']:.3f}/{figures['precision']:.3f}/{figures['recall']:.3f}")
    print("  per language ARI/P/R: " + "  ".join(rows))


# Runs in a child process with a source tree first on sys.path, so a baseline revision's stage can be timed too.
_STAGE_TIMER = """
import json, pickle, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from wirecopy.schemas.records import Article, ClusterEvent
from wirecopy.transforms.syndication import ClusterSyndicated

def line(outcome):
    if isinstance(outcome, Article) and outcome.cluster is not None:
        return json.dumps(["article", outcome.article_id, outcome.cluster["id"]])
    if isinstance(outcome, ClusterEvent) and outcome.type == "merged":
        return json.dumps(["merged", outcome.merged_from, outcome.merged_into])
    return "null"

def run(articles, with_stage):
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        with TestPipeline(runner="FnApiRunner") as pipeline:
            outcomes = pipeline | beam.Create(articles, reshuffle=False)
            if with_stage:
                outcomes = outcomes | ClusterSyndicated()
            outcomes | beam.Map(line) | beam.io.WriteToText(directory + "/out")
        elapsed = time.perf_counter() - started
        lines = [json.loads(l) for path in Path(directory).glob("out*") for l in path.read_text().splitlines()]
    return elapsed, [l for l in lines if l]

articles = pickle.loads(Path(sys.argv[2]).read_bytes())
bare, _ = run(articles, False)
staged, lines = run(articles, True)
bare = min(bare, run(articles, False)[0])
Path(sys.argv[3]).write_text(json.dumps({"bare": bare, "staged": staged, "lines": lines}))
"""


def time_stage_on_local_runner(articles: list[Article], tree: Path, scratch: Path) -> dict:
    """The stage of source `tree` on FnApiRunner: seconds with and without it, and its outputs."""
    articles_path, result_path = scratch / "articles.pickle", scratch / f"result-{tree.name}.json"
    articles_path.write_bytes(pickle.dumps(articles, protocol=pickle.HIGHEST_PROTOCOL))
    subprocess.run(
        [sys.executable, "-c", _STAGE_TIMER, str(tree), str(articles_path), str(result_path)],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return json.loads(result_path.read_text())


def _consumer_view(lines: list[list[str]]) -> dict[str, str]:
    groups = UnionFind()
    for kind, one, other in lines:
        if kind == "merged":
            groups.union(one, other)
    return {article_id: groups.find(cluster_id) for kind, article_id, cluster_id in lines if kind == "article"}


def _pipeline_costs(articles: list[Article], truth: dict[str, str], baseline: str | None) -> None:
    """Per-article cost of the stage on FnApiRunner, and its quality there; the baseline revision's alongside."""
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        trees = [("current tree", REPO)]
        if baseline:
            baseline_tree = scratch / "baseline"
            archive = subprocess.run(["git", "-C", str(REPO), "archive", baseline], check=True, capture_output=True)
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(baseline_tree, filter="data")
            trees.insert(0, (f"baseline {baseline}", baseline_tree))
        for name, tree in trees:
            result = time_stage_on_local_runner(articles, tree, scratch)
            cost = (result["staged"] - result["bare"]) * 1000 / len(articles)
            print(
                f"FnApiRunner, {name}: {cost:.1f} ms per article through ClusterSyndicated "
                f"({len(articles)} articles: {result['staged']:.1f} s with the stage, {result['bare']:.1f} s without)"
            )
            print(_row("  its clusters + merged events", scores(truth, _consumer_view(result["lines"]))))


def _pipeline_check(articles: list[Article], expected: dict[str, dict]) -> None:
    """The same articles through the Beam transform on FnApiRunner: the same clusters?"""
    import tempfile

    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        prefix = str(Path(directory) / "clusters")
        with TestPipeline(runner="FnApiRunner") as pipeline:
            (
                pipeline
                | beam.Create(articles, reshuffle=False)
                | syn.ClusterSyndicated()
                | beam.Filter(lambda outcome: isinstance(outcome, Article))
                | beam.Map(lambda article: f"{article.article_id}\t{article.cluster['id']}")
                | beam.io.WriteToText(prefix)
            )
        found = dict(
            line.split("\t") for path in Path(directory).glob("clusters*") for line in path.read_text().splitlines()
        )
    same = sum(1 for article_id, cluster_id in found.items() if expected[article_id]["id"] == cluster_id)
    print(
        f"FnApiRunner pipeline: {len(found)} articles in {time.perf_counter() - started:.1f} s, "
        f"{same} with the same cluster.id as the in-process run"
    )


if __name__ == "__main__":
    raise SystemExit(main())
