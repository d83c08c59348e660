"""Boilerplate: the multilingual pattern tables, as data, and the code that applies them paragraph by paragraph."""

from __future__ import annotations

import bisect
import collections
import itertools
import re
from typing import Iterable


def _phrases(*phrases: str) -> str:
    return "(?:" + "|".join(phrases) + ")"


# Whole-paragraph headings and chrome, matched on the lower-cased paragraph
# stripped of decoration (arrows, bullets, colons). One named group per reason.
_CHROME = re.compile(
    "(?:"
    + "|".join(
        f"(?P<{reason}>{pattern})"
        for reason, pattern in [
            (
                "related",
                _phrases(
                    r"related(?: content| articles?| stories| news| posts?| coverage| topics| links| reading)?",
                    r"you (?:may|might) (?:also )?(?:like|enjoy|be interested in)",
                    r"recommended(?: for you| stories| articles| reading)?",
                    r"more (?:stories|news|articles|headlines)",
                    r"more (?:from|on|in) [^.!?]{1,40}",
                    r"most (?:read|popular|viewed|shared)",
                    r"trending(?: now| stories)?",
                    r"top stories",
                    r"latest (?:news|stories|articles)",
                    r"editor[’']?s picks",
                    r"see also",
                    r"also read",
                    r"read also",
                    r"articles (?:similaires|liés)",
                    r"sur le même sujet",
                    r"(?:à|a) (?:lire|voir) (?:aussi|également)",
                    r"lire (?:aussi|également)",
                    r"voir aussi",
                    r"les plus lus",
                    r"dans la même rubrique",
                    r"vous (?:aimerez|pourriez aimer) aussi",
                    r"(?:ähnliche|verwandte|weitere) artikel",
                    r"mehr zum thema",
                    r"das könnte sie auch interessieren",
                    r"auch interessant",
                    r"meistgelesen(?:e artikel)?",
                    r"lesen sie auch",
                    r"siehe auch",
                    r"(?:artículos|noticias) relacionad[oa]s",
                    r"(?:también )?te puede interesar",
                    r"lo más leído",
                    r"más noticias",
                    r"lee también",
                    r"ver también",
                    r"(?:artigos|notícias) relacionad[oa]s",
                    r"leia também",
                    r"veja também",
                    r"você também pode gostar",
                    r"mais lidas",
                    r"articoli correlati",
                    r"potrebbe interessarti",
                    r"leggi anche",
                    r"gerelateerde artikelen",
                    r"lees ook",
                    r"habari (?:zinazohusiana|nyingine|zaidi)",
                    r"makala zinazohusiana",
                    r"soma pia",
                    r"labarai masu ala(?:ƙ|k)a",
                    r"karanta kuma",
                    r"wasu labarai",
                    r"ተዛማጅ (?:ዜናዎች|ጽሁፎች)",
                    r"ተጨማሪ ዜናዎች",
                )
                + r"(?:\s*[:：\-–—]\s+.{1,200})?$",
            ),
            (
                "read_more",
                _phrases(
                    r"read more",
                    r"read the (?:full|whole|rest of the|original) (?:story|article)",
                    r"read (?:the )?full (?:story|article)",
                    r"continue reading",
                    r"keep reading",
                    r"click here to read",
                    r"full story",
                    r"lire la suite",
                    r"lire plus",
                    r"lisez la suite",
                    r"la suite (?:sur|de l[’']article)",
                    r"weiterlesen",
                    r"mehr lesen",
                    r"lesen sie (?:hier )?(?:mehr|weiter|den ganzen artikel)",
                    r"zum (?:ganzen|vollständigen) artikel",
                    r"leer más",
                    r"seguir leyendo",
                    r"sigue leyendo",
                    r"leia mais",
                    r"continu(?:e|ar) lendo",
                    r"leggi (?:di più|tutto)",
                    r"continua a leggere",
                    r"lees (?:meer|verder)",
                    r"soma zaidi",
                    r"endelea kusoma",
                    r"soma habari kamili",
                    r"karanta (?:karin bayani|cikakken labarin)",
                    r"ተጨማሪ ያንብቡ",
                    r"ሙሉውን ያንብቡ",
                )
                # alone, before a colon or dash and a headline, or before where to read it
                + r"(?:$|\s*[:：|\-–—]\s*.{0,200}$|\s+(?:on|at|in|from|sur|dans|auf|bei|en|em|su|op|kwenye)\s+\S+(?:\s+\S+){0,5}$)",
            ),
            (
                "learn_more",
                _phrases(
                    r"learn more",
                    r"find out more",
                    r"more info(?:rmation)?",
                    r"click here",
                    r"en savoir plus",
                    r"plus d[’']infos?",
                    r"mehr erfahren",
                    r"mehr infos?",
                    r"más información",
                    r"saber más",
                    r"saiba mais",
                    r"scopri di più",
                    r"meer informatie",
                    r"(?:pata )?maelezo zaidi",
                    r"(?:ƙ|k)arin bayani",
                    r"ተጨማሪ መረጃ",
                )
                + "$",
            ),
            (
                "comment_form",
                _phrases(
                    r"leave a (?:reply|comment)",
                    r"post a comment",
                    r"add (?:a|your) comment",
                    r"(?:\d+ )?comments?(?: \(\d+\))?$",
                    r"notify me of (?:follow-up comments|new posts|new comments)",
                    r"save my name,? email,? and website",
                    r"cancel reply$",
                    r"you must be (?:logged|signed) in to (?:post|leave) a comment",
                    r"join the (?:conversation|discussion)",
                    r"comments are closed",
                    r"be the first to comment",
                    r"(?:name|email|e-mail|website|comment) ?\*$",
                    r"(?:submit|post|show|view) comments?$",
                    r"laisser un commentaire",
                    r"laisser une réponse",
                    r"commentaires?$",
                    r"ajouter un commentaire",
                    r"annuler la réponse$",
                    r"schreiben? (?:sie )?einen kommentar",
                    r"kommentar (?:schreiben|verfassen|hinterlassen|abschicken)",
                    r"kommentare?$",
                    r"antworten abbrechen$",
                    r"posting (?:schreiben|verfassen)",
                    r"deja (?:un comentario|una respuesta)",
                    r"dejar un comentario",
                    r"comentarios?$",
                    r"cancelar respuesta$",
                    r"deixe (?:um comentário|uma resposta)",
                    r"comentários?$",
                    r"lascia un commento",
                    r"commenti$",
                    r"acha (?:maoni|jibu)",
                    r"toa maoni(?: yako)?$",
                    r"maoni$",
                ),
            ),
            (
                "share",
                _phrases(
                    r"share(?: this| on| via| the| article| story| post|$|:)",
                    r"click to share",
                    r"tweet$",
                    r"(?:follow us|follow|like us) on (?:facebook|twitter|x|instagram|linkedin|youtube|tiktok|telegram|whatsapp)",
                    r"suivez-nous",
                    r"partager(?: sur| cet article| l[’']article|$)",
                    r"folgen sie uns",
                    r"(?:artikel |auf \w+ )?teilen$",
                    r"compartir(?: en| este|$)",
                    r"síguenos",
                    r"compartilh(?:e|ar)",
                    r"siga-nos",
                    r"condividi",
                    r"seguici",
                    r"delen$",
                    r"shiriki(?: habari hii| makala hii| kwenye|$)",
                    r"tufuate",
                    r"raba wannan",
                    r"ይህንን ያጋሩ",
                    r"ያጋሩ$",
                ),
            ),
            (
                "subscribe",
                _phrases(
                    r"subscribe(?: now| today| to| for|$)",
                    r"sign up (?:for|to) (?:our|the|free)",
                    r"sign up for free",
                    r"get (?:our|the) (?:free )?(?:daily |weekly )?newsletter",
                    r"(?:join|get) our newsletter",
                    r"newsletter$",
                    r"enter your e-?mail",
                    r"s[’']abonner",
                    r"abonnez-vous",
                    r"inscrivez-vous (?:à|a) (?:notre|la) newsletter",
                    r"recevez (?:notre|la) newsletter",
                    r"(?:jetzt )?abonnieren",
                    r"newsletter abonnieren",
                    r"melden sie sich (?:jetzt )?für (?:unseren|den) newsletter an",
                    r"zum newsletter anmelden",
                    r"suscr[ií]b(?:ete|irse)",
                    r"assine",
                    r"inscreva-se",
                    r"iscriviti",
                    r"abbonati",
                    r"abonneer",
                    r"jiandikishe",
                    r"jisajili",
                    r"yi rijista",
                    r"(?:ደንበኝነት )?ይመዝገቡ",
                ),
            ),
            ("copyright", r"(?:©|\(c\)\s|℗|copyright\s*(?:©|\(c\)|\d{4}))"),
            (
                "navigation",
                _phrases(
                    r"skip to (?:main )?(?:content|navigation)",
                    r"(?:main )?menu",
                    r"toggle navigation",
                    r"search",
                    r"back to top",
                    r"home(?:page)?",
                    r"(?:previous|next) (?:article|post|story)",
                    r"article (?:précédent|suivant)",
                    r"accueil",
                    r"startseite",
                    r"(?:nächster|vorheriger) artikel",
                    r"inicio",
                    r"página inicial",
                    r"nyumbani",
                    r"(?:ዋና|መነሻ) ገጽ",
                    r"you are here:? .{1,150}",
                )
                + "$",
            ),
            (
                "contact",
                _phrases(
                    r"contacts?(?: us| information| info| details)?$",
                    r"get in touch$",
                    r"contact the (?:newsroom|editor|author)$",
                    r"kontakte?$",
                    r"contactez-nous$",
                    r"nous contacter$",
                    r"cont(?:a|á)ct(?:o|os|enos)$",
                    r"fale conosco$",
                    r"contatti$",
                    r"wasiliana nasi$",
                    r"mawasiliano$",
                    r"አግኙን$",
                    r"(?:tel(?:ephone)?|phone|fax|e-?mail|mobile|whatsapp|address|adresse|anschrift|téléphone|telefon|telefono|teléfono"
                    r"|simu|barua pepe|owner|registration|reg\. no|vat)\.?\s*(?:no\.?\s*)?[:：]",
                ),
            ),
        ]
    )
    + ")"
)
# Phrases that mark boilerplate wherever they stand in a short paragraph.
_MARKERS = re.compile(
    "(?:"
    + "|".join(
        f"(?P<{reason}>{pattern})"
        for reason, pattern in [
            (
                "comment_form",
                _phrases(
                    r"your email address will not be published",
                    r"required fields are marked",
                    r"votre adresse (?:e-mail|email|de messagerie|courriel) ne sera pas publiée",
                    r"e-mail-adresse wird nicht veröffentlicht",
                    r"correo electrónico no será publicad[oa]",
                    r"endereço de e-?mail não será publicado",
                    r"indirizzo email non sarà pubblicato",
                    r"barua pepe yako haitachapishwa",
                ),
            ),
            (
                "copyright",
                _phrases(
                    r"all rights reserved",
                    r"tous droits réservés",
                    r"alle rechte vorbehalten",
                    r"todos los derechos reservados",
                    r"todos os direitos reservados",
                    r"tutti i diritti riservati",
                    r"alle rechten voorbehouden",
                    r"haki zote zimehifadhiwa",
                    r"ha(?:ƙ|k)(?:ƙ|k)in mallaka",
                    r"መብቱ በ(?:ሕ|ህ)ግ የተጠበቀ",
                    r"may not be (?:published|reproduced), broadcast",
                ),
            ),
            (
                "attribution",
                _phrases(
                    r"originally (?:appeared|published|ran) (?:on|in|at|by)",
                    r"(?:first|originally) published (?:on|in|at|by)",
                    r"republished (?:with permission|from)",
                    r"(?:initialement|originellement|d[’']abord) publié",
                    r"erschien (?:zuerst|ursprünglich)",
                    r"publicado originalmente",
                    r"originalmente publicado",
                    r"ilichapishwa kwa mara ya kwanza",
                ),
            ),
            (
                "subscribe",
                r"newsletter.{0,80}(?:sign up|subscribe|inbox|abonn|anmeld|inscri|suscr|assin|iscriv|jiandikishe)"
                r"|(?:sign up|subscribe|abonn|anmeld|inscri|suscr|assin|iscriv|jiandikishe).{0,80}newsletter",
            ),
            ("byline", r"^\((?:additional )?(?:reporting|writing|editing) by .{1,200}\)$"),
        ]
    )
    + ")"
)
# Every marker above holds one of these; finding them first spares searching each paragraph for every marker.
# Each is one more pass over the text: a phrase shared by several markers stands for all of them.
_MARKER_TRIGGERS = (
    "published",
    "required fields",
    "publié",
    "nicht veröffentlicht",
    "será publicad",
    "non sarà pubblicat",
    "haitachapishwa",
    "reserv",
    "réservés",
    "riservati",
    "vorbehalten",
    "voorbehouden",
    "zimehifadhiwa",
    "mallaka",
    "የተጠበቀ",
    "broadcast",
    "original",
    "erschien",
    "mara ya kwanza",
    "newsletter",
)
_COOKIE_CONSENT = re.compile(
    r"cookie.{0,200}(?:use|using|accept|consent|policy|settings|preferences|browsing|experience|utilis|akzept|verwend|einstellung"
    r"|datenschutz|acept|utiliz|aceit|accett|tumia)|(?:use|using|accept|utilis|verwend|utiliz).{0,80}cookie"
)
# A consent notice speaks to the reader; a news story about cookies does not.
_TO_THE_READER = re.compile(
    r"\b(?:we|our|you|your|this (?:site|website)|nous|notre|vous|votre|wir|unser\w*|sie|ihr\w*|usamos|utilizamos|nuestr[oa]s?"
    r"|usted|você|seu|sua|noi|tunatumia|yako)\b"
)
_SITE_DESCRIPTION = re.compile(r"(?:[\w-]+\.)+[a-z]{2,}\s+(?:is|est|ist|es|é|è|ni)\s+")
_SITE_WORDS = re.compile(
    r"\b(?:platform|website|web site|site|portal|outlet|plateforme|plattform|plataforma|portail|tovuti|we|our|nous|notre|wir|unser|nuestro)\b"
)
_NAVIGATION_SEPARATORS = ("|", "»", "›", ">", "/", "•", "·", "::")
_NAVIGATION_SEPARATOR = re.compile("[|»›>/•·]|::")
_SOCIAL = frozenset(
    "facebook twitter x instagram linkedin whatsapp telegram pinterest reddit tiktok youtube email e-mail mail print copy link "
    "messenger share tweet flipboard threads bluesky".split()
)
_DECORATION = " \t→←»«›‹>:|•·▪*…-–—.!▶►▸#"
_BULLETS = tuple("•·▪‣◦*-–—")
_BYLINE_PREFIX = re.compile(
    r"(?i:by|von|par|por|di|door|na|daga|written by|words by|reporting by|story by|text:|texte\s?:|author:|auteur\s?:"
    r"|autor(?:in)?:|mwandishi:|ዘጋቢ\s?:)\s+"
)
# After the names a byline may give a role or the site: "By Jane Doe, Paris correspondent".
_BYLINE_ROLE = re.compile(r"\s*(?:,|\||\s[–—-]\s)\s*")
# Two to four words of letters (hyphens, apostrophes, initials): a name alone on its line.
_NAME_LINE = re.compile(r"(?=.{3,40}$)[^\W\d_][\w’'-]*\.?(?: [^\W\d_][\w’'-]*\.?){1,3}")
_NAME_CONNECTORS = frozenset(
    {"and", "und", "et", "y", "e", "na", "&", "de", "van", "von", "da", "di", "du", "del", "bin", "al"}
)
_LONGEST_BOILERPLATE = 1200  # characters; a site self-description can run this long
_LONGEST_CONSENT = 500
_LONGEST_LINE = 300


