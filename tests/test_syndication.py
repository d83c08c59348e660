import dataclasses
import importlib.resources
import json
import pickle
import random

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from wirecopy.schemas import codec
from wirecopy.schemas.records import Article, ClusterEvent, DeadLetter, DeadLetterReason, Rejected, SourceRecord
from benchmarks.in_order import InOrder
from benchmarks.syndication_labelled import CorpusArticle, rewrite
from wirecopy.transforms import syndication as syn
from wirecopy.transforms import syndication_sketch as sketching
from wirecopy.transforms.normalise import Normalise, draft_article, finish


def make_article(
    article_id: str,
    text: str,
    published_at: str | None = None,
    offset: int = 0,
    timestamp_ms: int | None = None,
    source: str | None = None,
) -> Article:
    """An article as the syndication stage receives it (normalised with the generic boilerplate patterns)."""
    raw = {"id": article_id, "text": text, "published_at": published_at, "source": source}
    record = SourceRecord("articles.raw", 0, offset, json.dumps(raw).encode(), timestamp_ms=timestamp_ms)
    return finish(draft_article(Article(record, raw))).with_language({"code": "en", "confidence": 1.0})


STORY = (
    "The transport ministers of nineteen countries agreed on Tuesday to build a single booking system for "
    "cross-border train journeys, letting passengers buy one ticket from Lisbon to Helsinki by 2028.\n\n"
    "The agreement, reached after two days of talks, commits national rail operators to publish their "
    "timetables and fares in a common format and to accept each other's tickets on connecting services.\n\n"
    "Consumer groups welcomed the plan but warned that refunds for missed connections remain unresolved, "
    "and several operators said the deadline was ambitious given the state of their booking systems."
)
OTHER = (
    "A tropical cyclone crossed the coast near Mackay overnight, cutting power to forty thousand homes and "
    "flattening sugar cane across the district.\n\nEmergency crews worked through the morning to clear "
    "fallen trees from the highway while the weather bureau warned of flooding further inland."
)


@pytest.fixture(scope="module")
def story_copies(story_pages):
    longer, shorter = story_pages.values()
    return (
        make_article("copy-long", longer, "2024-03-01T08:00:00Z", offset=0, timestamp_ms=1000),
        make_article("copy-short", shorter, "2024-03-01T09:00:00Z", offset=1, timestamp_ms=2000),
    )


# --- sketches ---------------------------------------------------------------------


def test_signature_is_immutable_picklable_and_refuses_another_seed():
    found = sketching.sketch("one two three four five six seven eight nine ten")
    assert pickle.loads(pickle.dumps(found.signature)) == found.signature and found.keys
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.signature.limit = 0
    other = sketching.sketch("one two three four five six seven eight nine ten", seed=2)
    with pytest.raises(sketching.IncompatibleSignatures):
        sketching.align(found.signature, other.signature)


def test_a_text_without_words_has_no_sketch():
    assert sketching.sketch(" -- ... \n\n !!") is None


def test_shingles_span_paragraph_breaks_and_ignore_case_and_typography():
    words = " ".join(f"word{i}" for i in range(60))
    merged = sketching.sketch(words).signature
    split = sketching.sketch(words.replace(" word30 ", "\nword30 ").replace("word4 ", "WORD4, "))
    assert sketching.align(merged, split.signature).resemblance == 1.0
    assert merged.content_hash == split.signature.content_hash


def test_a_truncated_excerpt_is_contained_in_its_original():
    original = sketching.sketch(STORY).signature
    excerpt = sketching.sketch(STORY.split("\n\n")[0] + "\n\n" + STORY.split("\n\n")[1][:120]).signature
    verdict = syn.verify(excerpt, original)
    assert verdict is not None and verdict.match in ("contained", "near")
    assert syn.verify(original, excerpt).match in ("contains", "near")
    assert syn.verify(sketching.sketch(OTHER).signature, original) is None


