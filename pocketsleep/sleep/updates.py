"""When the user takes something back: "I'm pescatarian now, not vegetarian".

Earlier nights hold what they learned in place: tonight anchors their stored probes
(selfstudy.earlier_anchors) and the gate rejects a night that makes them less likely
(gate.check). A probe whose answer says what the user now says is not so ("What do I
eat?" -> "I'm a vegetarian, so...") would hold the old fact against the new one, and
guard it: on dev-week's night 5 the model went on answering "vegetarian"
(bench/RESULTS.md, twenty-sixth round). Such a probe is *superseded*: tonight neither
holds nor guards it, and when the night is kept the journal records it taken back in
the conversation that did (Journal.accept_expert), so later nights do not hold it
either while that conversation stays learned. Dreaming, when on, neither writes
dreams from it nor replays earlier dreams that say a taken-back word. All of this
is SleepOptions.heed_negations, off by default: on dev-week it recalled the new
diet no more often and the week less (bench/RESULTS.md, twenty-sixth round).

What counts as taken back is what a statement negates ("not X", "no X", "don't X":
words.polarity) and no statement of tonight says. Words, not meaning: "I'm not a
nurse any more" supersedes a probe answered "You're a nurse", but so does "I don't
drink alcohol" one answered "Your favourite drink is a flat white", and "I never liked
Rotterdam" one about the sister who lives there: each costs that probe its place
among the anchors and the gate's checks until the conversation that took it back is
rolled back or forgotten. A change said without a negation ("I moved to Leeds")
supersedes nothing. Only a nightly sleep takes back: a rebuild after `forget`
relearns old conversations, which must not retire what later nights learned.
"""

from __future__ import annotations

from typing import Collection, Iterable, Sequence

from .episode import Episode
from .words import content_words, negated_words, stated_words


def taken_back(statements: Iterable[str]) -> set[str]:
    """The words tonight's `statements` negate and none of them states."""
    statements = list(statements)
    negated = set().union(*(negated_words(s) for s in statements))
    return negated - set().union(*(stated_words(s) for s in statements))


def says_any(text: str, words: Collection[str]) -> bool:
    """Does `text` say one of `words` (content words, lowercase) is so?"""
    return bool(words) and bool(stated_words(text) & set(words))


def superseded(probes: Sequence[tuple[str, str]], words: Collection[str]
               ) -> list[tuple[str, str]]:
    """The (question, answer) probes whose answer says one of `words` is so ("You're
    a vegetarian"; not "You're pescatarian, not vegetarian"), or, for an answer of
    no content words ("Yes."), whose question says it; in their order."""
    words = set(words)
    return [p for p in probes if words & _what_it_says(*p)]


def retractions(probes: Sequence[tuple[str, str]], episode: Episode
                ) -> list[tuple[str, str, int]]:
    """(question, answer, conversation) for each of `probes` that `episode` takes
    back, the conversation being that of the first statement that does (the journal
    keeps the probe taken back while that conversation stays learned)."""
    statements = episode.statements()
    words = taken_back(statements)
    out = []
    for question, answer in probes:
        said = words & _what_it_says(question, answer)
        by = next((s for s in statements if negated_words(s) & said), None)
        cid = episode.conversation_of(by) if by is not None else None
        if cid is not None:
            out.append((question, answer, cid))
    return out


def _what_it_says(question: str, answer: str) -> set[str]:
    return stated_words(answer) if content_words(answer) else content_words(question)
