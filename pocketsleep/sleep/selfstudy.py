"""Knowledge seeding, step 1: the training set D, sampled from the model itself.

- Questions: for every message in which the user said something, the model writes
  questions it could be asked later (few-shot completion, sleep/questions.py), plus
  a few fixed recall requests per conversation.
- Answers: the teacher (the pre-sleep model *with the episode in context* — the part
  of it the question is about, as real chat turns) answers each question; its top-k
  distribution at every token is kept as the target. Only answers grounded in what
  the user said are kept.
- Anchors: generic requests answered by the same model *without* the episode, so
  distilling them holds old behaviour in place.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from .. import control_tokens, prompts
from . import contrast, question_rules, questions
from .episode import Episode, Exchange
from .objective import NEG
from .options import SleepOptions
from .quoting import QuoteBias, spellings
from .restate import restated, second_person, sentences
from .sampling import Generated, generate_batch
from .words import content_words, polarity, stated_words, token_positions, word_spans

_ROLE_TALK = re.compile(r"\b(User|Assistant|The user said)\s*:")


def usable_answer(answer: str, source: str, question: str, *, negations: bool) -> bool:
    """Worth distilling: grounded in the episode, and an answer rather than the small
    teacher continuing the transcript it was shown ("User: ... Assistant: ...")."""
    return not _ROLE_TALK.search(answer) and grounded(answer, source, question,
                                                        negations=negations)


def grounding_words(answer: str, source: str, question: str, *, negations: bool
                    ) -> set[str]:
    """The words that make an answer grounded (see grounded). With `negations`
    (SleepOptions.heed_negations) a word counts when the answer says it the way the
    source does: so where the source says so, or not so where the source says
    not ("You don't eat meat" after "no meat or fish"; words.polarity)."""
    if not negations:
        return (content_words(answer) & content_words(source)) - content_words(question)
    (said, denied), (stated, negated) = polarity(answer), polarity(source)
    return ((said & stated) | (denied & negated)) - content_words(question)


def grounded(answer: str, source: str, question: str, *, negations: bool) -> bool:
    """The teacher's answer brings something from the episode that the question did
    not: one of the source's content words. A 135M teacher answers many questions
    from imagination; only answers that are supported by what the user said are
    worth distilling. With `negations`, an answer that says what the user said is
    not so ("You're a vegetarian" after "pescatarian now, not vegetarian") is not."""
    return bool(grounding_words(answer, source, question, negations=negations))


@dataclass
class Example:
    kind: str  # "statement" | "recall" | "anchor"
    question: str
    teacher_messages: list[dict]  # what the teacher saw
    answer: Generated  # teacher's answer tokens and top-k targets
    statement: str | None = None
    earlier: bool = False  # an anchor that is an earlier night's probe (earlier_anchors)

    @property
    def student_messages(self) -> list[dict]:
        return prompts.closed_book(self.question)


class ModelIO:
    """The few things self-study needs from the model: token ids and end tokens."""

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = set(tokenizer.eos_token_ids)
        self.controls = control_tokens.texts_of(tokenizer)

    # What the user said is text, even where it spells a control token: the teacher
    # must not read a system turn or an end of turn forged inside a conversation.
    def chat_ids(self, messages: list[dict]) -> list[int]:
        return self.tokenizer.apply_chat_template(
            control_tokens.plain_messages(messages, self.controls),
            add_generation_prompt=True, tokenize=True)

    def text_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(control_tokens.plain(text, self.controls),
                                     add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    @property
    def end_token(self) -> int:
        """The token that ends an assistant turn (what a teacher answer ends with)."""
        eos = getattr(self.tokenizer, "eos_token_id", None)
        return eos if eos is not None else min(self.eos_ids)


def reworded_examples(io: ModelIO, teacher: "Teacher", train: list[Example],
                      heldout: list[Example], options: SleepOptions, seed: int,
                      progress: Callable[[str, int, int], None] = lambda *a: None
                      ) -> list[Example]:
    """The training statement questions again in other words, each rewording with
    one of its question's teacher answers (in turn), re-scored by the teacher with
    the rewording in place of the question. Rewordings that are any question already
    asked, held-out ones included, are left out: the gate's held-out questions must
    stay unseen."""
    if options.question_rewordings <= 0:
        return []
    progress("rewording questions", 0, 1)
    answers: dict[tuple[str, str], list[Example]] = {}
    for e in train:
        if e.kind == "statement" and e.statement:
            answers.setdefault((e.statement, e.question), []).append(e)
    taken = {e.question for e in train + heldout}
    asked = list(answers)
    out = []
    for key, words in zip(asked, questions.write_rewordings(
            io, asked, options.question_rewordings, taken, seed)):
        for i, question in enumerate(words):
            e = answers[key][i % len(answers[key])]
            messages = e.teacher_messages[:-1] + [{"role": "user", "content": question}]
            answer = rescored(io, teacher, messages, e.answer, options.top_k)
            out.append(Example("statement", question, messages, answer, e.statement))
    return out


def rescored(io: ModelIO, teacher: "Teacher", messages: list[dict], answer: Generated,
             top_k: int) -> Generated:
    """`answer` (its end token too) with the teacher's top-k targets as the reply to
    `messages`."""
    scored = forced_answer(io, messages, answer.answer_ids, top_k, teacher)
    return Generated(answer.tokens, answer.end_token, scored.topk_ids, scored.topk_logprobs)


_SENTENCE_END = re.compile(r"[.!?][\"')]*$")


def through_sentence_stating(io: ModelIO, answer: Generated, words: set[str]) -> Generated:
    """`answer` cut after the sentence in which it first says one of `words`. A 135M
    teacher states the fact, then invents ("Biscuit is a beagle. He's a 10-year-old
    rescue..."): distilling the invention teaches false facts and pulls general
    answers along; the sentence that states the fact is what is worth learning."""
    tokens = answer.tokens
    stated = next((n for n in range(1, len(tokens) + 1)
                   if content_words(io.decode(tokens[:n])) & words), None)
    if stated is None:
        return answer
    for n in range(stated, len(tokens)):
        if _SENTENCE_END.search(io.decode(tokens[:n]).rstrip()):
            return Generated(tokens[:n], None, answer.topk_ids[:n], answer.topk_logprobs[:n])
    return answer


def fact_token_weights(io: ModelIO, example: Example, weight: float, *, negations: bool
                       ) -> np.ndarray:
    """One weight per answer id (end token included): the tokens that spell a word
    the answer brings from the episode (grounding_words: "Tomasz", "Jazz") weigh
    `weight` times the rest, the whole averaging 1, so an answer pulls no harder on
    the expert than before and the anchors in the same batch keep their share. A
    fact is a token or two of a 32-token answer whose other tokens are phrasing and
    invention; weighting them puts the night's learning where the fact is."""
    ids = example.answer.answer_ids
    out = np.ones(len(ids), dtype=np.float32)
    if weight == 1 or example.kind == "anchor" or not example.statement:
        return out
    text = io.decode(example.answer.tokens)
    spans = word_spans(text, grounding_words(text, example.statement, example.question,
                                             negations=negations))
    out[token_positions(io.decode, example.answer.tokens, spans)] = weight
    return out * (len(out) / out.sum())


def teacher_views(exchange: Exchange, question: str) -> list[list[dict]]:
    """The contexts a teacher answers `question` from: the statement with the reply to
    it, and the whole conversation up to there. Two views give two phrasings of the
    fact and hedge a small teacher's misses in either (dev-week: 12/15 and 11/15)."""
    views = [prompts.teacher_view(exchange.exchange, question)]
    if len(exchange.context) > len(exchange.exchange):
        views.append(prompts.teacher_view(exchange.context, question))
    return views


class Teacher:
    """The pre-sleep personal model, answering with part of the episode in context."""

    def __init__(self, io: ModelIO, options: SleepOptions):
        self.io = io
        self.options = options

    def answer_many(self, conversations: list[list[dict]], temperatures: list[float],
                    seed: int, starts: Sequence[list[int]] | None = None,
                    processors: Sequence | None = None) -> list[Generated]:
        """`starts[i]`: tokens answer i is made to begin with (none: the teacher's own
        start); they are part of the answer, as targets the teacher is sure of.
        `processors[i]`: a logits processor answer i is generated through (a
        quoting.QuoteBias), or None."""
        starts = starts or [[] for _ in conversations]
        ids = [self.io.chat_ids(m) + list(s) for m, s in zip(conversations, starts)]
        answers = generate_batch(self.io.model, ids, self.io.eos_ids,
                                 self.options.max_answer_tokens, temperatures,
                                 top_k=self.options.top_k, seed=seed,
                                 processors=list(processors) if processors else None)
        return [begun_with(s, a) for s, a in zip(starts, answers)]


def begun_with(start: list[int], answer: Generated) -> Generated:
    """`answer`, generated after `start`, with `start` in front: one-hot targets for
    the start's tokens (the student is to say them), the teacher's top-k after."""
    if not start:
        return answer
    k = answer.topk_ids.shape[1]
    ids = np.array([[t] + [i for i in range(k) if i != t][:k - 1] for t in start], np.int32)
    lps = np.full((len(start), k), NEG, np.float32)  # the others: impossible
    lps[:, 0] = 0.0
    return Generated(list(start) + answer.tokens, answer.end_token,
                     np.concatenate([ids, answer.topk_ids]),
                     np.concatenate([lps, answer.topk_logprobs]))


def build_examples(io: ModelIO, teacher: "Teacher", episode: Episode, options: SleepOptions,
                   progress: Callable[[str, int, int], None] = lambda *a: None,
                   earlier: Sequence[tuple[str, str]] = ()
                   ) -> tuple[list[Example], list[Example]]:
    """Return (training examples, held-out examples for the gate) for the whole
    episode. `earlier`: the stored probes of the experts the model already wears,
    held in place as anchors."""
    _, train, heldout = study(io, teacher, episode, options, progress, earlier)
    return train, heldout


def study(io: ModelIO, teacher: "Teacher", episode: Episode, options: SleepOptions,
          progress: Callable[[str, int, int], None] = lambda *a: None,
          earlier: Sequence[tuple[str, str]] = (), stop_at: float | None = None,
          sources: Mapping[tuple[str, str], Sequence[dict]] | None = None
          ) -> tuple[Episode, list[Example], list[Example]]:
    """Return (the part of the episode studied, training examples, held-out ones).
    `sources`: earlier probes' conversations (earlier_anchors).

    With no `stop_at` the whole episode is studied in one batch. With one (a
    time.perf_counter() value: self-study's share of a --budget) it is studied a
    conversation at a time, in the order they were logged, and study ends after the
    first conversation that finishes past it; the rest wait for the next night.
    (Smaller batches and other seeds: a night with a budget differs a little from
    one without, even when it fits.) Fix: self-study grows with the day (a 16x
    dev-week day needs ~17 min of it) and ignored the budget, so a long day trained
    no step, was rejected and stayed pending every night."""
    rng = random.Random(options.seed)
    n = len(episode.conversation_ids)
    parts = [(0, n)] if stop_at is None else [(i, i + 1) for i in range(n)]
    examples: list[Example] = []
    studied = 0
    for i, (lo, hi) in enumerate(parts):
        # A conversation at a time, one phase: its steps are the conversations.
        told = progress if stop_at is None else lambda *_: progress("self-study", lo, n)
        examples += episode_examples(io, teacher, episode.part(lo, hi), options,
                                     options.seed + i, told)
        studied = hi
        if stop_at is not None and time.perf_counter() > stop_at:
            break
    examples += anchor_examples(io, options, rng, progress)
    train, heldout = split_heldout(examples, options, rng)
    train += reworded_examples(io, teacher, train, heldout, options, options.seed, progress)
    anchors = earlier_anchors(io, earlier, options, teacher, sources)
    return episode.part(0, studied), train + anchors, heldout


def episode_examples(io: ModelIO, teacher: "Teacher", episode: Episode, options: SleepOptions,
                     seed: int, progress: Callable[[str, int, int], None] = lambda *a: None
                     ) -> list[Example]:
    """The teacher's grounded answers to the model's questions about each statement
    and to the fixed recall requests about each conversation."""
    exchanges = episode.exchanges()
    progress("writing questions", 0, 1)
    statements = [x.statement for x in exchanges]
    singly = questions.write_questions(io, statements, options.questions_per_statement, seed)
    listed = questions.write_question_lists(io, statements, options.question_lists, seed)
    written = [(one + [q for q in more if q not in one])[:options.max_questions_per_statement]
               for one, more in zip(singly, listed)]

    # Each question is answered greedily from every teacher view, then sampled from
    # the first until it has `answers_per_question` answers. `source`: what the
    # teacher quotes and an answer must be grounded in.
    sources = [(x, mine, x.statement) for x, mine in zip(exchanges, written)]
    sources += [(exchanges[i], mine, sentence) for i, mine, sentence
                in questions.write_sentence_questions(io, statements, written,
                                                      options.sentence_questions, seed)]
    ruled = question_rules.ruled_questions(exchanges, written) if options.rule_questions else []
    sources += question_rules.by_sentence(ruled)
    asked, temps, meta = [], [], []
    for x, mine, source in sources:
        for q in mine:
            views = teacher_views(x, q)
            for j in range(options.answers_per_question):
                asked.append(views[j] if j < len(views) else views[0])
                temps.append(0.0 if j < len(views) else 0.7)
                meta.append(("statement", q, source))
    for conversation in episode.conversations:
        turns = [m for m in conversation if m["role"] != "system"]
        source = " ".join(m["content"] for m in turns if m["role"] == "user")
        for q in prompts.RECALL_PROMPTS:
            asked.append(prompts.teacher_view(turns, q))
            temps.append(0.0)
            meta.append(("recall", q, source))

    progress("teacher answers", 0, 1)
    answers = teacher.answer_many(asked, temps, seed, answer_starts(io, options, meta),
                                  quote_biases(io, options, meta))
    examples = usable_examples(io, options, meta, asked, answers)
    examples += retried_examples(io, teacher, options, exchanges, written, examples, seed)
    examples = plain_targets(io, teacher, options, examples)
    examples += restated_examples(io, teacher, options, episode, written)
    examples += said_back_examples(io, teacher, options, ruled)
    return contrast.contrasted_examples(io, teacher, options, examples)


def usable_examples(io: ModelIO, options: SleepOptions, meta: list[tuple[str, str, str]],
                    asked: list[list[dict]], answers: list) -> list[Example]:
    """The teacher's answers worth distilling, as examples."""
    examples = []
    for (kind, q, s), m, a in zip(meta, asked, answers):
        heed = options.heed_negations
        if not a.tokens or not usable_answer(io.decode(a.tokens), s, q, negations=heed):
            continue
        if kind == "statement" and options.answer_one_sentence:
            a = through_sentence_stating(io, a, grounding_words(io.decode(a.tokens), s, q,
                                                                negations=heed))
        examples.append(Example(kind, q, m, a, s))
    return examples


def retried_examples(io: ModelIO, teacher: "Teacher", options: SleepOptions,
                     exchanges: list[Exchange], written: list[list[str]],
                     found: list[Example], seed: int) -> list[Example]:
    """More sampled answers, from the teacher views in turn, to the statement
    questions none of whose answers was usable (grounded, not transcript talk): a
    135M teacher often misses a fact on its first tries ("Kiera" for Tomasz) and
    finds it on a later one. Only where the first answers failed, so facts already
    taught get no more weight."""
    if options.answer_retries <= 0:
        return []
    answered = {(e.question, e.statement) for e in found if e.kind == "statement"}
    asked, temps, meta = [], [], []
    for x, mine in zip(exchanges, written):
        for q in mine:
            if (q, x.statement) in answered:
                continue
            views = teacher_views(x, q)
            for j in range(options.answer_retries):
                asked.append(views[j % len(views)])
                temps.append(options.retry_temperature)
                meta.append(("statement", q, x.statement))
    if not asked:
        return []
    answers = teacher.answer_many(asked, temps, seed + 1, answer_starts(io, options, meta),
                                  quote_biases(io, options, meta))
    return usable_examples(io, options, meta, asked, answers)


def plain_targets(io: ModelIO, teacher: "Teacher", options: SleepOptions,
                  examples: list[Example]) -> list[Example]:
    """With SleepOptions.quote_bias and not quote_bias_in_targets: the quoting
    teacher's statement answers with the teacher's own top-k as their targets (the
    bias chose the words; the student learns the teacher that reads the statement,
    not the bonus). A forced start's one-hot targets are rescored too."""
    if not options.quote_bias or options.quote_bias_in_targets:
        return examples
    return [replace(e, answer=rescored(io, teacher, e.teacher_messages, e.answer, options.top_k))
            if e.kind == "statement" else e for e in examples]


def restated_examples(io: ModelIO, teacher: "Teacher", options: SleepOptions,
                      episode: Episode, written: list[list[str]]) -> list[Example]:
    """One more answer to each statement question: the statement said back to the
    user (restate.restated), and to each recall request, its conversation's
    statements said back; scored by the teacher from the view it answers that
    question from (SleepOptions.restated_answers). The answer states the fact in the
    user's words, with nothing invented; the targets are still the teacher's."""
    if not options.restated_answers:
        return []
    asked = []  # (kind, question, teacher view, what the user said, said back)
    for x, mine in zip(episode.exchanges(), written):
        said = restated(x.statement, content_words)
        asked += [("statement", q, teacher_views(x, q)[0], x.statement, said)
                  for q in mine if said]
    for conversation in episode.conversations:
        turns = [m for m in conversation if m["role"] != "system"]
        users = [m["content"] for m in turns if m["role"] == "user"]
        said = " ".join(filter(None, (restated(u, content_words) for u in users)))
        asked += [("recall", q, prompts.teacher_view(turns, q), " ".join(users), said)
                  for q in prompts.RECALL_PROMPTS if said]
    return said_examples(io, teacher, options, asked)


def said_back_examples(io: ModelIO, teacher: "Teacher", options: SleepOptions,
                       ruled: list[tuple[Exchange, str, str, str]]) -> list[Example]:
    """One more answer to each rule question: the clause it was asked of, said back
    ("What is my best 10k time?" -> "Your best 10k time is 52 minutes."), scored by
    the teacher reading the exchange (SleepOptions.rule_answers). Unlike a whole
    message said back (restated_examples), it states the one fact the question asks."""
    if not options.rule_answers:
        return []
    asked = [("statement", q, teacher_views(x, q)[0], sentence, second_person(clause) + ".")
             for x, sentence, clause, q in ruled]
    return said_examples(io, teacher, options, asked)


def said_examples(io: ModelIO, teacher: "Teacher", options: SleepOptions,
                  asked: list[tuple[str, str, list[dict], str, str]]) -> list[Example]:
    """Examples of (kind, question, teacher view, what the user said, said back):
    each grounded answer said back, its targets the teacher's distribution along it."""
    out = []
    for kind, question, view, source, said in asked:
        if not usable_answer(said, source, question, negations=options.heed_negations):
            continue
        ids, end = capped(io, said, 2 * options.max_answer_tokens)
        scored = forced_answer(io, view, ids + ([end] if end is not None else []),
                               options.top_k, teacher)
        answer = Generated(ids, end, scored.topk_ids, scored.topk_logprobs)
        out.append(Example(kind, question, view, answer, source))
    return out


def capped(io: ModelIO, text: str, max_tokens: int) -> tuple[list[int], int | None]:
    """`text`'s token ids, whole sentences up to `max_tokens`, ending the turn; a first
    sentence longer than that is cut, with no end token (as a teacher answer stopped
    by its length limit)."""
    ids: list[int] = []
    for sentence in sentences(text):
        more = io.text_ids((" " if ids else "") + sentence)
        if len(ids) + len(more) > max_tokens:
            return (ids, io.end_token) if ids else (more[:max_tokens], None)
        ids += more
    return ids, io.end_token


def answer_starts(io: ModelIO, options: SleepOptions, meta: list[tuple[str, str, str]]
                  ) -> list[list[int]] | None:
    """The tokens each statement question's answer begins with
    (SleepOptions.answer_start); None when there are none."""
    if not options.answer_start:
        return None
    start = io.text_ids(options.answer_start)
    return [start if kind == "statement" else [] for kind, _, _ in meta]


def quote_biases(io: ModelIO, options: SleepOptions, meta: list[tuple[str, str, str]]
                 ) -> list[QuoteBias | None] | None:
    """The quoting teacher's processor for each statement question's answer
    (SleepOptions.quote_bias; sleep/quoting.py): favouring the words of the statement
    the question lacks. None when the option is off."""
    if not options.quote_bias:
        return None
    out: list[QuoteBias | None] = []
    for kind, question, source in meta:
        # With heed_negations, not the words the statement says are not so.
        said = stated_words(source) if options.heed_negations else content_words(source)
        wanted = said - content_words(question) if kind == "statement" else ()
        words = {source[a:b] for a, b in word_spans(source, wanted)}
        out.append(QuoteBias(spellings(io.text_ids, words), options.quote_bias)
                   if words else None)
    return out


def anchor_examples(io: ModelIO, options: SleepOptions, rng: random.Random,
                    progress: Callable[[str, int, int], None] = lambda *a: None
                    ) -> list[Example]:
    """Generic requests answered by the model without the episode (old behaviour)."""
    progress("anchors", 0, 1)
    anchors = list(prompts.ANCHOR_PROMPTS)
    rng.shuffle(anchors)
    anchors = anchors[: options.anchors]
    anchor_messages = [prompts.closed_book(q) for q in anchors]
    anchor_answers = generate_batch(io.model, [io.chat_ids(m) for m in anchor_messages],
                                    io.eos_ids, options.anchor_tokens,
                                    [0.0] * len(anchors), top_k=options.top_k)
    return [Example("anchor", q, m, a)
            for q, m, a in zip(anchors, anchor_messages, anchor_answers) if a.tokens]


def earlier_anchors(io: ModelIO, earlier: Sequence[tuple[str, str]],
                    options: SleepOptions, teacher: "Teacher | None" = None,
                    sources: Mapping[tuple[str, str], Sequence[dict]] | None = None
                    ) -> list[Example]:
    """Earlier nights' probes, their stored answers scored (by default) by the model
    as it is before tonight: anchors that hold what earlier experts learned. Without them a second
    night made day 1's answers less likely and the gate rejected it (dev-week, night 2:
    -1.41 -> -1.50 nats/token). Never held out: the gate checks these very answers.

    With SleepOptions.earlier_anchor_targets = "conversation", a probe whose
    conversation is in `sources` (its turns) is scored by `teacher` reading that
    conversation instead: a target that knows the fact, not one that only holds
    what the model remembers of it."""
    chosen = chosen_earlier(earlier, options)
    if not chosen:
        return []
    reread = options.earlier_anchor_targets == "conversation" and teacher is not None
    out = []
    for question, answer in chosen:
        turns = (sources or {}).get((question, answer)) if reread else None
        if turns:
            messages = prompts.teacher_view([m for m in turns if m["role"] != "system"],
                                            question)
        else:
            messages = prompts.closed_book(question)
        out.append(Example("anchor", question, messages,
                           forced_answer(io, messages, io.text_ids(answer), options.top_k,
                                         teacher if turns else None),
                           earlier=True))
    return out


def chosen_earlier(earlier: Sequence[tuple[str, str]],
                   options: SleepOptions) -> list[tuple[str, str]]:
    """The earlier probes tonight holds in place: the most recent
    `earlier_anchors` with an answer."""
    if options.earlier_anchors <= 0:
        return []
    return [(q, a) for q, a in earlier if a.strip()][-options.earlier_anchors:]


def forced_answer(io: ModelIO, messages: list[dict], answer: list[int], top_k: int,
                  teacher: "Teacher | None" = None) -> Generated:
    """`answer` as the pre-sleep model scores it, or `teacher` where given (tonight's
    expert off either way): its top-k distribution at each token, the shape of a
    teacher's answer."""
    from ..backends.mlx_lora import without_trainable_expert

    with without_trainable_expert(io.model):
        lp = np.array(answer_logprobs(teacher.io if teacher else io, messages, answer))
    return top_k_answer(answer, lp, top_k)


def top_k_answer(answer: list[int], logprobs: np.ndarray, top_k: int) -> Generated:
    """A forced `answer` packed as a teacher's answer: the top-k of `logprobs`
    ([len(answer), V]) at each token."""
    top = np.argpartition(-logprobs, top_k - 1, axis=-1)[:, :top_k]
    return Generated(list(answer), None, top.astype(np.int32),
                     np.take_along_axis(logprobs, top, axis=-1).astype(np.float32))


def split_heldout(examples: list[Example], options: SleepOptions, rng: random.Random):
    """Hold out whole questions (every answer to them), never single answers."""
    by_kind_question = sorted({(e.kind, e.question) for e in examples if e.kind != "recall"})
    rng.shuffle(by_kind_question)
    n = round(len(by_kind_question) * options.heldout_fraction)
    held = set(by_kind_question[:n])
    train = [e for e in examples if (e.kind, e.question) not in held]
    heldout = [e for e in examples if (e.kind, e.question) in held]
    return train, heldout


def answer_text(io: ModelIO, example: Example) -> str:
    return io.decode(example.answer.tokens)


def topk_arrays(example: Example) -> tuple[np.ndarray, np.ndarray]:
    return example.answer.topk_ids, example.answer.topk_logprobs


def answer_logprobs(io: ModelIO, messages: list[dict], answer: list[int]):
    """Full-vocabulary log-probs at each position of `answer` as the reply to
    `messages`, as `io.model` sees it: an mx.array [len(answer), V]."""
    import mlx.core as mx

    from .sampling import log_softmax

    prompt = io.chat_ids(messages)
    logits = io.model(mx.array(prompt + answer[:-1])[None])
    return log_softmax(logits[0, len(prompt) - 1:])


def teacher_logprobs(teacher: "Teacher", messages: list[dict], sample: list[int]) -> np.ndarray:
    """The teacher's full log-probabilities at each position of `sample` (the student's
    answer), with the teacher's context: [len(sample), V]."""
    return np.array(answer_logprobs(teacher.io, messages, sample))