def _name_like(name: str, most_words: int) -> bool:
    words = name.replace(",", " ").split()
    named = [word for word in words if word.lower() not in _NAME_CONNECTORS]
    # Names start with a capital, or with a letter of a script without case (Ethiopic, Arabic).
    return 0 < len(named) <= most_words and all(
        word[0].isalpha() and not word[0].islower() and not any(c.isdigit() for c in word) for word in named
    )


def _is_navigation(paragraph: str) -> bool:
    if not _NAVIGATION_SEPARATOR.search(paragraph):
        return False
    for separator in _NAVIGATION_SEPARATORS:
        if paragraph.count(separator) >= 2:
            items = [item.strip() for item in paragraph.split(separator)]
            return all(
                0 < len(item) <= 30
                and len(item.split()) <= 4
                and any(c.isalpha() for c in item)
                and not item.endswith(".")
                for item in items
            )
    return False


def boilerplate_reason(paragraph: str) -> str | None:
    """Why `paragraph` is boilerplate by the generic patterns, or None."""
    return _reason(paragraph, paragraph.lower(), may_hold_marker=True)


def _reason(paragraph: str, lowered: str, may_hold_marker: bool) -> str | None:
    """`boilerplate_reason`, told whether a marker phrase can occur in the paragraph at all."""
    length = len(paragraph)
    if length > _LONGEST_BOILERPLATE:
        return None
    if _SITE_DESCRIPTION.match(lowered) and _SITE_WORDS.search(lowered):
        return "site_description"
    if length > _LONGEST_CONSENT:
        return None
    if "cookie" in lowered and _COOKIE_CONSENT.search(lowered) and _TO_THE_READER.search(lowered):
        return "cookie"
    if length > _LONGEST_LINE:
        return None
    core = lowered.strip(_DECORATION)
    chrome = _CHROME.match(core)
    if chrome:
        return chrome.lastgroup
    if may_hold_marker or lowered.startswith("("):
        marker = _MARKERS.search(lowered)
        if marker:
            return marker.lastgroup
    if length <= 100 and _byline_name(paragraph):
        return "byline"
    if length <= 200 and not paragraph.endswith(".") and _is_navigation(paragraph):
        return "navigation"
    if core and len(core) <= 100 and core.split(None, 1)[0].rstrip(",") in _SOCIAL:
        if all(word in _SOCIAL for word in core.replace(",", " ").split()):
            return "share"
    return None


