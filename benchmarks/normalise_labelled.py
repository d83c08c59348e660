"""A labelled boilerplate set built from the real news in shared/corpus.

Every paragraph is labelled `article` or `boilerplate`. Articles are grouped
into synthetic sites, several per language; each site wraps its articles in a
fixed template in its own language (navigation, a promotional blurb taken
from another article of that language, footer lines, a contact block, an
in-article advert line) and adds per-article lines (byline, "read also: <another
headline>", related-links lists of other headlines). Some articles come in
twice under another id, as exact or lightly edited copies, whose paragraphs
must survive. Texts are read from shared/ at run time; nothing is copied.

The generic lines were written by the author of the patterns in
`transforms/normalise/boilerplate.py`, so the pattern recall measured on them is
optimistic; the site's blurb, advert and app lines and several
language-specific lines match no pattern on purpose: only per-source learning
removes them.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import random
import re
import sys
from pathlib import Path

ARTICLE = "article"
BOILERPLATE = "boilerplate"

# Per-site constant lines (kind "template") and per-article lines (kind "generic").
LANGUAGE_LINES = {
    "eng": {
        "nav": "Home | News | World | Politics | Business | Sport",
        "read_also": "Read more: {headline}",
        "related": "Related articles",
        "share": "Share this article",
        "newsletter": "Sign up for our morning newsletter and get the day's top stories in your inbox.",
        "copyright": "© {year} {site}. All rights reserved.",
        "comments": ["Leave a comment", "Your email address will not be published. Required fields are marked *"],
        "contact": ["Contact us", "Tel: +44 113 496 0{n}", "Email: newsdesk@{domain}"],
        "byline": "By {name}",
        "unknown": [
            "Don't miss out: download the {site} app for breaking news alerts.",
            "Advertisement",
            "Photo: {site} archive",
        ],
    },
    "pcm": {
        "nav": "Home | News | Naija | World | Sport",
        "read_also": "Read more: {headline}",
        "related": "Oda tori wey fit interest you",
        "share": "Share dis tori",
        "newsletter": "Sign up for our newsletter make you dey get di latest tori every morning.",
        "copyright": "© {year} {site}. All rights reserved.",
        "comments": ["Leave a comment", "Your email address no go dey published."],
        "contact": ["Contact us", "Phone: +234 1 270 {n}", "Email: tori@{domain}"],
        "byline": "By {name}",
        "unknown": ["Download di {site} app make you no miss any tori.", "Advertisement", "Foto: {site}"],
    },
    "fra": {
        "nav": "Accueil | Actualités | Monde | Politique | Économie",
        "read_also": "Lire aussi : {headline}",
        "related": "Articles similaires",
        "share": "Partager cet article",
        "newsletter": "Inscrivez-vous à notre newsletter pour recevoir l'essentiel de l'actualité chaque matin.",
        "copyright": "© {year} {site} – Tous droits réservés",
        "comments": [
            "Laisser un commentaire",
            "Votre adresse e-mail ne sera pas publiée. Les champs obligatoires sont indiqués avec *",
        ],
        "contact": ["Nous contacter", "Tél. : +221 33 800 {n}", "Courriel : redaction@{domain}"],
        "byline": "Par {name}",
        "unknown": [
            "Téléchargez l'application {site} pour ne rien manquer de l'actualité.",
            "Publicité",
            "Photo : archives {site}",
        ],
    },
    "deu": {
        "nav": "Startseite | Nachrichten | Welt | Politik | Wirtschaft",
        "read_also": "Lesen Sie auch: {headline}",
        "related": "Mehr zum Thema",
        "share": "Artikel teilen",
        "newsletter": "Jetzt den kostenlosen Newsletter abonnieren und täglich informiert bleiben.",
        "copyright": "© {site} {year} – Alle Rechte vorbehalten",
        "comments": [
            "Schreiben Sie einen Kommentar",
            "Ihre E-Mail-Adresse wird nicht veröffentlicht. Erforderliche Felder sind mit * markiert.",
        ],
        "contact": ["Kontakt", "Telefon: +43 1 531 70 {n}", "E-Mail: redaktion@{domain}"],
        "byline": "Von {name}",
        "unknown": [
            "Laden Sie die {site}-App herunter und verpassen Sie keine Eilmeldung.",
            "Anzeige",
            "Foto: {site}-Archiv",
        ],
    },
    "swa": {
        "nav": "Nyumbani | Habari | Kimataifa | Siasa | Michezo",
        "read_also": "Soma pia: {headline}",
        "related": "Habari zinazohusiana",
        "share": "Shiriki habari hii",
        "newsletter": "Jiandikishe kupokea habari zetu kila siku kwenye barua pepe yako.",
        "copyright": "© {year} {site}. Haki zote zimehifadhiwa.",
        "comments": ["Acha maoni", "Barua pepe yako haitachapishwa."],
        "contact": ["Wasiliana nasi", "Simu: +255 22 211 {n}", "Barua pepe: habari@{domain}"],
        "byline": "Na {name}",
        "unknown": ["Pakua programu ya {site} upate habari mpya papo hapo.", "Tangazo", "Picha: Maktaba ya {site}"],
    },
    "hau": {
        "nav": "Gida | Labarai | Duniya | Siyasa | Wasanni",
        "read_also": "Karanta kuma: {headline}",
        "related": "Labarai masu alaƙa",
        "share": "Raba wannan labarin",
        "newsletter": "Yi rijista don samun labaranmu a kowace rana.",
        "copyright": "© {year} {site}. Haƙƙin mallaka.",
        "comments": ["Bar sharhi", "Ba za a wallafa adireshin imel ɗinka ba."],
        "contact": ["Tuntuɓe mu", "Waya: +234 9 460 {n}", "Imel: labarai@{domain}"],
        "byline": "Daga {name}",
        "unknown": ["Sauke manhajar {site} don samun labarai nan take.", "Talla", "Hoto: {site}"],
    },
    "amh": {
        "nav": "ዋና ገጽ | ዜና | ዓለም | ፖለቲካ | ስፖርት",
        "read_also": "ተጨማሪ ያንብቡ: {headline}",
        "related": "ተዛማጅ ዜናዎች",
        "share": "ይህንን ያጋሩ",
        "newsletter": "ዕለታዊ ዜናዎቻችንን ለማግኘት ይመዝገቡ።",
        "copyright": "© {year} {site}። መብቱ በሕግ የተጠበቀ ነው።",
        "comments": ["አስተያየት ይስጡ", "የኢሜል አድራሻዎ አይታተምም።"],
        "contact": ["አግኙን", "ስልክ: +251 11 551 {n}", "ኢሜል: zena@{domain}"],
        "byline": "ዘጋቢ: {name}",
        "unknown": ["ዜናዎችን በፍጥነት ለማግኘት የ{site} መተግበሪያን ያውርዱ።", "ማስታወቂያ", "ፎቶ: {site}"],
    },
}
SITES_PER_LANGUAGE = {"eng": 3, "fra": 2, "deu": 2, "swa": 2, "hau": 2, "amh": 2, "pcm": 1}
NAMES = [
    "Amina Bello",
    "Jean Dupont",
    "Grace Wanjiru",
    "Thomas Berger",
    "Kwame Mensah",
    "Sara Tesfaye",
    "Lucy Okafor",
    "Paul Martin",
]
_SENTENCE = re.compile(r"(?<=[.!?።])\s+")


@dataclasses.dataclass
class LabelledArticle:
    raw: dict
    site: str
    language: str
    paragraphs: list[tuple[str, str, str]]  # (text, label, kind)
    first_of_site: bool


def _masakhane(shared: Path, language: str) -> list[tuple[str, str]]:
    with open(shared / f"corpus/masakhanews/data/{language}/test.tsv", encoding="utf-8", newline="") as handle:
        return [(row["headline"], row["text"]) for row in csv.DictReader(handle, delimiter="\t")]


def _gnad(shared: Path) -> list[tuple[str, str]]:
    with open(shared / "corpus/10kgnad-german-news/test.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";", quotechar="'"))
    # 10kGNAD has no headline column; the first words of its standfirst stand in for one.
    return [(" ".join(_SENTENCE.split(text, 1)[0].split()[:10]).rstrip(".,;:"), text) for _, text in rows]


def _paragraphs(text: str, rng: random.Random) -> list[str]:
    """The article's paragraphs: its lines, or groups of 2-4 sentences where it is one long line."""
    lines = [" ".join(line.split()) for line in text.split("\n") if line.strip()]
    if len(lines) > 1:
        return lines
    sentences = _SENTENCE.split(lines[0]) if lines else []
    paragraphs = []
    while sentences:
        size = rng.randint(2, 4)
        paragraphs.append(" ".join(sentences[:size]))
        sentences = sentences[size:]
    return paragraphs