def test_quoted_speech_names_and_numbers_count_less_than_narrative():
    tokens = sketching.tokenize('He said "we will win" in Paris in 2024. Paris was calm.')
    flags = dict(zip([w for w in "he said we will win in paris in 2024 paris was calm".split()], tokens.narrative))
    assert tokens.narrative.tolist() == [True, True, False, False, False, True, False, True, False, True, True, True]
    assert flags["he"] and not flags["2024"]


def test_alignment_keeps_the_longest_chain_in_the_same_order():
    sentences = [f"sentence number {i} tells the reader something new about topic {i} today" for i in range(12)]
    original = sketching.sketch(" ".join(sentences)).signature
    swapped = sketching.sketch(" ".join(sentences[6:] + sentences[:6])).signature
    in_order = sketching.align(original, original)
    assert in_order.raw_share_a == 1.0 and in_order.spread_a > 0.9
    assert 0.3 < sketching.align(swapped, original).raw_share_a < 0.7


def test_a_phrase_met_by_chance_far_from_the_shared_passage_is_no_part_of_the_chain(monkeypatch):
    """A digest quotes an article's lead; far below, it happens to use the article's last three words. In order in
    both texts, a longest chain takes them and spreads over the whole digest, as a rewrite would: dropped."""
    article = " ".join(f"lead{i}" for i in range(12)) + " " + " ".join(f"body{i}" for i in range(30))
    digest = (
        " ".join(f"lead{i}" for i in range(12))
        + " "
        + " ".join(f"other{i}" for i in range(30))
        + " body27 body28 body29"
    )
    a, b = sketching.sketch(article).signature, sketching.sketch(digest).signature
    assert a.limit == b.limit == 1 << 32  # short texts: every shingle is in the sample, so the phrase is too
    found = sketching.align(a, b)
    assert found.chain == 10 and found.spread_b < 0.3
    monkeypatch.setattr(sketching, "CHAIN_LINK", 1 << 16)
    assert sketching.align(a, b).spread_b > 0.9