def _lines_holding(text: str, line_starts: list[int], needles: Iterable[str]) -> set[int]:
    """Indices of the lines of `text` (starting at `line_starts`) that hold any of `needles`."""
    lines = set()
    for needle in needles:
        found = text.find(needle)
        while found != -1:
            lines.add(bisect.bisect_right(line_starts, found) - 1)
            found = text.find(needle, found + 1)
    return lines


def _continues_block(reason: str, paragraph: str) -> bool:
    """Whether `paragraph` is an item of the related-links or contact block above it."""
    if len(paragraph) > 200:
        return False
    if paragraph.startswith(_BULLETS):
        return True
    if reason == "related":  # a headline: no full stop at the end
        return len(paragraph.split()) <= 25 and not paragraph.endswith(".")
    return len(paragraph.split()) <= 3 or any(char.isdigit() for char in paragraph) or "@" in paragraph


def _byline_name(paragraph: str) -> str | None:
    """The names in a "By Jane Doe, Paris correspondent" line, or None when it is no byline."""
    prefix = _BYLINE_PREFIX.match(paragraph)
    if not prefix:
        return None
    names = paragraph[prefix.end() :]
    for role in _BYLINE_ROLE.finditer(names):
        head, tail = names[: role.start()], names[role.end() :]
        if _name_like(head, 6) and len(tail) <= 40 and not tail.endswith((".", "!", "?")):
            if not (role.group().strip() == "," and _name_like(tail, 6)):  # "Jane Doe, John Smith" is two names
                names = head
                break
    return names if _name_like(names, 6) else None


