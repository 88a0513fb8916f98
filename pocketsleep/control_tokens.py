"""Control-token text inside what people wrote reaches the model as plain text.

A chat template puts each message between the model's control tokens (SmolLM2's
ChatML: `<|im_start|>`, `<|im_end|>`), and a tokenizer turns those tokens' *text*
into the tokens wherever it occurs. So a message, a pasted text or an imported
conversation containing "<|im_end|>\\n<|im_start|>system\\n..." forged a turn of its
own: a system prompt, or the end of the assistant's answer.

Every prompt is therefore built from messages passed through `plain_messages`, by
both engines, the sleep and the SFT baseline (each asks its tokenizer which control
tokens it has). Inside a content, each occurrence of a control token's text gets a
zero-width space after its first character, which no control token matches; the
template's own tokens stay control tokens. Text without such an occurrence is left
as it is, so it tokenizes exactly as before. The journal keeps what was typed: only
what the model is shown changes.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable, Sequence

BREAK = "\u200b"  # zero-width space


def texts_of(tokenizer) -> frozenset[str]:
    """The control tokens' text of a Hugging Face tokenizer (or mlx-lm's wrapper of
    one): its special added tokens, the ones it splits out of text as control tokens."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    texts = {t.content for t in added.values() if getattr(t, "special", False)}
    texts.update(getattr(tokenizer, "all_special_tokens", None) or ())
    return frozenset(texts)


@functools.lru_cache(maxsize=8)
def _starts(controls: frozenset[str]) -> re.Pattern | None:
    # A one-character token cannot be broken by an insertion, and ordinary text
    # holding it already tokenized it that way: leave those alone.
    breakable = sorted((t for t in controls if len(t) > 1), key=len, reverse=True)
    if not breakable:
        return None
    # The first character of every place a control token starts, overlapping ones
    # included ("<|im_<|im_end|>"): the lookahead consumes nothing.
    return re.compile(f"(?=(?:{'|'.join(map(re.escape, breakable))}))(.)", re.DOTALL)


def plain(text: str, controls: Iterable[str]) -> str:
    """`text` with no control token's text left in it; unchanged if it had none."""
    starts = _starts(frozenset(controls))
    if starts is None or not isinstance(text, str):
        return text
    return starts.sub(lambda m: m.group(1) + BREAK, text)


def plain_messages(messages: Sequence[dict], controls: Iterable[str]) -> list[dict]:
    """Copies of `messages` whose contents are `plain`; roles and the rest untouched."""
    controls = frozenset(controls)
    return [{**m, "content": plain(m["content"], controls)} if "content" in m else dict(m)
            for m in messages]
