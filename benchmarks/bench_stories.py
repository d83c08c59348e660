"""Stories as a consumer gets them, against datasketch MinHashLSH, on the hard labelled set (prints figures).

    .venv/bin/pip install -e '.[bench]'     # datasketch, the comparison baseline
    .venv/bin/python benchmarks/bench_stories.py [--shared ../shared] [--seed 7] [--shuffle 1] [--bases-per-language 30]

The set is `syndication_labelled.build_hard`: real news in 17 languages with
verbatim, truncated, lead-edited, retitled and wrapped copies, rewritten
copies (new lead and headline, sentences cut and reordered, words changed so
verbatim runs are short, numbers rounded, background added, quotes kept),
pasted-paragraph copies, digests quoting the leads of 2-4 stories, live-blog
versions and independent reports of a base's event (its quotes, names and
numbers in another narrative). Ground truth: copies are in their base's
story; a digest and an independent report are stories of their own.

Ours runs the syndication stage's pure functions in arrival order (as the
local runner's fused steps do) and then the story view's; the consumer view is
the story records alone (`StoryTable`, as read from the compacted story
topic). datasketch: MinHash (128 permutations, word 5-shingles of the
normalised text) with MinHashLSH at several thresholds, each article queried
before it is inserted, matches unioned. Printed per contender: ARI, pairwise
precision/recall; the share of each kind of copy that lands in its base's
story; digests and independent reports left alone; bridges (predicted stories
that hold two or more true stories other than digests).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_syndication import LSH_THRESHOLDS, datasketch_clusters, datasketch_minhashes, scores, to_article  # noqa: E402
from benchmarks.syndication_labelled import LabelledArticle, build_hard  # noqa: E402
from wirecopy.schemas.records import Article, Rejected, SourceRecord  # noqa: E402
from wirecopy.transforms.normalise import draft_article, finish, fingerprint  # noqa: E402
from wirecopy.transforms import stories  # noqa: E402
from benchmarks.in_order import InOrder  # noqa: E402

COPY_KINDS = (
    "truncated",
    "lead_edited",
    "typography",
    "regrouped",
    "paragraphs_added",
    "boilerplate",
    "retitled",
    "rewritten",
    "heavily_rewritten",
    "partly_derived",
    "pasted",
    "live_blog",
)
ALONE_KINDS = ("digest", "independent")


def consumer_view(articles) -> tuple[dict[str, str], float]:
    """Each article's story from the story records alone, and ms per article for both stages in process."""
    started = time.perf_counter()
    stream = InOrder()
    shards: dict[int, stories.StoryShard] = {}
    table = stories.StoryTable()
    for article in articles:
        before = len(stream.events)
        stream.send(article)
        decided = article.with_cluster(stream.clusters[article.article_id])
        for outcome in [decided, *stream.events[before:]]:
            for update in stories.updates_of(outcome):
                key = stories.story_shard(update.story_id)
                shards[key], records = stories.story_step(shards.get(key), update)
                for story in records:
                    table.apply(story.record)
    elapsed = (time.perf_counter() - started) * 1000 / len(articles)
    return table.story_of(), elapsed


def kind_of(item: LabelledArticle) -> str:
    if "-neg" in item.article_id:
        return "negative"
    return item.transformations[0] if item.transformations else "verbatim"