def remove_boilerplate(paragraphs: list[str]) -> tuple[list[str], dict[str, int], str | None]:
    """(kept paragraphs, removed paragraphs per reason, byline) by the generic patterns.

    A related-links or contact heading takes the list items below it along.
    A name alone as the last paragraph of an article is its byline.
    """
    kept: list[str] = []
    removed: collections.Counter[str] = collections.Counter()
    byline = None
    block = None
    lowered = "\n".join(paragraphs).lower().split("\n")
    # Searching the paragraphs short enough to hold a marker together once for the
    # marker phrases is much faster than searching each paragraph for each phrase.
    short = [index for index, paragraph in enumerate(paragraphs) if len(paragraph) <= _LONGEST_LINE]
    short_text = "\n".join(lowered[index] for index in short)
    line_starts = list(itertools.accumulate((len(lowered[index]) + 1 for index in short[:-1]), initial=0))
    marked = {short[line] for line in _lines_holding(short_text, line_starts, _MARKER_TRIGGERS)}
    for index, paragraph in enumerate(paragraphs):
        reason = _reason(paragraph, lowered[index], index in marked)
        if reason is None and block is not None and _continues_block(block, paragraph):
            reason = block
        block = reason if reason in ("related", "contact") else None
        if reason is None:
            kept.append(paragraph)
            continue
        removed[reason] += 1
        if reason == "byline" and byline is None:
            byline = _byline_name(paragraph)
    if len(kept) >= 3 and _NAME_LINE.fullmatch(kept[-1]) and _name_like(kept[-1], 4):
        name = kept.pop()
        byline = byline or name
        removed["byline"] += 1
    return kept, dict(removed), byline
