"""A labelled syndication set built from the real news in `../shared/corpus`.

For each language, base articles are drawn from the corpus and each gets
several copies made with the transformations the issue lists (truncated,
lead edited, typography changed, paragraphs merged or split, paragraphs
added, wrapped in a site's header and footer, retitled), randomised per copy.
Articles from the same language and topic category that are not bases are
added as hard negatives, wrapped in the same sites' boilerplate as the
copies, so unrelated stories share headers and footers. Added paragraphs come
from a third pool of articles that is in the set neither as a base nor as a
negative.

The corpus has copies of its own (the same article filed twice, an update
that contains the earlier version, programme blurbs that are all template).
Ground truth would be wrong for those, so base and negative articles are
chosen greedily such that no two of them in a language share more than
`MAX_CORPUS_CONTAINMENT` of the shorter one's exact word 4-grams; the set
reports how many were skipped. This uses exact n-gram sets, not the stage.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime as dt
import random
import re
from pathlib import Path

from wirecopy.transforms.normalise import clean_text, fingerprint

MAX_CORPUS_CONTAINMENT = 0.2
MIN_BASE_WORDS = 60

csv.field_size_limit(1 << 30)


@dataclasses.dataclass(frozen=True)
class CorpusArticle:
    language: str
    category: str
    title: str | None
    paragraphs: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class LabelledArticle:
    article_id: str
    language: str
    story: str  # ground-truth cluster: the base's id for a base and its copies, own id for a negative
    title: str | None
    text: str
    published_at: str
    transformations: tuple[str, ...]


def read_corpus(shared: Path) -> list[CorpusArticle]:
    articles = []
    for language_dir in sorted((shared / "corpus" / "masakhanews" / "data").iterdir()):
        with open(language_dir / "test.tsv", newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle, delimiter="\t")
            next(rows)
            for row in rows:
                if len(row) >= 3:
                    articles.append(CorpusArticle(language_dir.name, row[0], row[1] or None, tuple(clean_text(row[2]))))
    with open(shared / "corpus" / "10kgnad-german-news" / "test.csv", newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter=";", quotechar="'"):
            if len(row) >= 2:
                articles.append(CorpusArticle("deu", row[0], None, tuple(clean_text(row[1]))))
    return [article for article in articles if article.paragraphs]


def _four_grams(article: CorpusArticle) -> set[str]:
    words = fingerprint("\n\n".join(article.paragraphs)).split()
    return {" ".join(words[i:i + 4]) for i in range(max(1, len(words) - 3))}


def _independent(candidates: list[CorpusArticle]) -> tuple[list[CorpusArticle], int]:
    """Greedily keep articles that share at most MAX_CORPUS_CONTAINMENT of their 4-grams with any kept one."""
    kept, kept_grams, skipped = [], [], 0
    index: dict[str, list[int]] = collections.defaultdict(list)
    for article in candidates:
        grams = _four_grams(article)
        shared = collections.Counter(k for gram in grams for k in index.get(gram, ()))
        if any(count / min(len(grams), len(kept_grams[k])) > MAX_CORPUS_CONTAINMENT for k, count in shared.items()):
            skipped += 1
            continue
        for gram in grams:
            index[gram].append(len(kept))
        kept.append(article)
        kept_grams.append(grams)
    return kept, skipped


# --- transformations -------------------------------------------------------

_TYPOGRAPHY = [("'", "’"), ('"', "“"), (" - ", " – "), ("...", "…"), (",", " ,")]


def _words(paragraphs: list[str]) -> int:
    return sum(len(p.split()) for p in paragraphs)


def truncate(paragraphs: list[str], rng: random.Random) -> list[str]:
    """Keep a leading share of the text, often cut mid-sentence."""
    words = [w for p in paragraphs for w in p.split()]
    keep = max(30, int(len(words) * rng.uniform(0.3, 0.8)))
    out, count = [], 0
    for paragraph in paragraphs:
        tokens = paragraph.split()
        if count + len(tokens) <= keep:
            out.append(paragraph)
            count += len(tokens)
            continue
        if rng.random() < 0.6 and keep - count > 3:
            out.append(" ".join(tokens[: keep - count]))
        break
    return out or paragraphs[:1]


def edit_lead(paragraphs: list[str], rng: random.Random, vocabulary: list[str]) -> list[str]:
    """Reword the lead: replace, insert and drop words in the first sentence or two."""
    lead = paragraphs[0].split()
    span = min(len(lead), rng.randint(15, 45))
    edited = []
    for word in lead[:span]:
        roll = rng.random()
        if roll < 0.2:
            edited.append(rng.choice(vocabulary))
        elif roll < 0.27:
            continue
        elif roll < 0.35:
            edited.extend([word, rng.choice(vocabulary)])
        else:
            edited.append(word)
    return [" ".join(edited + lead[span:])] + paragraphs[1:]


def change_typography(paragraphs: list[str], rng: random.Random) -> list[str]:
    pairs = rng.sample(_TYPOGRAPHY, k=3)
    out = []
    for paragraph in paragraphs:
        for plain, fancy in pairs:
            paragraph = paragraph.replace(plain, fancy) if rng.random() < 0.5 else paragraph.replace(fancy, plain)
        out.append(paragraph)
    return out


_SENTENCE = re.compile(r"(?<=[.!?።])\s+")


def regroup_paragraphs(paragraphs: list[str], rng: random.Random) -> list[str]:
    """Merge neighbouring paragraphs and split long ones at sentence ends."""
    out: list[str] = []
    for paragraph in paragraphs:
        if out and rng.random() < 0.35:
            out[-1] = out[-1] + " " + paragraph
            continue
        sentences = _SENTENCE.split(paragraph)
        if len(sentences) > 2 and rng.random() < 0.5:
            cut = rng.randint(1, len(sentences) - 1)
            out += [" ".join(sentences[:cut]), " ".join(sentences[cut:])]
        else:
            out.append(paragraph)
    return out


def add_paragraphs(paragraphs: list[str], rng: random.Random, filler: CorpusArticle) -> list[str]:
    """Insert up to three paragraphs (at most about half the copy's length) from an unrelated article."""
    budget = max(25, _words(paragraphs) // 2)
    extra: list[str] = []
    for paragraph in filler.paragraphs[: rng.randint(1, 3)]:
        words = paragraph.split()[: budget - _words(extra)]
        if not words:
            break
        extra.append(" ".join(words))
    if rng.random() < 0.5 or len(paragraphs) < 2:
        return paragraphs + extra
    at = rng.randint(1, len(paragraphs) - 1)
    return paragraphs[:at] + extra + paragraphs[at:]


@dataclasses.dataclass(frozen=True)
class Site:
    name: str
    header: tuple[str, ...]
    footer: tuple[str, ...]


def make_sites(rng: random.Random, count: int) -> list[Site]:
    """Sites with English template chrome, the kind scrapers leave in (headers, menus, contacts, comments)."""
    sites = []
    for number in range(count):
        name = f"{rng.choice(['Daily', 'Global', 'Metro', 'Africa', 'Euro', 'World'])}{rng.choice(['Post', 'Wire', 'Times', 'Herald', 'Digest', 'Monitor'])}{number}"
        menu = " | ".join(rng.sample(["Home", "News", "Politics", "Business", "Sport", "Health", "Tech", "Opinion",
                                      "Video", "Contact", "Subscribe", "Login"], k=6))
        header = (f"{name}.com", menu, f"{name}: your trusted source of breaking news, analysis and opinion 24/7.")
        footer = (
            "Leave a Reply",
            "Your email address will not be published. Required fields are marked *",
            f"{name}.com is a comprehensive online platform providing insightful coverage of politics, business, "
            "culture and sport. With expert analysis, live updates and in-depth features we keep you informed around the clock.",
            f"Contacts: Owner {name} Media Ltd, registration certificate {rng.randint(10**7, 10**8)}, "
            f"{rng.randint(1, 400)} Market Street, editorial@{name.lower()}.com",
            f"© {rng.randint(2015, 2024)} {name}. All rights reserved. Read more on {name.lower()}.com",
        )
        sites.append(Site(name, header, footer))
    return sites


def wrap(paragraphs: list[str], rng: random.Random, site: Site) -> list[str]:
    header = list(site.header[rng.randint(0, 1):])
    footer = list(site.footer[: rng.randint(2, len(site.footer))])
    return header + paragraphs + footer


def retitle(title: str | None, rng: random.Random, vocabulary: list[str]) -> str | None:
    if not title:
        return None
    words = title.split()
    if rng.random() < 0.5:
        return " ".join(w.upper() if rng.random() < 0.3 else w for w in words)
    return " ".join(words[: max(2, len(words) // 2)] + rng.sample(vocabulary, k=3))


def make_copy(base: CorpusArticle, rng: random.Random, vocabulary: list[str], fillers: list[CorpusArticle],
              sites: list[Site]) -> tuple[str | None, list[str], list[str]]:
    paragraphs = list(base.paragraphs)
    title = base.title
    applied = []
    if rng.random() < 0.1:
        return title, change_typography(paragraphs, rng), ["typography"]
    steps = [
        ("truncated", 0.5, lambda p: truncate(p, rng)),
        ("lead_edited", 0.6, lambda p: edit_lead(p, rng, vocabulary)),
        ("typography", 0.5, lambda p: change_typography(p, rng)),
        ("regrouped", 0.4, lambda p: regroup_paragraphs(p, rng)),
        # Each filler article is used once, so added paragraphs never make two stories share text.
        ("paragraphs_added", 0.35, lambda p: add_paragraphs(p, rng, fillers.pop()) if fillers else p),
        ("boilerplate", 0.6, lambda p: wrap(p, rng, rng.choice(sites))),
    ]
    for name, probability, step in steps:
        if rng.random() < probability:
            paragraphs = step(paragraphs)
            applied.append(name)
    if rng.random() < 0.4:
        title = retitle(title, rng, vocabulary)
        applied.append("retitled")
    if title and rng.random() < 0.5:
        paragraphs = [title] + paragraphs
        applied.append("title_in_text")
    return title, paragraphs, applied


def build(shared: Path, bases_per_language: int = 30, negatives_per_base: float = 1.5, seed: int = 7,
          sites: int = 8) -> tuple[list[LabelledArticle], dict[str, int]]:
    """The labelled articles (shuffled into arrival order) and per-language counts of skipped corpus copies."""
    rng = random.Random(seed)
    by_language: dict[str, list[CorpusArticle]] = collections.defaultdict(list)
    for article in read_corpus(shared):
        by_language[article.language].append(article)
    site_list = make_sites(rng, sites)
    labelled: list[LabelledArticle] = []
    skipped: dict[str, int] = {}
    start = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    for language, pool in sorted(by_language.items()):
        pool = pool[:]
        rng.shuffle(pool)
        independent, skipped[language] = _independent(pool)
        long_enough = [a for a in independent if _words(list(a.paragraphs)) >= MIN_BASE_WORDS]
        bases = long_enough[:bases_per_language]
        chosen = {id(a) for a in bases}
        rest = [a for a in independent if id(a) not in chosen]
        categories = {a.category for a in bases}
        negatives_pool = [a for a in rest if a.category in categories]
        negative_count = min(len(negatives_pool) // 2, int(len(bases) * negatives_per_base))
        negatives = negatives_pool[:negative_count]
        negative_ids = {id(a) for a in negatives}
        fillers = [a for a in rest if id(a) not in negative_ids]
        vocabulary = [w for a in fillers[:50] for p in a.paragraphs for w in p.split()][:5000]
        fillers = fillers[50:]
        for number, base in enumerate(bases):
            story = f"{language}-{number:03d}"
            when = start + dt.timedelta(minutes=rng.randint(0, 60 * 24 * 5))
            labelled.append(LabelledArticle(story, language, story, base.title, "\n\n".join(base.paragraphs),
                                            _rfc3339(when), ("base",)))
            for copy_number in range(rng.randint(2, 5)):
                title, paragraphs, applied = make_copy(base, rng, vocabulary, fillers, site_list)
                labelled.append(LabelledArticle(
                    f"{story}-copy{copy_number}", language, story, title, "\n\n".join(paragraphs),
                    _rfc3339(when + dt.timedelta(minutes=rng.randint(-30, 60 * 24))), tuple(applied)))
        for number, negative in enumerate(negatives):
            article_id = f"{language}-neg{number:03d}"
            paragraphs = list(negative.paragraphs)
            applied = ()
            if rng.random() < 0.6:
                paragraphs = wrap(paragraphs, rng, rng.choice(site_list))
                applied = ("boilerplate",)
            labelled.append(LabelledArticle(article_id, language, article_id, negative.title, "\n\n".join(paragraphs),
                                            _rfc3339(start + dt.timedelta(minutes=rng.randint(0, 60 * 24 * 5))), applied))
    rng.shuffle(labelled)
    return labelled, skipped


def _rfc3339(when: dt.datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