def report(name: str, labelled: list[LabelledArticle], truth: dict[str, str], predicted: dict[str, str]) -> None:
    figures = scores(truth, predicted)
    without = [i.article_id for i in labelled if kind_of(i) != "digest"]
    plain = scores({i: truth[i] for i in without}, {i: predicted[i] for i in without})
    print(
        f"  {name:<34} ARI {figures['ari']:.4f}  P {figures['precision']:.4f}  R {figures['recall']:.4f}   "
        f"(without digests: ARI {plain['ari']:.4f}  P {plain['precision']:.4f}  R {plain['recall']:.4f})"
    )
    base_story = {i.story: predicted[i.article_id] for i in labelled if i.transformations == ("base",)}
    copies: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for item in labelled:
        kind = kind_of(item)
        if kind in COPY_KINDS and item.story in base_story:
            copies[kind][0] += predicted[item.article_id] == base_story[item.story]
            copies[kind][1] += 1
        elif kind == "verbatim" and item.transformations != ("base",):
            copies["verbatim"][0] += predicted[item.article_id] == base_story.get(item.story)
            copies["verbatim"][1] += 1
    sizes = collections.Counter(predicted.values())
    alone = {
        kind: (
            sum(sizes[predicted[i.article_id]] == 1 for i in labelled if kind_of(i) == kind),
            sum(kind_of(i) == kind for i in labelled),
        )
        for kind in ALONE_KINDS
    }
    held: dict[str, set[str]] = collections.defaultdict(set)
    for item in labelled:
        if kind_of(item) != "digest":
            held[predicted[item.article_id]].add(item.story)
    bridges = sum(len(true_stories) > 1 for true_stories in held.values())
    print(
        "    copies with their base: "
        + ", ".join(f"{kind} {hit / total:.3f} ({hit}/{total})" for kind, (hit, total) in sorted(copies.items()))
    )
    print(
        "    alone as they should be: "
        + ", ".join(f"{kind} {hit}/{total}" for kind, (hit, total) in alone.items())
        + f"; bridges (predicted stories holding 2+ true stories, digests aside): {bridges}"
    )


def show_seeds(shared: Path) -> None:
    """The two seed pages (one wire story: a scraper's truncated excerpt, a longer version with the lead reworded)
    through the normalise and syndication stages: their story and its evidence."""
    pages = sorted((shared / "seeds").glob("*.txt"))
    if len(pages) != 2:
        return
    source = [SourceRecord("seeds", 0, number, b"", timestamp_ms=1_000 * (number + 1)) for number in range(2)]
    articles = [
        finish(draft_article(Article(record, {"id": page.stem, "text": page.read_text()}))).with_language(
            {"code": "en", "confidence": 1.0}
        )
        for record, page in zip(source, pages)
    ]
    stream = InOrder()
    for article in articles:
        stream.send(article)
    print("\nThe seed pages (../shared/seeds), as the normalise and syndication stages see them:")
    for article in articles:
        cluster = stream.clusters[article.article_id]
        print(f"  {article.article_id}: story {cluster['id']}, {cluster['match']} {cluster['similarity']:.2f}")
        evidence = cluster.get("evidence")
        if evidence:
            text = article.content.text
            print(
                f"    matched {evidence['matched_id']}; {evidence['shared']:.0%} of its text found in the story; "
                f"{len(evidence['passages'])} passages, e.g.:"
            )
            for start, end in sorted(evidence["passages"], key=lambda span: span[0] - span[1])[:3]:
                print(f"      [{start}, {end}) “{' '.join(text[start:end].split())[:150]}”")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--bases-per-language", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--shuffle",
        type=int,
        metavar="SEED",
        help="send the articles in an order shuffled with this seed (each keeps its time): copies before their base",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    labelled, _ = build_hard(args.shared, bases_per_language=args.bases_per_language, seed=args.seed)
    start_ms = int(dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    articles, kept = [], []
    for position, item in enumerate(labelled):
        try:
            articles.append(to_article(item, position, start_ms, True))
            kept.append(item)
        except Rejected:
            pass
    truth = {item.article_id: item.story for item in kept}
    kinds = collections.Counter(kind_of(item) for item in kept)
    print(
        f"Hard labelled set (seed {args.seed}): {len(kept)} articles in {len(set(truth.values()))} true stories, "
        f"built in {time.perf_counter() - started:.0f} s; " + ", ".join(f"{k} {n}" for k, n in kinds.most_common())
    )
    show_seeds(args.shared)
    arrivals = list(articles)
    if args.shuffle is not None:
        random.Random(args.shuffle).shuffle(arrivals)
    ours, ms = consumer_view(arrivals)
    order = "arrival order" if args.shuffle is None else f"arrival order shuffled with seed {args.shuffle}"
    print(f"\nwirecopy, consumer view from the story records, {order} ({ms:.2f} ms per article in process):")
    report("story topic (StoryTable)", kept, truth, ours)
    ids = [article.article_id for article in articles]
    minhashes = datasketch_minhashes([fingerprint(article.content.text) for article in articles])
    print("\ndatasketch MinHashLSH (128 perm, word 5-shingles of the same normalised text) + union-find:")
    for threshold in LSH_THRESHOLDS:
        report(f"threshold {threshold}", kept, truth, datasketch_clusters(ids, minhashes, threshold))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