def build(shared: Path, articles_per_site: int = 26, seed: int = 0) -> list[LabelledArticle]:
    """The labelled stream: sites interleaved, each site's articles in order."""
    csv.field_size_limit(sys.maxsize)
    rng = random.Random(seed)
    per_site: list[list[LabelledArticle]] = []
    for language, site_count in SITES_PER_LANGUAGE.items():
        corpus = _gnad(shared) if language == "deu" else _masakhane(shared, language)
        corpus = [(headline, text) for headline, text in corpus if 800 <= len(text) <= 6000]
        rng.shuffle(corpus)
        # Lines the publisher repeats across its own articles are unlabelled boilerplate; leave them out.
        split = [(headline, _paragraphs(text, rng)) for headline, text in corpus]
        repeats = collections.Counter(p for _, paragraphs in split for p in set(paragraphs))
        split = [(h, [p for p in ps if repeats[p] == 1]) for h, ps in split]
        split = [(h, ps) for h, ps in split if len(ps) >= 2]
        headlines = [h for h, _ in split]
        lines = LANGUAGE_LINES[language]
        for number in range(site_count):
            site = f"{language.title()}{'Daily Post Herald'.split()[number]}"
            domain = f"{site.lower()}.example"
            blurb_source = split.pop()[1]
            blurb = " ".join(_SENTENCE.split(blurb_source[0])[:2])
            template = _site_template(lines, site, domain, blurb, rng)
            stories = [split.pop() for _ in range(articles_per_site)]
            site_articles: list[LabelledArticle] = []
            for index, (headline, body) in enumerate(stories):
                article = _wrap(
                    language, site, domain, f"{domain}-{index}", headline, body, template, lines, headlines, rng
                )
                article.first_of_site = index == 0
                site_articles.append(article)
                if rng.random() < 0.08:  # the same story again under another id, sometimes with an update
                    edited = body + (
                        [f"Update {index}: {headlines[rng.randrange(len(headlines))]}."] if rng.random() < 0.5 else []
                    )
                    site_articles.append(
                        _wrap(
                            language,
                            site,
                            domain,
                            f"{domain}-{index}-copy",
                            headline,
                            edited,
                            template,
                            lines,
                            headlines,
                            rng,
                        )
                    )
            per_site.append(site_articles)
    stream = []
    while any(per_site):
        site_articles = rng.choice([articles for articles in per_site if articles])
        stream.append(site_articles.pop(0))
    return stream


