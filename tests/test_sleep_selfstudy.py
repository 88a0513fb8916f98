"""Tonight's episode from the journal, and the self-study set's filters and split."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pocketsleep import prompts
from pocketsleep.sleep.episode import MIN_STATEMENT_WORDS, Episode
from pocketsleep.sleep.options import SleepOptions

pytest.importorskip("mlx.core")  # selfstudy needs mlx
from pocketsleep.sleep.sampling import Generated  # noqa: E402
from pocketsleep.sleep.selfstudy import Example, grounded, split_heldout  # noqa: E402
from pocketsleep.sleep.words import content_words  # noqa: E402


# -- content words and grounding ---------------------------------------------------------

def test_content_words_drop_stopwords_short_words_and_case():
    assert content_words("My sister Anna lives in Lisbon and likes tea.") == {
        "sister", "anna", "lives", "lisbon", "likes", "tea"}
    assert content_words("What is the name of my dog? Tell me, please!") == {"name", "dog"}
    assert content_words("Meeting at 10:30 on Tuesday, room 42B") == {
        "meeting", "tuesday", "room", "42b"}
    assert content_words("") == set()
    assert content_words("ok thanks, I think so too") == set()
    # Contractions carry no fact; a possessive is its noun.
    assert content_words("I'm sure it's fine, don't worry, you're right, we'll see") == {
        "fine", "worry", "right", "see"}
    assert content_words("Anna's dog") == {"anna", "dog"}
    assert content_words("I don\u2019t drive Anna\u2019s car") == {"drive", "anna", "car"}


@pytest.mark.parametrize("answer, source, question, expected", [
    # Brings a word from the statement the question did not contain.
    ("She lives in Lisbon.", "My sister Anna lives in Lisbon.", "Where does Anna live?", True),
    ("Lisbon", "My sister Anna lives in Lisbon.", "Where does my sister live?", True),
    # Only repeats the question's own words: nothing learned from the episode.
    ("Anna is your sister.", "My sister Anna lives in Lisbon.", "Who is my sister Anna?", False),
    # Invents an answer that is not in the source.
    ("She is in Madrid.", "My sister Anna lives in Lisbon.", "Where does Anna live?", False),
    # Stopwords and case do not count.
    ("I think you told me about it.", "I told you about it", "What did I say?", False),
    ("LISBON!", "lisbon", "Where?", True),
    ("I'm not sure, I don't know.", "I'm a nurse and I don't drive.", "What is my job?", False),
    ("Anna's.", "It is Anna's bike.", "Whose bike is it?", True),
    ("", "My sister Anna lives in Lisbon.", "Where does Anna live?", False),
])
def test_grounded(answer, source, question, expected):
    assert grounded(answer, source, question, negations=True) is expected
    assert grounded(answer, source, question, negations=False) is expected


# -- the held-out split ----------------------------------------------------------------------

def example(kind: str, question: str, n: int = 1) -> Example:
    answer = Generated([n], None, np.zeros((1, 2), np.int32), np.zeros((1, 2), np.float32))
    return Example(kind, question, prompts.closed_book(question), answer,
                   "a statement" if kind == "statement" else None)


def examples_for_split() -> list[Example]:
    out = []
    for q in range(10):  # three answers per statement question
        out += [example("statement", f"Question {q}?", n) for n in range(3)]
    out += [example("recall", q, n) for q in prompts.RECALL_PROMPTS for n in range(2)]
    out += [example("anchor", q) for q in prompts.ANCHOR_PROMPTS[:4]]
    random.Random(5).shuffle(out)
    return out


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
def test_split_heldout_keeps_whole_questions_and_never_holds_out_recall(fraction):
    examples = examples_for_split()
    options = SleepOptions(heldout_fraction=fraction)
    train, heldout = split_heldout(examples, options, random.Random(0))
    assert len(train) + len(heldout) == len(examples)
    assert {id(e) for e in train} | {id(e) for e in heldout} == {id(e) for e in examples}
    assert not {id(e) for e in train} & {id(e) for e in heldout}
    held_questions = {(e.kind, e.question) for e in heldout}
    # Every answer to a held-out question is held out; none is trained on.
    assert not held_questions & {(e.kind, e.question) for e in train}
    assert all(e.kind != "recall" for e in heldout)
    assert {e.question for e in train if e.kind == "recall"} == set(prompts.RECALL_PROMPTS)
    assert len(held_questions) == round(14 * fraction)  # 10 statement + 4 anchor questions


def test_split_heldout_is_deterministic_for_a_seed():
    examples = examples_for_split()
    a = split_heldout(examples, SleepOptions(), random.Random(1))
    b = split_heldout(examples, SleepOptions(), random.Random(1))
    assert [[id(e) for e in part] for part in a] == [[id(e) for e in part] for part in b]
    none = split_heldout(examples, SleepOptions(heldout_fraction=0.0), random.Random(1))
    assert none[1] == [] and len(none[0]) == len(examples)


# -- the episode -------------------------------------------------------------------------

def episode_of(*conversations) -> Episode:
    return Episode(tuple(range(1, len(conversations) + 1)),
                   tuple(tuple(c) for c in conversations),
                   tuple("2026-01-0%d" % (i + 1) for i in range(len(conversations))))


def test_exchanges_are_the_users_messages_with_the_conversation_up_to_the_reply():
    first = [{"role": "user", "content": "My sister Anna lives in Lisbon. She likes tea!"},
             {"role": "assistant", "content": "That sounds like a lovely family."},
             {"role": "user", "content": "ok thanks"},
             {"role": "assistant", "content": "You're welcome."},
             {"role": "user", "content": "  We meet every Sunday at noon.  "},
             {"role": "assistant", "content": "Enjoy the Sundays."},
             {"role": "user", "content": "And her dog is called Rex."}]
    second = [{"role": "system", "content": "You are a helpful assistant for the family."},
              {"role": "user", "content": "I bought a red bicycle yesterday"}]
    ep = episode_of(first, second)
    xs = ep.exchanges()
    assert ep.statements() == [
        "My sister Anna lives in Lisbon. She likes tea!", "We meet every Sunday at noon.",
        "And her dog is called Rex.", "I bought a red bicycle yesterday"]
    # The context runs from the start of its conversation to the reply to the statement.
    assert xs[0].context == tuple(first[:2]) and xs[0].exchange == tuple(first[:2])
    assert xs[1].context == tuple(first[:6]) and xs[1].exchange == tuple(first[4:6])
    # No reply yet: the statement alone ends the context.
    assert xs[2].context == tuple(first) and xs[2].exchange == (first[6],)
    # System messages are never part of a teacher's view.
    assert xs[3].context == (second[1],) and xs[3].exchange == (second[1],)
    assert MIN_STATEMENT_WORDS == 4
    assert episode_of([{"role": "user", "content": "one two three four"}]).statements() == [
        "one two three four"]
    assert episode_of([{"role": "user", "content": "one two three"}]).statements() == []


def test_teacher_views_are_the_exchange_then_the_whole_conversation():
    from pocketsleep.sleep.selfstudy import teacher_views

    conversation = [{"role": "user", "content": "I adopted a dog last week."},
                    {"role": "assistant", "content": "Lovely!"},
                    {"role": "user", "content": "He is a beagle named Biscuit."},
                    {"role": "assistant", "content": "Biscuit the beagle, noted."}]
    first, second = episode_of(conversation).exchanges()
    system = {"role": "system", "content": prompts.SYSTEM_PROMPT}
    question = {"role": "user", "content": "What is my dog's name?"}
    assert teacher_views(second, question["content"]) == [
        [system, *conversation[2:], question], [system, *conversation, question]]
    # When the exchange is the whole conversation so far, one view is enough.
    assert teacher_views(first, question["content"]) == [[system, *conversation[:2], question]]


def test_history_and_token_estimate():
    ep = episode_of([{"role": "user", "content": "My dog is called Biscuit."},
                     {"role": "assistant", "content": "Nice name."}])
    assert ep.history() == "[2026-01-01]\nUser: My dog is called Biscuit.\nAssistant: Nice name."
    assert ep.token_estimate() == 7 * 4 // 3
    assert not ep.empty
    assert episode_of().empty and episode_of([], []).empty


def test_from_journal_takes_pending_non_private_conversations_as_they_stand(journal):
    kept = journal.start_conversation()
    journal.add_message(kept, "user", "My dog is called Biscuit.")
    journal.add_message(kept, "assistant", "First answer, replaced.")
    journal.add_message(kept, "assistant", "Second answer, the one that counts.")
    journal.add_message(kept, "user", "He is three years old.")
    journal.add_message(kept, "assistant", "Stopped half", state="cancelled")
    private = journal.log_conversation([{"role": "user", "content": "My PIN is 4471, secret."}],
                                       private=True)
    made_private = journal.log_conversation([{"role": "user", "content": "Later private."}])
    journal.set_private(made_private)
    done = journal.log_conversation([{"role": "user", "content": "Learned last night."}])
    sleep_id = journal.begin_sleep()
    journal.accept_expert(sleep_id, "nightly", "night-0001", {}, [done], [], {})
    forgotten = journal.log_conversation([{"role": "user", "content": "Forget me."}])
    journal.forget(forgotten)
    other = journal.log_conversation([{"role": "user", "content": "I live in Porto now."},
                                      {"role": "assistant", "content": "Noted."}])

    ep = Episode.from_journal(journal)
    assert ep.conversation_ids == (kept, other)
    assert ep.conversations[0] == (
        {"role": "user", "content": "My dog is called Biscuit."},
        {"role": "assistant", "content": "Second answer, the one that counts."},
        {"role": "user", "content": "He is three years old."},
    )
    assert ep.conversations[1][0]["content"] == "I live in Porto now."
    assert len(ep.dates) == 2 and all(len(d) == 10 and d[4] == "-" for d in ep.dates)
    text = ep.history()
    for absent in ("replaced", "Stopped half", "4471", "Later private", "Learned last night",
                   "Forget me"):
        assert absent not in text
    assert ep.statements() == ["My dog is called Biscuit.", "He is three years old.",
                               "I live in Porto now."]
    assert private not in ep.conversation_ids


def test_from_journal_with_nothing_pending_is_empty(journal):
    assert Episode.from_journal(journal).empty
    journal.log_conversation([{"role": "user", "content": "Only private things here."}],
                             private=True)
    assert Episode.from_journal(journal).empty


# -- questions written as lists, answers cut to the sentence that states the fact ----------

class WordIO:
    """A stand-in tokenizer: one token per word (with its following space)."""

    def __init__(self, text: str):
        self.words = [w + " " for w in text.split()]

    def decode(self, ids):
        return "".join(self.words[i] for i in ids)


def answer_of(io: WordIO, end_token=None) -> Generated:
    n = len(io.words) + (end_token is not None)
    ids = np.arange(n * 2, dtype=np.int32).reshape(n, 2)
    return Generated(list(range(len(io.words))), end_token, ids,
                     -np.arange(n * 2, dtype=np.float32).reshape(n, 2))


def test_an_answer_is_cut_after_the_sentence_that_states_the_fact():
    from pocketsleep.sleep.selfstudy import through_sentence_stating

    io = WordIO("Your dog is Biscuit, a lovely beagle. He is ten years old and a rescue.")
    cut = through_sentence_stating(io, answer_of(io, end_token=99), {"biscuit"})
    assert io.decode(cut.tokens).strip() == "Your dog is Biscuit, a lovely beagle."
    # Cut tokens lose their end token and keep their own top-k rows.
    assert cut.end_token is None and cut.answer_ids == cut.tokens
    assert cut.topk_ids.shape == (7, 2) and (cut.topk_ids == answer_of(io).topk_ids[:7]).all()
    assert (cut.topk_logprobs == answer_of(io).topk_logprobs[:7]).all()
    # The fact in the second sentence: both sentences are kept, and no more.
    io = WordIO("I remember. You run with Tomasz! Every Saturday, at dawn.")
    cut = through_sentence_stating(io, answer_of(io), {"tomasz"})
    assert io.decode(cut.tokens).strip() == "I remember. You run with Tomasz!"


def test_an_answer_is_kept_whole_when_there_is_nothing_to_cut():
    from pocketsleep.sleep.selfstudy import through_sentence_stating

    for text, words in [("Your dog is called Biscuit.", {"biscuit"}),  # ends there
                        ("He is a beagle named Biscuit and he", {"biscuit"}),  # no end
                        ("I do not know. Sorry.", {"biscuit"})]:  # never says it
        io = WordIO(text)
        whole = answer_of(io, end_token=7)
        assert through_sentence_stating(io, whole, words) is whole


class ScriptedWriter:
    """ModelIO for the question writers: the 'model' completes each prompt with the
    next scripted text."""

    def __init__(self, completions: list[str]):
        self.completions = completions
        self.eos_ids = {0}
        self.model = None
        self.prompts: list[str] = []

    def text_ids(self, text):
        self.prompts.append(text)
        return [len(self.prompts) - 1]

    def decode(self, ids):
        return ids[0]


def test_question_lists_are_split_filtered_and_kept_once(monkeypatch):
    from pocketsleep.sleep import questions

    statements = ["My dog is a beagle named Biscuit.", "I work as a nurse at night."]
    io = ScriptedWriter([
        "What kind of dog is Biscuit? What breed is my dog? What is my dog's name?",
        " What breed is my dog?  Where is my dog from? what?",
        "What do you eat? What is my job? When do I work?",
        "Is the hospital big? What is my job?"])
    seen = {}

    def fake_generate(model, prompts_, stop, max_tokens, temps, top_k, seed):
        seen.update(temps=temps, prompts=[io.prompts[p[0]] for p in prompts_])
        return [Generated([text], None, None, None) for text in io.completions]

    monkeypatch.setattr(questions, "generate_batch", fake_generate)
    found = questions.write_question_lists(io, statements, n=2, seed=0)
    # Not about the user ("What kind of dog is Biscuit?", "What do you eat?"), not a
    # question ("what?"), or asked already: dropped.
    assert found == [["What breed is my dog?", "What is my dog's name?",
                      "Where is my dog from?"],
                     ["What is my job?", "When do I work?"]]
    # One greedy and one sampled completion per statement, from the list prompt.
    assert seen["temps"] == [0.0, 0.8, 0.0, 0.8]
    assert [statements[0] in p for p in seen["prompts"]] == [True, True, False, False]
    assert all(p.startswith(prompts.QUESTION_LIST_WRITER.split("{")[0]) for p in seen["prompts"])


class ScriptedTeacher:
    """A teacher whose answers are scripted texts, one per question asked, in turn."""

    def __init__(self, replies: list[str]):
        self.replies = iter(replies)
        self.calls: list[tuple[list, list]] = []
        self.seeds: list[int] = []

    def answer_many(self, conversations, temperatures, seed, starts=None, processors=None):
        self.calls.append((conversations, temperatures))
        self.seeds.append(seed)
        return [Generated([next(self.replies)], None, None, None) for _ in conversations]


def test_retries_ask_again_only_the_questions_with_no_usable_answer():
    from pocketsleep.sleep import selfstudy

    conversation = [{"role": "user", "content": "I bought a green Honda Jazz today."},
                    {"role": "assistant", "content": "Nice car!"},
                    {"role": "user", "content": "I run with my neighbour Tomasz on Saturdays."},
                    {"role": "assistant", "content": "Running with Tomasz sounds fun."}]
    car, runner = episode_of(conversation).exchanges()
    io = ScriptedWriter([])
    written = [["What car do I drive?"], ["Who do I run with?", "When do I run?"]]
    found = [Example("statement", "What car do I drive?", [], None, car.statement),
             Example("statement", "When do I run?", [], None, runner.statement)]
    teacher = ScriptedTeacher(["You run with Kiera.", "You run with Tomasz.",
                               "User: Tomasz", "Your neighbour Tomasz!"])
    options = SleepOptions(answer_retries=4, retry_temperature=0.9)
    kept = selfstudy.retried_examples(io, teacher, options, [car, runner], written, found, 0)
    # Only "Who do I run with?" had no grounded answer: four samples, from the two
    # views in turn, at the retry temperature; the grounded, non-transcript ones kept.
    (asked, temps), = teacher.calls
    assert asked == selfstudy.teacher_views(runner, "Who do I run with?") * 2
    assert temps == [0.9] * 4
    assert teacher.seeds != [0]  # not the first answers' draws again
    assert [e.answer.tokens[0] for e in kept] == ["You run with Tomasz.", "Your neighbour Tomasz!"]
    assert all(e.kind == "statement" and e.question == "Who do I run with?"
               and e.statement == runner.statement for e in kept)
    assert [e.teacher_messages for e in kept] == [asked[1], asked[3]]
    # Off, or nothing to retry: the teacher is not asked at all.
    idle = ScriptedTeacher([])
    assert selfstudy.retried_examples(io, idle, SleepOptions(), [car, runner], written, [], 0) == []
    everything = found + [Example("statement", "Who do I run with?", [], None, runner.statement)]
    assert selfstudy.retried_examples(io, idle, options, [car, runner], written, everything, 0) == []
    assert idle.calls == []


def test_fact_token_weights_mark_the_tokens_that_spell_what_the_user_said():
    from pocketsleep.sleep.selfstudy import fact_token_weights

    io = WordIO("You run with Tomasz on Saturdays, Kiera says.")
    statement = "I run with my neighbour Tomasz on Saturdays."
    example = Example("statement", "Who do I run with?", [], answer_of(io, end_token=9),
                      statement)
    # "run" is in the question, "Kiera" not in the statement: only the two facts,
    # three times the rest, the whole averaging 1.
    weights = fact_token_weights(io, example, 3.0, negations=True)
    assert (weights / weights.min()).tolist() == pytest.approx([1, 1, 1, 3, 1, 3, 1, 1, 1])
    assert weights.mean() == pytest.approx(1.0)
    assert fact_token_weights(io, example, 1.0, negations=True).tolist() == [1] * 9
    anchor = Example("anchor", "Who do I run with?", [], answer_of(io), None)
    assert fact_token_weights(io, anchor, 3.0, negations=True).tolist() == [1] * 8


class PiecesIO(WordIO):
    """A stand-in tokenizer with the given pieces, as a real one splits words."""

    def __init__(self, pieces: list[str]):
        self.words = pieces


def test_fact_token_weights_follow_words_split_across_tokens_and_case_changes():
    from pocketsleep.sleep.selfstudy import fact_token_weights

    # "İ" lowercases to two characters: spans found in the lowercase text would land
    # one character late, on the full stop.
    io = PiecesIO(["İ", " see:", " you", " run", " with", " Tom", "asz", "."])
    example = Example("statement", "Who do I run with?", [], answer_of(io),
                      "I run with my neighbour Tomasz on Saturdays.")
    weights = fact_token_weights(io, example, 2.0, negations=True)
    assert (weights / weights.min()).tolist() == pytest.approx([1, 1, 1, 1, 1, 2, 2, 1])


def test_a_forced_start_goes_before_statement_answers_only_as_distinct_one_hot_targets():
    from pocketsleep.sleep.selfstudy import answer_starts, begun_with

    io = ScriptedWriter([])
    io.text_ids = lambda text: [7, 3] if text == "You told me" else []
    meta = [("statement", "Who do I run with?", "I run with Tomasz."),
            ("recall", "What did I tell you recently?", "I run with Tomasz.")]
    assert answer_starts(io, SleepOptions(answer_start="You told me"), meta) == [[7, 3], []]
    assert answer_starts(io, SleepOptions(), meta) is None  # off: the teacher's own start
    answer = Generated([5], 9, np.array([[5, 1, 2], [9, 4, 6]], np.int32),
                       np.array([[-0.1, -2.5, -3], [-0.2, -2, -4]], np.float32))
    begun = begun_with([7, 3], answer)
    assert begun.answer_ids == [7, 3, 5, 9]
    # Each start token is certain, the others in its row impossible and all distinct
    # (the objective sums the student's mass over a row); the teacher's rows follow.
    assert [row[0] for row in begun.topk_ids[:2]] == [7, 3]
    assert all(len(set(row)) == 3 for row in begun.topk_ids)
    assert (begun.topk_logprobs[:2, 0] == 0).all() and (begun.topk_logprobs[:2, 1:] < -1e8).all()
    assert (begun.topk_ids[2:] == answer.topk_ids).all()
    assert (begun.topk_logprobs[2:] == answer.topk_logprobs).all()
    assert begun_with([], answer) is answer


def test_rewordings_train_each_question_again_in_new_words_with_rescored_answers(monkeypatch):
    from pocketsleep.sleep import questions, selfstudy

    street, job = "My new address will be on Clover Street.", "I got a new job in Leeds."
    view = [{"role": "user", "content": street}, {"role": "assistant", "content": "Great!"}]

    def asked(question, statement, tokens):
        answer = Generated(tokens, 9, np.zeros((len(tokens) + 1, 2), np.int32),
                           np.zeros((len(tokens) + 1, 2), np.float32))
        return Example("statement", question, [*view, {"role": "user", "content": question}],
                       answer, statement)

    train = [asked("What is my new address?", street, [1]),
             asked("What is my new address?", street, [2, 3]),
             asked("Where do I work?", job, [4]),
             example("anchor", "What is the capital of Italy?")]
    heldout = [asked("Where will I live?", street, [5])]
    io = ScriptedWriter([
        "What street will I live on?", "Where will I live?", "Which road is my home on?",
        " Where is my job?", "What street will I live on?", "What is the capital of Italy?"])
    seen = {}

    def fake_generate(model, prompts_, stop, max_tokens, temps, top_k, seed):
        seen.update(temps=temps, prompts=[io.prompts[p[0]] for p in prompts_])
        return [Generated([text], None, None, None) for text in io.completions]

    scored = []

    def fake_forced(io_, messages, answer, top_k, teacher_):
        assert teacher_ is teacher
        scored.append((messages, answer))
        return Generated(list(answer), None, np.full((len(answer), top_k), 7, np.int32),
                         np.full((len(answer), top_k), -1.0, np.float32))

    monkeypatch.setattr(questions, "generate_batch", fake_generate)
    monkeypatch.setattr(selfstudy, "forced_answer", fake_forced)
    teacher = object()
    out = selfstudy.reworded_examples(io, teacher, train, heldout,
                                      SleepOptions(question_rewordings=2), 0)
    # Two rewordings of each statement question, greedy then sampled, from the
    # statement and the question; a held-out question, a rewording found already and
    # a question not about the user are never kept.
    assert seen["temps"] == [0.0, 0.8, 0.8] * 2
    assert all(street in p and "What is my new address?" in p for p in seen["prompts"][:3])
    assert [e.question for e in out] == ["What street will I live on?",
                                         "Which road is my home on?", "Where is my job?"]
    # Each rewording takes its question's answers in turn, with the end token, the
    # targets re-scored by the teacher with the rewording in the question's place.
    assert [e.answer.tokens for e in out] == [[1], [2, 3], [4]]
    assert [e.answer.end_token for e in out] == [9, 9, 9]
    assert [answer for _, answer in scored] == [[1, 9], [2, 3, 9], [4, 9]]
    assert [m for m, _ in scored] == [e.teacher_messages for e in out]
    assert out[0].teacher_messages == [
        *view, {"role": "user", "content": "What street will I live on?"}]
    assert all((e.answer.topk_ids == 7).all() and e.kind == "statement" for e in out)
    assert [e.statement for e in out] == [street, street, job]
    assert out[0].student_messages == prompts.closed_book("What street will I live on?")
    # Off by default: nothing written, nothing scored.
    assert selfstudy.reworded_examples(io, teacher, train, heldout, SleepOptions(), 0) == []


# -- questions about each sentence (SleepOptions.sentence_questions) ---------------------

def test_told_sentences_are_a_messages_sentences_about_the_user():
    from pocketsleep.sleep.questions import told_sentences

    assert told_sentences("I'm training for a half marathon in May. My best 10k time is "
                          "52 minutes.") == ["I'm training for a half marathon in May.",
                                             "My best 10k time is 52 minutes."]
    # Not a question, not about someone else alone, not a sentence with nothing in it.
    assert told_sentences("Four days. Can you plan my runs? She lives in Rotterdam. "
                          "I run with my neighbour Tomasz on Saturdays.") == [
        "I run with my neighbour Tomasz on Saturdays."]
    # One sentence: the message's own questions are its questions.
    assert told_sentences("My car is a green 2014 Honda Jazz and its service is in June.") == []
    assert told_sentences("") == []


def test_sentence_questions_ask_each_sentence_what_its_message_questions_lack(monkeypatch):
    from pocketsleep.sleep import questions

    conversation = [
        {"role": "user", "content": "I'm training for a half marathon. My best 10k time is 52 minutes."},
        {"role": "assistant", "content": "A solid base."},
        {"role": "user", "content": "My car is a green Honda Jazz."}]
    race, car = episode_of(conversation).exchanges()
    asked = {}

    def write_questions(io, statements, n, seed):
        asked.update(statements=statements, n=n)
        return [["What race am I training for?", "What am I training for?"],
                ["What is my best 10k time?"]][:len(statements)]

    monkeypatch.setattr(questions, "write_questions", write_questions)
    written = [["What race am I training for?"], ["What car do I drive?"]]
    statements = [race.statement, car.statement]
    found = questions.write_sentence_questions(None, statements, written, n=2, seed=0)
    # Only the message of two sentences; each sentence is the questions' source, and a
    # question its message already asks is not asked again.
    assert asked == {"statements": ["I'm training for a half marathon.",
                                    "My best 10k time is 52 minutes."], "n": 2}
    assert found == [(0, ["What am I training for?"], "I'm training for a half marathon."),
                     (0, ["What is my best 10k time?"], "My best 10k time is 52 minutes.")]
    assert questions.write_sentence_questions(None, statements, written, n=0, seed=0) == []


def test_a_sentence_question_is_answered_from_its_exchange_quoting_and_grounded_in_its_sentence(
        monkeypatch):
    from pocketsleep.sleep import questions, selfstudy

    conversation = [
        {"role": "user", "content": "I'm training for a half marathon. My best 10k time is 52 minutes."},
        {"role": "assistant", "content": "A solid base."}]
    episode = episode_of(conversation)
    race, = episode.exchanges()
    monkeypatch.setattr(questions, "write_questions", lambda io, statements, n, seed: [
        ["What is my best 10k time?"] if s.startswith("My best") else [] for s in statements])
    monkeypatch.setattr(questions, "write_question_lists",
                        lambda io, statements, n, seed: [[] for _ in statements])
    quoted = {}
    monkeypatch.setattr(selfstudy, "quote_biases",
                        lambda io, options, meta: quoted.setdefault("meta", list(meta)) and None)
    monkeypatch.setattr(selfstudy, "answer_starts", lambda io, options, meta: None)
    # Grounded in the sentence: "52 minutes" is; "a half marathon" (the other
    # sentence) is not.
    teacher = ScriptedTeacher(["Your best 10k time is 52 minutes.", "A half marathon!"])
    options = SleepOptions(sentence_questions=1, answers_per_question=2,
                           quote_bias=3.0, answer_one_sentence=False)
    monkeypatch.setattr(prompts, "RECALL_PROMPTS", ())
    kept = selfstudy.episode_examples(ScriptedWriter([]), teacher, episode, options, seed=0)
    (views, temps), = teacher.calls
    # The whole exchange in view, as for its message's questions.
    assert views == [selfstudy.teacher_views(race, "What is my best 10k time?")[0]] * 2
    assert temps == [0.0, 0.7]
    assert quoted["meta"] == [("statement", "What is my best 10k time?",
                               "My best 10k time is 52 minutes.")] * 2
    assert [(e.question, e.answer.tokens[0], e.statement) for e in kept] == [
        ("What is my best 10k time?", "Your best 10k time is 52 minutes.",
         "My best 10k time is 52 minutes.")]
    # Its probes find their conversation by the sentence.
    assert episode.conversation_of("My best 10k time is 52 minutes.") == 1
    assert episode.conversation_of(race.statement) == 1
    assert episode.conversation_of("My dog is called Rex.") is None


def test_rule_questions_are_asked_of_their_sentence_unless_already_written(monkeypatch):
    from pocketsleep.sleep import question_rules, questions, selfstudy

    conversation = [
        {"role": "user", "content": "My sister Elena is visiting next month."},
        {"role": "assistant", "content": "How lovely."},
        {"role": "user", "content": "She lives in Rotterdam. I'm knitting her a scarf."},
        {"role": "assistant", "content": "A warm gift."}]
    episode = episode_of(conversation)
    visit, gift = episode.exchanges()
    written = [["What is my sister's name?"], []]
    # The sister is named in the earlier message; the written question is not asked twice.
    assert question_rules.by_sentence(question_rules.ruled_questions([visit, gift], written)) == [
        (gift, ["Where does my sister live?"], "She lives in Rotterdam."),
        (gift, ["What am I knitting?"], "I'm knitting her a scarf.")]

    monkeypatch.setattr(questions, "write_questions",
                        lambda io, statements, n, seed: [[] for _ in statements])
    monkeypatch.setattr(questions, "write_question_lists",
                        lambda io, statements, n, seed: [[] for _ in statements])
    quoted = {}
    monkeypatch.setattr(selfstudy, "quote_biases",
                        lambda io, options, meta: quoted.update(meta=list(meta)))
    monkeypatch.setattr(selfstudy, "answer_starts", lambda io, options, meta: None)
    monkeypatch.setattr(prompts, "RECALL_PROMPTS", ())
    options = SleepOptions(answers_per_question=1, answer_one_sentence=False)
    teacher = ScriptedTeacher(["Your sister is Elena.", "Your sister lives in Rotterdam.",
                               "A scarf for your sister."])
    # Off by default: nothing written, nothing asked.
    assert selfstudy.episode_examples(ScriptedWriter([]), teacher, episode, options, 0) == []
    kept = selfstudy.episode_examples(ScriptedWriter([]), teacher, episode,
                                      options.but(rule_questions=True), 0)
    assert quoted["meta"] == [
        ("statement", "What is my sister's name?", "My sister Elena is visiting next month."),
        ("statement", "Where does my sister live?", "She lives in Rotterdam."),
        ("statement", "What am I knitting?", "I'm knitting her a scarf.")]
    # Each answer must be grounded in its sentence.
    assert [(e.question, e.answer.tokens[0]) for e in kept] == [
        ("What is my sister's name?", "Your sister is Elena."),
        ("Where does my sister live?", "Your sister lives in Rotterdam."),
        ("What am I knitting?", "A scarf for your sister.")]
