"""What the user said, said back to them: "I'm allergic to walnuts" -> "You're allergic
to walnuts".

A restated statement is an answer no 135M teacher can spoil: it holds every fact the
user stated, in their own words, and nothing invented. Self-study uses it as one more
answer to the questions written about the statement (SleepOptions.restated_answers),
scored by the teacher that reads the statement, so what the student learns is still
the teacher's distribution, along a sequence that states the fact.

Only the user's declarative sentences are kept: a question or a sentence that speaks
to the assistant ("Can you help me plan meals?", "Thank you") says nothing about the
user, and swapping "you" the other way round is ambiguous.
"""

from __future__ import annotations

import re

# First person -> second person. "am" and "was" follow "I" only ("7 am" stays).
_SWAP = {
    "i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself",
    "i'm": "you're", "i've": "you've", "i'd": "you'd", "i'll": "you'll",
    "we": "you", "us": "you", "our": "your", "ours": "yours", "ourselves": "yourselves",
    "we're": "you're", "we've": "you've", "we'd": "you'd", "we'll": "you'll",
}
_AFTER_I = {"am": "are", "was": "were"}
_TOKEN = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?|[^A-Za-z]+")
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_TO_ASSISTANT = re.compile(r"\b(you|your|yours|yourself|you're|you've|you'll|you'd)\b",
                           re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """`text` cut after each '.', '!' or '?' (what ends it stays with it)."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def second_person(sentence: str) -> str:
    """`sentence` with its first-person words in the second person; the first word
    capitalised as the sentence's first, every other one as it was (an "I" inside the
    sentence becomes "you")."""
    tokens = _TOKEN.findall(sentence)
    words = [i for i, t in enumerate(tokens) if t[0].isalpha()]
    out = list(tokens)
    for n, i in enumerate(words):
        word = tokens[i].replace("’", "'").lower()
        before = tokens[words[n - 1]].lower() if n else ""
        if word in _SWAP:
            new = _SWAP[word]
        elif word in _AFTER_I and before == "i":
            new = _AFTER_I[word]
        else:
            continue
        out[i] = new
    if words:
        first = words[0]
        out[first] = out[first][0].upper() + out[first][1:]
    return "".join(out)


def restated(statement: str, content_words) -> str:
    """The user's declarative sentences in `statement` said back to them, in order;
    "" when there is none. `content_words(text) -> set` decides which sentences say
    something (the self-study set's own rule: "Pretty well." and "Thanks!" say
    nothing)."""
    kept = [s for s in sentences(statement)
            if not s.endswith("?") and not _TO_ASSISTANT.search(s) and content_words(s)]
    return " ".join(second_person(s) for s in kept)