def _site_template(lines: dict, site: str, domain: str, blurb: str, rng: random.Random) -> dict:
    fill = {"site": site, "domain": domain, "year": 2024, "n": rng.randint(100, 999)}
    footer_parts = ["share", "newsletter", "copyright", "comments", "contact", "app"]
    chosen = [part for part in footer_parts if rng.random() < 0.7] or ["copyright"]
    footer: list[str] = []
    for part in chosen:
        if part == "comments" or part == "contact":
            footer.extend(line.format(**fill) for line in lines[part])
        elif part == "app":
            footer.append(lines["unknown"][0].format(**fill))
        else:
            footer.append(lines[part].format(**fill))
    return {
        "header": [lines["nav"], blurb] if rng.random() < 0.7 else [lines["nav"]],
        "footer": footer,
        "advert": lines["unknown"][1],
        "photo": lines["unknown"][2].format(**fill),
        "related_block": rng.random() < 0.6,
    }


def _wrap(language, site, domain, article_id, headline, body, template, lines, headlines, rng) -> LabelledArticle:
    paragraphs = [(p, ARTICLE, "article") for p in body]
    if len(paragraphs) > 3:
        paragraphs.insert(rng.randint(1, len(paragraphs) - 1), (template["advert"], BOILERPLATE, "template"))
    if rng.random() < 0.4:
        read_also = lines["read_also"].format(headline=headlines[rng.randrange(len(headlines))])
        paragraphs.insert(rng.randint(1, len(paragraphs)), (read_also, BOILERPLATE, "generic"))
    head = [(line, BOILERPLATE, "template") for line in template["header"]]
    if rng.random() < 0.5:
        head.append((lines["byline"].format(name=rng.choice(NAMES)), BOILERPLATE, "generic"))
    head.append((template["photo"], BOILERPLATE, "template"))
    tail = []
    if template["related_block"]:
        tail.append((lines["related"], BOILERPLATE, "template"))
        tail.extend((headlines[rng.randrange(len(headlines))], BOILERPLATE, "generic") for _ in range(3))
    tail.extend((line, BOILERPLATE, "template") for line in template["footer"])
    every = head + paragraphs + tail
    raw = {
        "id": article_id,
        "url": f"https://www.{domain}/news/{article_id}?utm_source=feed",
        "title": headline,
        "text": "\n\n".join(text for text, _, _ in every),
    }
    return LabelledArticle(raw, site, language, every, first_of_site=False)
