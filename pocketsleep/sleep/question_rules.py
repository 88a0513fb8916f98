"""Questions a few fixed rules ask of what the user said about themselves, beside the
ones the model writes.

The 135M question writer, given "My best 10k time is 52 minutes.", asks "How many
minutes is my best half marathon?", and the teacher answers that. Each rule here
turns one common first-person pattern into the question it answers, in the manner of
rule-based question generation (Heilman and Smith, 2010): "My best 10k time is 52
minutes" -> "What is my best 10k time?", "I run with my neighbour Tomasz" -> "Who do I
run with?" and "What is my neighbour's name?". A clause no rule fits gets none; the
rules never see the answer, only the words that frame it.

The rules read clauses: a message cut into sentences, each cut at ", ", "; ", " and ",
" so ", " but " and " because ", lead-ins ("Also", "Remind me:") dropped. A leading "he", "she", "his" or "her" is read as the
last person or pet the user named ("my sister", "a dog": RELATIONS), so "She lives in
Rotterdam" asks "Where does my sister live?".

Off by default (SleepOptions.rule_questions): on dev-week a night learned day 1
better and later days worse (bench/RESULTS.md, twenty-eighth round).
"""

from __future__ import annotations

import re

from .episode import Exchange
from .restate import sentences

_CLAUSE_BREAK = re.compile(r"[,;]?\s+(?:and|so|but|because)\s+|[,;]\s+", re.IGNORECASE)
# What leads into a clause without saying anything: "Also", "And", "Remind me:".
_LEAD_IN = re.compile(r"^(?:[^:]{1,20}:\s+|(?:also|and|so|but|then|oh|well|plus)\s+)+", re.I)

# People and pets a user names after "my": "my sister Elena" -> "What is my sister's
# name?". A closed list, because "my green Honda" has the same shape.
RELATIONS = frozenset("""
    sister brother mother mum mom father dad parent son daughter child kid baby wife
    husband partner fiance fiancee girlfriend boyfriend friend neighbour neighbor
    cousin aunt uncle niece nephew grandmother grandfather grandma grandpa gran
    boss manager colleague coworker roommate flatmate housemate coach teacher tutor
    doctor dentist therapist landlord dog cat puppy kitten horse rabbit parrot
""".split())

# "I'm <word>" where <word> says how the user feels, not what they are.
_NOT_ATTRIBUTES = frozenset("""
    so not sure sorry just really very also still now here there back fine good ok okay
    glad happy sad tired afraid about going gonna trying thinking wondering looking
    the a an in on at with from to of all done ready able excited worried
""".split())

# Verbs that are not the main verb after "I" ("I just ...", "I can ..."), and past
# forms whose present is not the word less "ed".
_NOT_PRESENT = frozenset("""
    am was were have had has do did does will would can could should shall may might
    must just also really still already never always often usually think guess mean
    know got went came saw made took found met bought lost won said told left felt
""".split())
_PAST = {"got": "get", "bought": "buy", "met": "meet", "found": "find", "lost": "lose",
         "won": "win", "made": "make", "took": "take", "began": "begin",
         "adopted": "adopt", "started": "start", "joined": "join", "booked": "book",
         "finished": "finish", "visited": "visit", "moved": "move", "married": "marry"}
_MOVING = frozenset("moving going travelling traveling flying heading driving relocating "
                    "commuting".split())
_PREPS = "for|to|with|in|on|at|from|about|into|as"

_I_AM = r"\bI(?:'m|’m| am)"
_POSSESSIVE_BE = re.compile(
    r"\bmy ((?:[\w'-]+ ){0,3}?[\w'-]+) (is|are|was|were|will be) (?!\w+ing\b)\S", re.I)
_APPOSITIVE = re.compile(r"\b[Mm]y ([a-z]+) ([A-Z][a-z]+)\b")
_THEY_DO_PREP = re.compile(rf"\b[Mm]y ([a-z]+) (?:[A-Z][a-z]+ )?([a-z]+s) ({_PREPS})\b(.*)")
# Who "he", "she" and "his", "her" are: the last person or pet the user named ("my
# sister Elena", "I just adopted a dog").
_REFERENT = re.compile(r"\b(?:[Mm]y|a|an) ([a-z]+)\b")
_PRONOUN = re.compile(r"^(?:(he|she)(?:'s|’s)?|(his|her)) ", re.I)
_AM_DOING_PREP = re.compile(_I_AM + rf" (?:\w+ly )?(\w+ing) ({_PREPS})\b(.*)")
_AM_DOING = re.compile(_I_AM + rf" (?:\w+ly )?(\w+ing) (?!(?:{_PREPS})\b)(?:\w+ )?\w")
_AM_ADJ_PREP = re.compile(_I_AM + r" (?:\w+ly )?([a-z]+) (to|of|about|in|with)\b")
_AM_ATTRIBUTE = re.compile(_I_AM + r" (?:a |an )?([a-z]+)(?: now)?$")
_DO_PREP = re.compile(rf"\bI (?:\w+ly )?([a-z]+) ({_PREPS})\b(.*)")
_DO_AT_TIME = re.compile(r"\bI (?:\w+ly )?([a-z]+) ([a-z]+) at \d{1,2}(?::\d\d)? ?(?:am|pm)\b", re.I)
_DID = re.compile(r"\bI (?:just |recently |finally )?(" + "|".join(_PAST) + r") (?:a|an|my|the) ")


def clauses(sentence: str) -> list[str]:
    """The sentence cut into clauses, without its end punctuation or lead-ins."""
    parts = (_LEAD_IN.sub("", part.strip()) for part in
             _CLAUSE_BREAK.split(sentence.rstrip(".!?")))
    return [part for part in parts if part]