@pytest.mark.parametrize(
    "header, footer, words, gap_letting_them_through",
    [
        (
            "newsroom daily your trusted source of breaking news analysis and opinion around the clock",
            "leave a reply your email address will not be published required fields are marked all rights reserved",
            40,
            1.0,
        ),
        # A short story in a long template: its body is under a fifth of the page, and the whole page is sampled,
        # so the gap between the template's blocks is the body's true size.
        (" ".join(f"menu{i}" for i in range(40)), " ".join(f"footer{i}" for i in range(40)), 16, 0.2),
    ],
)
def test_texts_sharing_only_a_header_and_a_footer_are_no_copies(
    monkeypatch, header, footer, words, gap_letting_them_through
):
    """A site's template around two different stories: the chain is a block at each end with a wide gap in both."""

    def page(story: str, edited: int = -1) -> sketching.Signature:
        body = " ".join("edited" if i == edited else f"{story}{i}" for i in range(words))
        return sketching.sketch(f"{header}\n\n{body}\n\n{footer}").signature

    one, other = page("alpha"), page("beta")
    assert syn.verify(one, other) is None
    assert syn.verify(one, page("alpha", edited=words // 2)).match == "near"
    monkeypatch.setattr(syn, "FRAME_GAP", gap_letting_them_through)
    assert syn.verify(one, other) is not None


def test_a_share_measured_on_few_values_counts_for_less():
    """Shares are weighed as chain / (sample + SHARE_PRIOR): a handful of shared values is weak evidence."""
    text = " ".join(f"word{i}" for i in range(200))
    whole = sketching.sketch(text).signature
    assert sketching.align(whole, whole).raw_share_a == 1.0
    firm = sketching.align(whole, whole).share_a
    assert firm == len(whole.values) // 4 / (len(whole.values) // 4 + sketching.SHARE_PRIOR) < 1.0


def test_a_share_is_weighed_below_the_matched_texts_limit():
    """A short excerpt wholly inside a long article: the article's thinner sample stops at a lower limit, and
    the excerpt's values above it cannot match; weighed among the values below it, the excerpt is all there."""
    long_text = " ".join(f"token{i}" for i in range(3000))
    excerpt = sketching.sketch(" ".join(f"token{i}" for i in range(100))).signature
    original = sketching.sketch(long_text).signature
    assert original.limit < excerpt.limit
    matched = sum(1 << i for i in sketching.align(excerpt, original).matched_a)
    assert sketching.sample_weight(excerpt, matched, prior=0.0) < 0.5
    assert sketching.sample_weight(excerpt, matched, original.limit, prior=0.0) == 1.0


@pytest.mark.parametrize(
    "text, cut",
    [
        (
            "北京时间周二，十九个国家的交通部长同意建立统一的跨境火车票预订系统，乘客到二零二八年可以买一张票从里斯本到赫尔辛基。"
            "协议要求各国铁路运营商以统一格式公布时刻表和票价，并接受彼此的车票。消费者团体对计划表示欢迎。",
            60,
        ),
        (
            "รัฐมนตรีคมนาคมจากสิบเก้าประเทศตกลงเมื่อวันอังคารที่จะสร้างระบบจองตั๋วรถไฟข้ามพรมแดนแบบเดียว "
            "ผู้โดยสารจะซื้อตั๋วใบเดียวจากลิสบอนไปเฮลซิงกิได้ภายในปีสองพันยี่สิบแปด ข้อตกลงนี้กำหนดให้ผู้ให้บริการรถไฟเผยแพร่ตารางเวลา",
            90,
        ),
    ],
)
def test_scripts_without_spaces_are_shingled_by_characters(text, cut):
    whole = sketching.sketch(text).signature
    part = sketching.sketch(text[:cut]).signature
    unrelated = sketching.sketch(text[::-1]).signature
    assert whole.shingles > 40
    assert sketching.align(part, whole).share_a > 0.8
    assert sketching.align(unrelated, whole).share_a < 0.2


def test_a_passage_of_key_window_spans_shared_inside_long_unrelated_texts_gives_a_common_key():
    rng = random.Random(3)
    vocabulary = [f"w{i}" for i in range(5000)]
    passage = " ".join(rng.choices(vocabulary, k=sketching.KEY_WINDOW + 2 * sketching.KEY_SPAN_SHINGLES + 2))
    pages = [
        " ".join(rng.choices(vocabulary, k=600)) + " " + passage + " " + " ".join(rng.choices(vocabulary, k=600))
        for _ in range(2)
    ]
    keys = [set(sketching.sketch(page).keys) for page in pages]
    assert keys[0] & keys[1]
    assert all(len(k) <= sketching.MAX_WINNOWED_KEYS + sketching.SAMPLE_KEYS for k in keys)


# --- two copies of a story --------------------------------------------------------------------------


def test_the_story_pages_are_one_story(story_copies):
    stream = InOrder()
    long_page, short_page = story_copies
    founded = stream.send(long_page)
    joined = stream.send(short_page)
    assert founded["match"] == "new"
    assert joined["id"] == founded["id"] and joined["match"] in ("near", "contained")
    assert joined["canonical_id"] == "copy-long"
    assert [(e.type, e.article_id) for e in stream.events] == [("created", "copy-long"), ("joined", "copy-short")]


def test_the_story_pages_meet_whichever_arrives_first(story_copies):
    stream = InOrder()
    long_page, short_page = story_copies
    stream.send(short_page)
    stream.send(long_page)
    unions = stream.unions()
    assert unions["copy-long"] == unions["copy-short"]
    assert stream.clusters["copy-long"]["canonical_id"] == "copy-long"


def sample_records() -> list[Article]:
    """The bundled sample records that decode, as the normalise stage receives them."""
    lines = importlib.resources.files("wirecopy.pipelines.samples").joinpath("articles.jsonl").read_bytes().split(b"\n")
    records = []
    for offset, line in enumerate(lines):
        try:
            raw = codec.decode_raw_article(line)
        except Rejected:
            continue
        records.append(Article(SourceRecord("samples", 0, offset, line, timestamp_ms=1_000 * offset), raw))
    return records


def test_sample_stories_cluster_and_same_topic_articles_stay_apart():
    """Through the real normalise stage (its per-source template learning included) and this one."""
    expected = json.loads(importlib.resources.files("wirecopy.pipelines.samples").joinpath("expected.json").read_text())

    def check(results):
        clusters = {o.article_id: o.cluster["id"] for o in results if isinstance(o, Article)}
        parent = {e.merged_from: e.merged_into for e in results if isinstance(e, ClusterEvent) and e.type == "merged"}

        def find(cluster_id):
            while cluster_id in parent and parent[cluster_id] != cluster_id:
                cluster_id = parent[cluster_id]
            return cluster_id

        unions = {article_id: find(cluster_id) for article_id, cluster_id in clusters.items()}
        for cluster in expected["clusters"]:
            assert len({unions[article_id] for article_id in cluster}) == 1, cluster
        for one, other in expected["apart"]:
            assert unions[one] != unions[other], (one, other)

    with TestPipeline(runner="FnApiRunner") as pipeline:
        results = pipeline | beam.Create(sample_records(), reshuffle=False) | Normalise() | syn.ClusterSyndicated()
        assert_that(results, check)


# --- semantics --------------------------------------------------------------------------


def test_exact_copy_joins_and_the_earliest_published_is_canonical():
    stream = InOrder()
    later = stream.send(make_article("late", STORY, "2024-03-02T00:00:00Z", offset=0, timestamp_ms=1))
    earlier = stream.send(make_article("early", "“" + STORY + "”", "2024-03-01T00:00:00Z", offset=1, timestamp_ms=2))
    assert later["match"] == "new" and later["canonical_id"] == "late"
    evidence = earlier.pop("evidence")
    assert earlier == {"id": later["id"], "canonical_id": "early", "similarity": 1.0, "match": "exact"}
    # Passages are located by the sampled shingles: they start and end within the text, never past it.
    assert evidence["matched_id"] == "late" and evidence["shared"] == 1.0
    assert evidence["passages"][0][0] == 1 and len(STORY) // 2 < evidence["passages"][-1][1] <= len(STORY) + 1


def test_redelivery_gives_the_same_assignment_and_no_second_event():
    stream = InOrder()
    stream.send(make_article("a", STORY, offset=0, timestamp_ms=1))
    copy = make_article("b", STORY.replace("Tuesday", "Wednesday"), offset=1, timestamp_ms=2)
    first = stream.send(copy)
    events = len(stream.events)
    again = stream.send(copy)
    assert again == first and first["match"] == "near"
    assert len(stream.events) == events


def test_an_article_published_long_before_the_newest_in_its_home_shard_is_still_decided():
    """A backfilled or late article shares a home shard with a far newer one: it comes out, and is remembered."""
    by_shard: dict[int, list[str]] = {}
    for number in range(5000):
        by_shard.setdefault(syn.home_shard(f"article-{number}"), []).append(f"article-{number}")
    recent_id, late_id = next(ids for ids in by_shard.values() if len(ids) > 1)[:2]
    stream = InOrder()  # a 7-day horizon
    stream.send(make_article(recent_id, STORY, "2026-06-01T00:00:00Z", offset=0))
    late = make_article(late_id, OTHER, "2026-01-01T00:00:00Z", offset=1)
    decided = stream.send(late)
    assert decided is not None and decided["match"] == "new"
    events = len(stream.events)
    stream.clusters.pop(late_id)
    assert stream.send(late) == decided and len(stream.events) == events, "a redelivery gets the same assignment"


THIRD = (
    "The city council voted late on Monday to close the old harbour bridge to cars from next spring, after "
    "engineers found corrosion in two of its main supporting cables during a routine inspection.\n\n"
    "Cyclists and pedestrians will still be allowed to cross while repairs go ahead, and a temporary ferry "
    "will carry commuters between the two banks of the river during the busiest hours of the day."
)


def test_a_digest_of_two_stories_is_a_story_of_its_own_and_never_merges_them():
    """An article made of passages of two stories joins neither: pairwise evidence is no proof they are one."""
    stream = InOrder()
    one = stream.send(make_article("one", STORY, offset=0, timestamp_ms=1, source="one.example"))
    two = stream.send(make_article("two", THIRD, offset=1, timestamp_ms=2, source="two.example"))
    digest = (
        "Here is what you need to know this morning.\n\n" + STORY.split("\n\n")[0] + "\n\n" + THIRD.split("\n\n")[0]
    )
    both = stream.send(make_article("digest", digest, offset=2, timestamp_ms=3, source="briefing.example"))
    assert both["match"] == "new" and both["id"] not in (one["id"], two["id"])
    assert not [e for e in stream.events if e.type == "merged"]
    later = stream.send(make_article("copy", THIRD, offset=3, timestamp_ms=4, source="three.example"))
    unions = stream.unions()
    assert later["id"] == two["id"] and len({unions["one"], unions["two"], unions["digest"]}) == 3


def test_a_copy_with_a_paragraph_of_another_story_pasted_in_joins_its_own_story_only():
    stream = InOrder()
    base = stream.send(make_article("base", STORY, offset=0, timestamp_ms=1, source="one.example"))
    other = stream.send(make_article("other", THIRD, offset=1, timestamp_ms=2, source="two.example"))
    paragraphs = STORY.split("\n\n")
    pasted = "\n\n".join(paragraphs[:2] + [THIRD.split("\n\n")[0]] + paragraphs[2:])
    joined = stream.send(make_article("pasted", pasted, offset=2, timestamp_ms=3, source="three.example"))
    assert joined["id"] == base["id"] != other["id"]
    assert len(set(stream.unions().values())) == 2


def test_a_pasted_paragraph_never_merges_the_story_it_came_from():
    """A brief of one story, then another story, then a copy of the second with the brief pasted in: the copy holds
    the brief whole, yet the brief is its pasted paragraph, not its story, so the two stories stay two."""
    stream = InOrder()
    brief_text = THIRD.split("\n\n")[0]
    brief = stream.send(make_article("brief", brief_text, offset=0, timestamp_ms=1, source="one.example"))
    base = stream.send(make_article("base", STORY, offset=1, timestamp_ms=2, source="two.example"))
    paragraphs = STORY.split("\n\n")
    pasted = "\n\n".join(paragraphs[:2] + [brief_text] + paragraphs[2:])
    joined = stream.send(make_article("pasted", pasted, offset=2, timestamp_ms=3, source="three.example"))
    assert joined["id"] == base["id"] != brief["id"]
    assert not [e for e in stream.events if e.type == "merged"]
    assert len(set(stream.unions().values())) == 2


def test_a_digest_quoting_a_lead_that_a_copy_reworded_never_merges_into_the_copys_story():
    """A digest quotes a story's lead; a copy of the story rewords a few words of that lead. The digest and the
    copy share short runs in order, like a rewrite, but only over the lead: no evidence that the digest is the
    story, so the copy joining the story merges nothing."""
    digest = (
        "Here is what you need to know this morning.\n\n" + STORY.split("\n\n")[0] + "\n\n" + THIRD.split("\n\n")[0]
    )
    lead = (
        "The transport ministers of nineteen nations agreed on Tuesday to build a single booking platform for "
        "cross-border train journeys, allowing passengers to buy one ticket from Lisbon to Helsinki by 2028."
    )
    copy = "\n\n".join([lead] + STORY.split("\n\n")[1:])
    stream = InOrder()
    briefing = stream.send(make_article("digest", digest, offset=0, timestamp_ms=1, source="briefing.example"))
    base = stream.send(make_article("base", STORY, offset=1, timestamp_ms=2, source="one.example"))
    assert stream.send(make_article("copy", copy, offset=2, timestamp_ms=3, source="two.example"))["id"] == base["id"]
    assert not [e for e in stream.events if e.type == "merged"]
    assert stream.unions()["digest"] == briefing["id"] != base["id"]


def test_a_rewritten_copy_is_found_by_short_runs_in_order():
    """Lead reworded, reporting verb changed, a number rounded, words swapped every few words, background added."""
    rewritten = (
        "Nineteen governments have signed up to a shared ticketing platform for international rail travel, officials "
        "confirmed.\n\n"
        "The agreement, reached after two days of negotiations, commits national rail operators to publish their "
        "timetables and fares in one common format and to accept each other's tickets on connecting trains.\n\n"
        "Consumer groups welcomed the plan but told reporters that refunds for missed connections remain unresolved, "
        "and several operators said the deadline was very ambitious given the state of their booking systems.\n\n"
        "Europe's railways carried about 400 million cross-border passengers last year, according to industry figures."
    )
    stream = InOrder()
    original = stream.send(make_article("wire", STORY, offset=0, timestamp_ms=1, source="wire.example"))
    copy = stream.send(make_article("paper", rewritten, offset=1, timestamp_ms=2, source="paper.example"))
    assert copy["id"] == original["id"] and copy["match"] in ("rewritten", "contained", "contains")
    passages = copy["evidence"]["passages"]
    assert passages and all(0 <= start < end <= len(rewritten) for start, end in passages)


def test_heavily_reworded_rewrites_are_found(story_pages):
    """Rewrites that change half of each sentence's words (verbatim runs of ~2 words), cut a quarter of the
    sentences and add a lead: 10 of these 12 keep 0.1 of the wire text in order, 2 of them 0.15."""
    wire = make_article("wire", next(iter(story_pages.values()))).content.text
    base = CorpusArticle("eng", "", None, tuple(p for p in wire.split("\n\n") if p))
    vocabulary = OTHER.split() + THIRD.split()
    original = sketching.sketch(wire).signature
    found = 0
    for seed in range(12):
        _, paragraphs = rewrite(base, random.Random(seed), vocabulary, None, "eng", (0.5, 0.55))
        rewritten = sketching.sketch(make_article("paper", "\n\n".join(paragraphs)).content.text).signature
        verdict = syn.verify(rewritten, original)
        found += verdict is not None and verdict.match == "rewritten"
    assert found >= 8


def test_an_original_found_by_rewrites_of_different_parts_of_it_is_no_container():
    """Two rewrites that each keep their own part of the original founded stories of their own; the original
    arriving later joins the one that covers most of it (a digest's parts are quotes, never rewrites)."""
    signature = sketching.sketch(STORY).signature
    half = len(signature.values) // 4 // 2

    def candidate(name: str, text: str, matched: int, share: float) -> syn.Candidate:
        root = syn.Root(1, 0, name)
        member = sketching.sketch(text).signature
        verdict = syn.Verdict(share, "rewritten", share, matched, share, 0.5)
        aligned = syn.Aligned(name, syn.SortKey(1, 1, 0, name), syn.Label(root, False), member, verdict)
        return syn.Candidate(root, matched, share, False, aligned, member.limit)

    first = candidate("first-half", OTHER, (1 << half) - 1, 0.5)
    second = candidate("second-half", THIRD, ((1 << (2 * half)) - 1) & ~((1 << half) - 1), 0.45)
    assert syn.choose(signature, [first, second]) == first
    quoted = second._replace(best=second.best._replace(verdict=second.best.verdict._replace(match="partial")))
    assert syn.choose(signature, [first, quoted]) is None


def test_independent_reports_sharing_quotes_and_names_stay_apart():
    quote = (
        "“We will not accept a timetable that leaves rural lines behind,” said Maria Lindqvist, the Swedish "
        "transport minister, in Brussels on Tuesday."
    )
    first = (
        "Ministers from across Europe gathered in Brussels to discuss how railways could win back travellers "
        "from airlines, with several delegations pushing for cheaper night trains.\n\n" + quote + "\n\n"
        "Observers expect the negotiations to continue into the summer before any binding decision is taken."
    )
    second = (
        "Rail unions staged a small protest outside the meeting, arguing that staff shortages would make any "
        "expansion of international services difficult to deliver on time.\n\n" + quote + "\n\n"
        "The protesters handed a petition to officials before dispersing peacefully in the early afternoon."
    )
    stream = InOrder()
    one = stream.send(make_article("report-one", first, offset=0, timestamp_ms=1, source="one.example"))
    two = stream.send(make_article("report-two", second, offset=1, timestamp_ms=2, source="two.example"))
    assert one["id"] != two["id"]


def test_a_copy_found_only_where_its_source_was_new_is_announced_into_its_cluster():
    """B joined A's cluster through A's text; C copies only B's other text, where B was recorded under its own root."""
    stream = InOrder()
    a = stream.send(make_article("A", STORY, offset=0, timestamp_ms=1, source="one.example"))
    b = stream.send(make_article("B", STORY + "\n\n" + OTHER, offset=1, timestamp_ms=2, source="two.example"))
    c = stream.send(make_article("C", OTHER, offset=2, timestamp_ms=3, source="three.example"))
    assert b["id"] == a["id"] and c["id"] == syn.cluster_id_for("B")
    merged = [(e.merged_from, e.merged_into) for e in stream.events if e.type == "merged"]
    assert merged == [(syn.cluster_id_for("B"), a["id"])]
    assert len(set(stream.unions().values())) == 1


def test_any_interleaving_of_racing_copies_ends_in_one_cluster():
    """Copies processed bucket by bucket in random orders (workers racing) still end up unioned."""
    copies = [
        make_article(f"copy{i}", STORY if i % 2 else STORY[: 200 + 60 * i], offset=i, timestamp_ms=i) for i in range(5)
    ]
    other = make_article("other", OTHER, offset=9, timestamp_ms=9)
    for seed in range(20):
        rng = random.Random(seed)
        stream = InOrder()
        messages = [message for article in copies + [other] for message in syn.fan_out(article)]
        rng.shuffle(messages)
        for key, message in messages:
            stream.deliver(key, message)
        unions = stream.unions()
        assert len({unions[a.article_id] for a in copies}) == 1, seed
        assert unions["other"] != unions["copy0"]
        assert all(e.type != "created" or e.match == "new" or e.article_id.startswith("copy") for e in stream.events)


def test_different_stories_sharing_a_site_footer_stop_matching_through_it():
    footer = (
        "Leave a comment below and share this story with your friends on every social network you use "
        "because the Daily Example publishes the best news analysis and opinion around the clock every day"
    )
    words = OTHER.split()
    stories = [" ".join(random.Random(i).sample(words, len(words))) for i in range(6)]
    stream = InOrder()
    for i, story in enumerate(stories):
        stream.send(make_article(f"s{i}", story + "\n\n" + footer, offset=i, timestamp_ms=i))
    assert len(set(stream.unions().values())) >= 4


def test_entries_older_than_the_horizon_are_pruned_on_access():
    old = make_article("old", STORY, "2024-03-01T00:00:00Z", offset=0, timestamp_ms=1_709_251_200_000)
    new = make_article("new", STORY, "2024-03-20T00:00:00Z", offset=1, timestamp_ms=1_710_892_800_000)
    stream = InOrder()
    stream.send(old)
    assert stream.send(new)["match"] == "new"
    touched = [key for key, message in syn.fan_out(new) if isinstance(message, syn.IndexQuery)]
    assert touched and all([e.article_id for e in stream.buckets[key].entries] == ["new"] for key in touched)


# --- state as versioned bytes ------------------------------------------------------------


def states_in_flight() -> InOrder:
    """Every kind of state value: buckets, decided and waiting articles, an exposed article's announcement."""
    stream = InOrder()
    stream.send(make_article("A", STORY, offset=0, timestamp_ms=1, source="one.example"))
    stream.send(make_article("B", STORY + "\n\n" + OTHER, offset=1, timestamp_ms=2, source="two.example"))
    stream.send(make_article("C", OTHER, offset=2, timestamp_ms=3, source="three.example"))
    for key, message in syn.fan_out(make_article("D", STORY, offset=3, timestamp_ms=4))[:3]:
        stream.deliver(key, message)  # its article and two of its buckets' replies: still waiting
    return stream


STATE_CODECS = {
    "bucket": (syn.encode_bucket, syn.decode_bucket, lambda stream: stream.buckets.values()),
    "shard": (syn.encode_shard, syn.decode_shard, lambda stream: stream.shards.values()),
    "announcements": (syn.encode_announcements, syn.decode_announcements, lambda stream: stream.announcers.values()),
}


@pytest.mark.parametrize("kind", STATE_CODECS)
def test_state_round_trips_through_versioned_bytes_that_name_no_class(kind):
    import pickletools

    encode, decode, values_of = STATE_CODECS[kind]
    stream = states_in_flight()
    assert any(shard.waiting for shard in stream.shards.values())
    assert any(a.exposure and a.used for announcer in stream.announcers.values() for a in announcer.articles.values())
    values = list(values_of(stream))
    assert values
    for value in values:
        data = encode(value)
        assert decode(data) == value
        # Plain values only: a savepoint survives renaming or moving a class.
        assert not {op.name for op, _, _ in pickletools.genops(data[2:])} & {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ"}


@pytest.mark.parametrize("kind", STATE_CODECS)
def test_state_of_an_unknown_version_or_another_kind_is_refused(kind):
    encode, decode, values_of = STATE_CODECS[kind]
    data = bytearray(encode(next(iter(values_of(states_in_flight())))))
    data[1] = syn.STATE_VERSION + 1
    with pytest.raises(syn.StateVersionError, match=f"version {syn.STATE_VERSION + 1}: this code reads version 1"):
        decode(bytes(data))
    other = "shard" if kind == "bucket" else "bucket"
    other_encode, _, other_values = STATE_CODECS[other]
    with pytest.raises(syn.StateVersionError, match="not syndication"):
        decode(other_encode(next(iter(other_values(states_in_flight())))))
    with pytest.raises(syn.StateVersionError, match="not syndication"):
        decode(pickle.dumps(next(iter(values_of(states_in_flight())))))  # what the previous coders stored


# --- the Beam transform ---------------------------------------------------------------


def test_pipeline_on_the_local_runner_clusters_and_passes_other_outcomes_through(story_copies):
    long_page, short_page = story_copies
    passing = DeadLetter(DeadLetterReason.INVALID_JSON, "bad", "Decode", SourceRecord("articles.raw", 0, 7, b"{"))
    outcomes = [long_page, short_page, make_article("other", OTHER, offset=2, timestamp_ms=3000), passing]

    def check(results):
        articles = {o.article_id: o.cluster for o in results if isinstance(o, Article)}
        events = sorted((e.type, e.article_id) for e in results if isinstance(e, ClusterEvent) and e.type != "merged")
        assert articles["copy-long"]["id"] == articles["copy-short"]["id"] != articles["other"]["id"]
        assert articles["copy-short"]["match"] in ("near", "contained")
        assert events == [("created", "copy-long"), ("created", "other"), ("joined", "copy-short")]
        assert [o for o in results if isinstance(o, DeadLetter)] == [passing]

    with TestPipeline(runner="FnApiRunner") as pipeline:
        results = pipeline | beam.Create(outcomes, reshuffle=False) | syn.ClusterSyndicated()
        assert_that(results, check)
