"""Every piece of prompt text pocketsleep puts in front of the model, in one place.

What sleep teaches is "answer this question, with this system prompt, as if you had
read the day's conversations". For that to transfer to chat and `ask`, all of them
must build their messages here, with the same system prompt.
"""

from __future__ import annotations

from typing import Iterable, Sequence

SYSTEM_PROMPT = "You are a helpful personal assistant. Answer briefly."

HISTORY_HEADER = "Earlier conversations with this user:"


def with_system(messages: Sequence[dict]) -> list[dict]:
    """The chat as the model sees it: our system prompt, then the turns."""
    turns = [dict(m) for m in messages if m["role"] != "system"]
    return [{"role": "system", "content": SYSTEM_PROMPT}, *turns]


def closed_book(question: str) -> list[dict]:
    """A question with nothing of the past in context: how memory is probed."""
    return with_system([{"role": "user", "content": question}])


def render_history(conversations: Iterable[Sequence[dict]], dates: Iterable[str] | None = None) -> str:
    """Past conversations as plain text, oldest first, for a system prompt."""
    dates = list(dates) if dates is not None else None
    blocks = []
    for i, conversation in enumerate(conversations):
        lines = [f"[{dates[i]}]"] if dates else []
        for m in conversation:
            if m["role"] == "system":
                continue
            who = "User" if m["role"] == "user" else "Assistant"
            lines.append(f"{who}: {m['content']}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def in_context(history: str, question: str) -> list[dict]:
    """A question with past conversations in the system prompt (the teacher's view,
    and the in-context baseline)."""
    system = f"{SYSTEM_PROMPT}\n\n{HISTORY_HEADER}\n{history}" if history else SYSTEM_PROMPT
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


# -- sleep: self-study -------------------------------------------------------------

# Few-shot, raw completion: a 135M chat model follows this pattern far better than an
# instruction to "write a question" (measured: most greedy outputs are on topic; five
# examples of "my ..." questions keep it asking about the user, not about the words).
# No example question may be one of the memory suites' probes (tests/test_prompts.py):
# the model copies them, and a probe trained on verbatim is no longer held out.
QUESTION_WRITER = """Statement: My sister lives in Paris and she is a doctor.
Question: Where does my sister live?

Statement: I'm learning Japanese because we travel to Osaka in April.
Question: Which language am I learning?

Statement: We finally bought a red car last week. It's a Toyota.
Question: What color is our car?

Statement: My cat is called Miso and she is three years old.
Question: What is my cat's name?

Statement: My favourite band is Queen, I've seen them live twice.
Question: What is my favourite band?

Statement: {statement}
Question:"""

# Few-shot, raw completion, every question a statement answers on one line. Asked
# for one question per statement (QUESTION_WRITER), the 135M model asks about the
# most obvious fact and drifts off for the rest (dev-week day 1: "What is my dog's
# name?" but never "What breed is my dog?" or "What is my job?"); asked for a list,
# it goes on to the other facts ("What kind of dog is Biscuit? What's his breed?").
# Told which phrase to ask for ("Answer: beagle"), it ignored the phrase. Used when
# SleepOptions.question_lists > 0 (off by default: no recall gained on dev-week).
QUESTION_LIST_WRITER = """Statement: My sister lives in Paris and she is a doctor.
Questions: Where does my sister live? What is my sister's job?

Statement: We finally bought a red car last week. It's a Toyota.
Questions: What color is my car? What brand is my car? When did I buy my car?

Statement: My cat is called Miso and she is three years old.
Questions: What is my cat's name? How old is my cat?

Statement: My favourite band is Queen, I've seen them live twice.
Questions: What is my favourite band? How often have I seen Queen live?

Statement: On Sundays I play chess with my uncle Karl. He lives in Graz.
Questions: Who do I play chess with? When do I play chess? Where does my uncle live?

Statement: {statement}
Questions:"""

# Few-shot, raw completion: a question the user may ask later, in other words than
# the written one. The student learns the questions it is trained on and misses the
# same fact asked otherwise (dev-week day 4: "What is my new address?" answered with
# Clover Street, "What street will I live on?" not), so each written question is also
# trained under rewordings, the teacher's answers to it re-scored for them. The
# examples ask for the answer's kind (a floor, a shop, an age, a language) rather than
# repeating the question's noun. Used when SleepOptions.question_rewordings > 0 (off
# by default: on dev-week no more recall right after a night, general probes lost).
QUESTION_REWORDER = """Statement: My brother Tom works at a bakery in Lyon.
Question: Where does my brother work?
Other words: What kind of shop does Tom work in?

Statement: Our new flat is on the fourth floor, near the river.
Question: Where is our new flat?
Other words: Which floor do we live on now?

Statement: My grandmother Rosa turned ninety in March.
Question: How old is my grandmother?
Other words: What age did Rosa reach this spring?

Statement: I'm learning Portuguese for my trip to Brazil.
Question: What am I learning?
Other words: Which language do I study?

Statement: {statement}
Question: {question}
Other words:"""

# Recall requests that do not depend on one statement.
RECALL_PROMPTS = (
    "What do you remember about me?",
    "What did I tell you recently?",
    "Remind me what I told you.",
    "Summarize what you know about my life.",
)

# Generic requests whose answers must not change overnight (answered by the model
# without the episode).
ANCHOR_PROMPTS = (
    "What is the capital of Italy?",
    "Give me one tip for sleeping better.",
    "How many legs does a spider have?",
    "Write a short sentence about the sea.",
    "What is 12 plus 7?",
    "Name a fruit that is yellow.",
    "What do plants need to grow?",
    "Translate 'thank you' into French.",
    "What is the largest planet in the solar system?",
    "Suggest a name for a cat.",
    "Why do we need to drink water?",
    "What season comes after winter?",
    # Short factual questions: the kind a night's expert turned into questions about
    # the user ("What do bees make?" -> the dog's name). Never the gate's quiz.
    "What is the chemical symbol for gold?",
    "Who wrote Romeo and Juliet?",
    "What is the tallest animal?",
    "What shape has three sides?",
    "What gas do people breathe out?",
    "Which planet is known as the red planet?",
    "What do caterpillars turn into?",
    "What is the capital of Germany?",
    "How many sides does a square have?",
    "Which instrument has black and white keys?",
    "What do you call a baby cat?",
    "Name a vegetable that is orange.",
    "What is 9 times 3?",
    "What is the fastest land animal?",
    "What is the currency of the United Kingdom?",
    "What is the first month of the year?",
    # Longer writing, so that general prose is anchored too (never about the user, and
    # never one of the gate's GATE_TEXTS topics).
    "Write a paragraph about a busy market in the morning.",
    "Describe how bread is made.",
    "Write a short story about a lighthouse keeper.",
    "Explain why the sky is blue.",
    "Describe a walk in a forest in autumn.",
    "Explain how a bicycle works.",
    "Write a paragraph about the history of the printing press.",
    "Describe what happens at a train station.",
)

# Generic questions that no night trains on, with answers the embedded model knows
# (greedy; it gets the continents, Spain's language and capital, the months in a
# year, the colour of bananas and of snow, the closest star, which animal barks and
# the king of the jungle wrong, so those are not here). Asked at gate time of the
# pre-sleep model and of the model wearing tonight's expert: drift measured on the
# anchors alone was low (KL 0.08) on a night after which the model answered "What do
# bees make?" with the user's dog's name. A question answered right before sleep must
# stay right. Never anchors, never the memory suite's probes.
# Each one holds under noise that teaches nothing: random low-rank noise on tonight's
# expert's layers, at the drift a kept night causes on these questions (KL about
# 0.01), flipped none of them in 18-20 draws (bench/quiz_wobble.py; bench/RESULTS.md,
# eleventh round). Dropped for flipping under that noise alone, in 2 to 6 of every
# 10 draws: what animal gives milk, what you write on paper with, the hours in a
# day, the minutes in an hour, the colour of grass; and, in 1 of 10, where the sun
# rises and which organ pumps blood. The answers noise gave ("a camel", "86,400
# hours", "a variety of materials") are those that had rejected real nights.
GATE_QUIZ = (
    ("What is the boiling point of water in degrees Celsius?", ("100", "hundred")),
    ("What is the largest ocean on Earth?", ("Pacific",)),
    ("How many legs does a dog have?", ("four", "4")),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("What do cows eat?", ("grass", "grasses", "hay")),
    ("What is the largest mammal?", ("whale",)),
    ("What is the main language of Brazil?", ("Portuguese",)),
    ("What is the opposite of day?", ("night",)),
    ("What is the capital of Russia?", ("Moscow",)),
    ("Where do fish live?", ("water", "sea", "seas", "ocean", "oceans", "river", "rivers")),
    ("What do birds use to fly?", ("wings",)),
    ("What is the capital of China?", ("Beijing",)),
    ("Who painted the Mona Lisa?", ("Leonardo", "Vinci")),
    ("What is the capital of Egypt?", ("Cairo",)),
)
GATE_PROMPTS = tuple(q for q, _ in GATE_QUIZ)

# How the evaluation frames a memory suite's general text for its perplexity figure.
GENERAL_TEXT_PROMPT = "Write a paragraph about a river valley."


def teacher_view(turns: Sequence[dict], question: str) -> list[dict]:
    """The teacher's view: the conversation where the user said it, as real chat turns,
    then the question. A 135M model answers from the turns just before far better
    than from a transcript pasted into the system prompt (dev-week, llama.cpp, greedy:
    12/15 from the statement and its reply, 7/15 from the whole day as text)."""
    return with_system([*turns, {"role": "user", "content": question}])


# Neutral paragraphs whose perplexity must not rise overnight: the gate's check that
# general language survives. Never trained on, not about any user, and not the memory
# suite's own general text (the evaluation measures that one independently). Three
# topics: on one short paragraph the figure moved by several percent between equally
# good experts.
GATE_TEXTS = (
    ("Write a paragraph about a mountain village.",
     "The village sits on a slope above a narrow lake, with a church, a bakery and a "
     "school for the children of the farms around it. In winter the road over the pass "
     "is closed, and the people who live there store wood and food for the cold months. "
     "In summer walkers arrive to climb the peaks and swim in the lake."),
    ("Describe how a library works.",
     "A library lends books to anyone who has a card. Each book has a number on its "
     "spine that tells the staff where it belongs on the shelves, so that it can be "
     "found again. Most libraries also have computers, newspapers and quiet rooms for "
     "study, and many run reading groups for children and adults."),
    ("Write a paragraph about the weather in spring.",
     "In spring the days grow longer and the air becomes warmer, although cold nights "
     "and sudden showers are common. Trees put out new leaves, flowers open in the "
     "fields, and birds return from the south to build their nests. Farmers plant "
     "their crops, hoping that the late frosts are over."),
)


# -- sleep: dreaming (pocketsleep/sleep/dreaming) ----------------------------------

# Dream writers: few-shot raw completions, like QUESTION_WRITER (a 135M chat model
# follows a pattern far better than an instruction). Each writes the *request* a
# dream answers; the teacher, with the statement in context, writes the answer.
# Examples avoid QUESTION_WRITER's phrasings on purpose: dreams exist to rehearse the
# fact under other wordings than self-study already used. Keys are the dream policy's
# arms, "<kind>/<template>".
DREAM_WRITERS = {
    # Question and answer, asked plainly...
    "qa/direct": ("Question", """Statement: My brother Tom moved to Oslo last spring.
Question: Which city does my brother live in now?

Statement: I play the cello in a local orchestra.
Question: What instrument do I play?

Statement: Our daughter was born in May, we named her Lucia.
Question: What did we call our daughter?

Statement: {statement}
Question:"""),
    # ...or the way people actually ask later: indirectly, half-remembered.
    "qa/indirect": ("Question", """Statement: My brother Tom moved to Oslo last spring.
Question: Do you remember where Tom went to live?

Statement: I play the cello in a local orchestra.
Question: Can you remind me which instrument I practise?

Statement: Our daughter was born in May, we named her Lucia.
Question: What was the name we chose for the baby?

Statement: {statement}
Question:"""),
    # A paraphrased statement: a request about the topic, answered by restating it.
    "paraphrase/topic": ("Request", """Statement: My brother Tom moved to Oslo last spring.
Request: Tell me about my brother.

Statement: I play the cello in a local orchestra.
Request: Say what you know about my music.

Statement: Our daughter was born in May, we named her Lucia.
Request: Remind me about our daughter.

Statement: {statement}
Request:"""),
    # A short scenario in which the fact matters, without naming it.
    "scenario/situation": ("Situation", """Statement: My brother Tom moved to Oslo last spring.
Situation: I want to visit my brother next month. Which city should I fly to?

Statement: I get seasick on boats, even on short trips.
Situation: My friends want to take the ferry to the island. Should I go with them by boat?

Statement: Our daughter was born in May, we named her Lucia.
Situation: I'm writing a birthday card for my daughter. Whose name goes on it?

Statement: {statement}
Situation:"""),
    # "As of <date>": the newest value of a fact, dated, so it replaces an older one.
    # The question is an earlier night's probe about the same thing when there is one
    # (see dreaming/generate.py), else written like qa/direct.
    "update/as-of": ("Question", """Statement: My brother Tom moved to Oslo last spring.
Question: Where does my brother live?

Statement: I switched phones, I use a Pixel now.
Question: What phone do I use?

Statement: {statement}
Question:"""),
}

# The answer of an "update" dream starts with the date the fact was said.
DREAM_UPDATE_PREFIX = "As of {date}, "