def _names_someone(words: str) -> bool:
    """A person or pet: a capitalised name, or a word of RELATIONS."""
    return bool(re.search(r"\b[A-Z][a-z]+\b", words)
                or any(w.lower() in RELATIONS for w in re.findall(r"[a-z]+", words)))


def clause_questions(clause: str) -> list[str]:
    """The questions the rules ask of one clause ([] where none fits)."""
    found = []
    for m in _POSSESSIVE_BE.finditer(clause):
        thing, be = m.group(1), m.group(2).lower()
        if re.match(r"(?:called|named) ", clause[m.end() - 1:]):
            found.append(f"What {be} my {thing} called?")
        else:
            found.append(f"What will my {thing} be?" if be == "will be" else f"What {be} my {thing}?")
    for m in _APPOSITIVE.finditer(clause):
        if m.group(1).lower() in RELATIONS:
            found.append(f"What is my {m.group(1)}'s name?")
    if m := _AM_DOING_PREP.search(clause):
        verb, prep, rest = m.groups()
        wh = ("Where" if verb.lower() in _MOVING and prep in ("to", "in", "from")
              else "Who" if prep == "with" and _names_someone(rest) else "What")
        found.append(f"{wh} am I {verb} {prep}?")
    elif (m := _AM_DOING.search(clause)) and m.group(1).lower() not in _MOVING:
        found.append(f"What am I {m.group(1)}?")
    if (m := _AM_ADJ_PREP.search(clause)) and not m.group(1).endswith("ing") \
            and m.group(1) not in _NOT_ATTRIBUTES:
        found.append(f"What am I {m.group(1)} {m.group(2)}?")
    elif (m := _AM_ATTRIBUTE.search(clause)) and m.group(1) not in _NOT_ATTRIBUTES \
            and not m.group(1).endswith("ing"):
        found.append("What am I?")
    if (m := _DO_PREP.search(clause)) and m.group(1) not in _NOT_PRESENT \
            and not m.group(1).endswith(("ed", "ing")):
        verb, prep, rest = m.groups()
        if prep == "with" and _names_someone(rest):
            found.append(f"Who do I {verb} with?")
        elif prep in ("in", "at") and re.match(r"\s*(?:the )?[A-Z]", rest):
            found.append(f"Where do I {verb}?")
        else:
            found.append(f"What do I {verb} {prep}?")
    if (m := _DO_AT_TIME.search(clause)) and m.group(1).lower() not in _NOT_PRESENT:
        found.append(f"When do I {m.group(1)} {m.group(2)}?")
    if (m := _THEY_DO_PREP.search(clause)) and m.group(1) in RELATIONS:
        who, verb, prep, rest = m.groups()
        verb = verb[:-2] if verb.endswith(("shes", "ches", "xes", "oes")) else verb[:-1]
        if prep in ("in", "at") and re.match(r"\s*(?:the )?[A-Z]", rest):
            found.append(f"Where does my {who} {verb}?")
        elif prep == "with" and _names_someone(rest):
            found.append(f"Who does my {who} {verb} with?")
        else:
            found.append(f"What does my {who} {verb} {prep}?")
    if m := _DID.search(clause):
        found.append(f"What did I {_PAST[m.group(1)]}?")
    return found


def last_referent(text: str) -> str | None:
    """The last person or pet named in `text` ("sister" in "My sister Elena is
    visiting"), or None."""
    found = [w for w in _REFERENT.findall(text) if w in RELATIONS]
    return found[-1] if found else None


def resolved(clause: str, referent: str | None) -> str:
    """`clause` with a leading "he", "she", "his" or "her" said as the referent: "Her
    favourite color is teal" -> "my sister's favourite color is teal"."""
    m = _PRONOUN.match(clause)
    if not m or referent is None:
        return clause
    if m.group(2):
        return f"my {referent}'s " + clause[m.end():]
    be = " is" if m.group(0).rstrip().endswith(("'s", "’s")) else ""
    return f"my {referent}{be} " + clause[m.end():]


def rule_questions(statement: str, earlier: str = "") -> list[tuple[str, str, str]]:
    """(sentence, clause, question) for each question the rules ask of the statement,
    each once, in order; the clause as the rules read it, a leading pronoun said as
    who it is ("my sister lives in Rotterdam"). `earlier`: what the user said before
    in the conversation, where "she" may have been named."""
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    referent = last_referent(earlier)
    for sentence in sentences(statement):
        # A question the user asks tells nothing (clauses lose their "?", so here).
        for clause in ([] if sentence.endswith("?") else clauses(sentence)):
            read = resolved(clause, referent)
            for q in clause_questions(read):
                if q not in seen:
                    seen.add(q)
                    out.append((sentence, read, q))
            referent = last_referent(clause) or referent
    return out


def ruled_questions(exchanges: list[Exchange], written: list[list[str]]
                    ) -> list[tuple[Exchange, str, str, str]]:
    """(exchange, sentence, clause, question) for each question question_rules asks
    of a statement (SleepOptions.rule_questions) that its written questions lack."""
    out = []
    for x, mine in zip(exchanges, written):
        earlier = " ".join(m["content"] for m in x.context[:-1]
                           if m["role"] == "user" and m["content"].strip() != x.statement)
        out += [(x, sentence, clause, q) for sentence, clause, q
                in rule_questions(x.statement, earlier) if q not in mine]
    return out


def by_sentence(ruled: list[tuple[Exchange, str, str, str]]
                ) -> list[tuple[Exchange, list[str], str]]:
    """The rule questions as (exchange, questions, sentence), a sentence's together."""
    out: list[tuple[Exchange, list[str], str]] = []
    for x, sentence, _, q in ruled:
        if out and out[-1][0] is x and out[-1][2] == sentence:
            out[-1][1].append(q)
        else:
            out.append((x, [q], sentence))
    return out
