"""Which words of a text carry a fact, and which tokens spell them.

A fact is in a few words of an answer ("Biscuit", "beagle"); the rest is phrasing
a small model varies from answer to answer. Self-study keeps answers that bring
such a word from the episode (selfstudy.grounded), weighs the tokens that spell it
(selfstudy.fact_token_weights), the quoting teacher favours them (quoting.py), and
the gate checks earlier nights' facts on them (gate.fact_positions).
"""

from __future__ import annotations

import re
from typing import Callable

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# The same words found in text as written, for their positions (lowercasing can
# change lengths: "İ" -> "i̇", shifting every later span).
_WORD_ANY_CASE = re.compile(_WORD.pattern, re.IGNORECASE)
# Words that carry no fact: an answer does not count as grounded for using them.
STOPWORDS = frozenset("""
a an the and or but so of to in on at by for with from as is are was were be been being
am do does did have has had i me my mine you your yours he him his she her hers it its we
us our they them their this that these those what which who whom whose when where why how
not no yes just very really also too then than there here about into over after before
will would can could should shall may might must let lets get got go going gone make made
one some any all more most much many such only own same other again once ok okay thanks
please hi hello well like know think want need tell told said say says remember user
assistant help helpful personal plan sure sorry great good glad happy questions question
answer thing things way time day today now next last new though pretty already finally
big news still even ever named called mention mentioned mentions
""".split())


def _straight(text: str) -> str:
    return text.replace("\u2019", "'")


def content_words(text: str) -> set[str]:
    # Fix: contractions ("i'm", "don't", "you're") used to count as content words, so
    # "I'm not sure, I don't know" was grounded in "I'm a nurse". A contraction carries
    # no fact; a possessive counts as its noun ("anna's" -> "anna"). Typed with a
    # curly apostrophe too ("don’t" was "don", a content word).
    out = set()
    for w in _WORD.findall(_straight(text.lower())):
        w, _, suffix = w.partition("'")
        if suffix not in ("", "s"):
            continue
        if len(w) > 2 and w not in STOPWORDS:
            out.add(w)
    return out


# Words that say what follows is not so ("not vegetarian", "no meat", "I don't eat
# fish", "never again"; typed without the apostrophe too) and what ends their reach:
# the clause. A question ("Don't you remember Biscuit?") asserts nothing.
_NEGATORS = frozenset("""
not no never nor neither without dont doesnt didnt cant wont isnt arent wasnt werent
havent hasnt hadnt wouldnt shouldnt couldnt
""".split())
_CLAUSE_END = re.compile(r"[,.;:!?\n\u2013\u2014]|\s-\s")
_CLAUSE_JOINERS = frozenset(
    "but so because though although while which who whom that if when since as yet and"
    .split())
# "not only a nurse but also...", "not just Biscuit": what follows is still so.
_NOT_ONLY = frozenset("only just merely simply".split())
# "No, ..." / "No I'm vegetarian": an interjection before a pronoun, not a negator.
_PRONOUNS = frozenset("i i'm i've i'll i'd you we he she they it my his her our their".split())
# A negator covers the next two content words of its clause ("no meat or fish", "don't
# live in Sheffield"): further on, a clause without punctuation has usually moved on
# ("I'm not vegetarian anymore I eat fish now", "if I don't call Elena she gets upset").
NEGATION_REACH = 2
_SENTENCE = re.compile(r"[^.!?\n]*[.!?\n]*")


def polarity(text: str) -> tuple[set[str], set[str]]:
    """(stated, negated): the content words `text` says somewhere outside, and those
    it says only inside, the reach of a negator ("not", "no", "never", a "n't"
    contraction: the next NEGATION_REACH content words of its clause). "I'm
    pescatarian now, not vegetarian" -> ({"pescatarian"}, {"vegetarian"}); "I wasn't
    born in Leeds, I was born in York" -> ({"born", "york"}, {"leeds"}). A sentence
    that asks ("Can you help me plan meals?") says neither."""
    stated: set[str] = set()
    negated: set[str] = set()
    for sentence in _SENTENCE.findall(_straight(text.lower())):
        if sentence.rstrip().endswith("?"):
            continue
        for clause in _CLAUSE_END.split(sentence):
            words = _WORD.findall(clause)
            reach = 0  # content words the last negator still covers
            for i, w in enumerate(words):
                word, _, suffix = w.partition("'")
                after = words[i + 1] if i + 1 < len(words) else ""
                if word in _CLAUSE_JOINERS:
                    reach = 0
                elif ((word in _NEGATORS or (suffix == "t" and word.endswith("n")))
                      and after not in _NOT_ONLY
                      and not (word == "no" and (i == 0 and after in _PRONOUNS or not after))):
                    reach = NEGATION_REACH
                elif said := content_words(w):
                    (negated if reach else stated).update(said)
                    reach = max(reach - 1, 0)
    return stated, negated - stated


def negated_words(text: str) -> set[str]:
    """The content words `text` says only are not so (polarity). A small teacher
    told "I'm pescatarian now, not vegetarian" quotes "vegetarian" as readily as
    "pescatarian", and an earlier night's answer "I'm a vegetarian" is what the user
    took back (sleep/updates.py)."""
    return polarity(text)[1]


def stated_words(text: str) -> set[str]:
    """The content words `text` says are so somewhere (polarity)."""
    return polarity(text)[0]


def word_spans(text: str, words: set[str]) -> list[tuple[int, int]]:
    """Where in `text` it says one of `words` (content words, as content_words gives
    them: lowercase, a possessive as its noun), as (start, end) character spans."""
    return [m.span() for m in _WORD_ANY_CASE.finditer(text)
            if m.group().lower().partition("'")[0] in words]


def token_positions(decode: Callable[[list[int]], str], tokens: list[int],
                    spans: list[tuple[int, int]]) -> list[int]:
    """The positions of `tokens` whose text overlaps one of `spans` of the text they
    decode to."""
    out, start = [], 0
    for n in range(len(tokens)):
        end = len(decode(tokens[:n + 1]))
        if any(lo < end and start < hi for lo, hi in spans):
            out.append(n)
        start = end
    return out
