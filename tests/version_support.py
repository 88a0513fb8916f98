"""Shared pieces of the personal-model version tests: a data home whose model is a
tiny random GGUF, and "nights" that each add a random, non-zero expert exactly as
sleep writes one (MLX adapter + GGUF LoRA, recorded by journal.accept_expert)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from sleep_support import tiny_model

from pocketsleep.backends.base import GenerationOptions
from pocketsleep.config import Config, Paths
from pocketsleep.prompts import closed_book

KEYS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
QUESTIONS = ("Where does my sister live?", "What is my dog called?")
GREEDY = GenerationOptions(max_tokens=16)


@dataclass
class TinyHome:
    paths: Paths
    config: Config
    gguf: Path

    def __post_init__(self):
        from pocketsleep.backends.gguf_import import load_gguf

        self.model, self.tokenizer = load_gguf(self.gguf)

    def with_config(self, **changes) -> "TinyHome":
        self.config = dataclasses.replace(self.config, **changes)
        return self

    def write_expert(self, name: str, seed: int, size: float = 0.05) -> Path:
        """A random non-zero expert on both blocks (B is normally zero-initialised)."""
        import mlx.core as mx

        from pocketsleep.backends import mlx_lora
        from pocketsleep.backends.gguf_lora import write_expert_gguf

        touched = mlx_lora.add_trainable_expert(self.model, 2, list(KEYS), rank=4, scale=2.0,
                                                seed=seed)
        modules = dict(self.model.named_modules())
        key = mx.random.key(seed)
        for name_ in touched:
            key, sub = mx.random.split(key)
            m = modules[name_]
            m.new_b = size * mx.random.normal(m.new_b.shape, key=sub)
        folder = self.paths.private_subdir(self.paths.experts) / name
        config = {"fine_tune_type": "lora", "num_layers": 2,
                  "lora_parameters": {"rank": 4, "scale": 2.0, "dropout": 0.0,
                                      "keys": list(KEYS)}}
        mlx_lora.save_trainable_expert(self.model, folder, config)
        mlx_lora.drop_trainable_expert(self.model)
        write_expert_gguf(folder, self.gguf)  # what the llama.cpp engine wears
        return folder

    def night(self, journal, title: str, seed: int, probes=()) -> int:
        """One successful sleep that learned one conversation; returns the expert id."""
        cid = journal.log_conversation(
            [{"role": "user", "content": f"My {title} is called Rex and lives in Lisbon."}],
            title=title)
        sid = journal.begin_sleep()
        name = f"night-{sid:04d}"
        self.write_expert(name, seed)
        return journal.accept_expert(sid, "nightly", name, {}, [cid], probes, {})


def make_home(paths: Paths, tmp_path: Path) -> TinyHome:
    gguf = tiny_model(tmp_path)  # context long enough for a sleep's teacher prompt
    paths.config_file.write_text(f'model = "{gguf}"\n')
    return TinyHome(paths, Config(model=str(gguf)), gguf)


def answers(home: TinyHome, engine: str) -> list:
    """What the personal model says, loaded as `ask` and chat load it: greedy
    closed-book answers (MLX), and the log-probability of every token of a fixed
    answer (both engines; llama-cpp-python's streaming can run far past max_tokens
    on a random model's broken UTF-8, so its greedy text is not used here)."""
    from pocketsleep.engines import open_engine

    llm = open_engine(home.paths, home.config, engine=engine)
    try:
        said = [llm.chat(closed_book(q), GREEDY) for q in QUESTIONS] if engine == "mlx" else []
        return said + [llm.score(closed_book(q), "Rex lives in Lisbon.") for q in QUESTIONS]
    finally:
        llm.close()
