"""`pocketsleep export`: the personal model as GGUF, for llama.cpp and all built on it.

--gguf FILE writes the base model with every active expert fused in; --lora DIR
writes each active expert as a GGUF LoRA adapter for the base GGUF (and, when the
base is a GGUF, also as `adapter.gguf` in the expert's folder, for the llama.cpp
engine). Nothing is written unless everything needed has been read and checked.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError
from ..faults import checkpoint
from .context import CliContext


@click.command("export")
@click.option("--gguf", "gguf_out", type=click.Path(path_type=Path), metavar="FILE",
              help="Write the personal model (base + active experts, fused) to FILE.")
@click.option("--quant", type=click.Choice(["f16", "q8_0", "f32"]), default="f16",
              show_default=True, help="Weight format of --gguf.")
@click.option("--lora", "lora_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Write each active expert as a GGUF LoRA adapter into DIR.")
@click.option("--model", "-m", help="Base model: default, a .gguf file, an MLX folder or a hub id.")
@click.option("--no-experts", is_flag=True, help="Export the base model alone.")
@click.option("--force", is_flag=True, help="Replace files that already exist.")
@click.pass_obj
def command(obj: CliContext, gguf_out: Path | None, quant: str, lora_dir: Path | None,
            model: str | None, no_experts: bool, force: bool) -> None:
    """Export the personal model to GGUF (llama.cpp, llama-cpp-python, ...)."""
    if gguf_out is None and lora_dir is None:
        raise click.UsageError("give --gguf FILE, --lora DIR, or both")
    from ..backends.gguf_export import export_gguf
    from ..backends.gguf_lora import write_expert_gguf, write_lora_gguf
    from ..backends.gguf_source import open_source
    from ..backends.gguf_write import human_size
    from ..models import resolve_model

    resolved = resolve_model(model or obj.config.model, obj.paths)
    experts = [] if no_experts else _active_experts(obj)
    if lora_dir is not None and not experts:
        raise InputError("there are no active experts to export as LoRA adapters "
                         "(sleep adds them); --gguf alone exports the base model")
    adapters = [(folder, (lora_dir or Path()) / f"expert-{row['id']}-{row['level']}.gguf")
                for row, folder in experts]
    if gguf_out is not None and gguf_out.is_dir():  # before "already exists": --force won't help
        raise InputError(f"{gguf_out}: is a folder; give the path of the .gguf file to write")
    targets = ([gguf_out] if gguf_out else []) + ([a for _, a in adapters] if lora_dir else [])
    for target in targets:
        if target.exists() and not force:
            raise InputError(f"{target}: already exists; pass --force to replace it")
    source = open_source(resolved.path)

    if gguf_out is not None:
        result = export_gguf(source, gguf_out, quant, [f for _, f in experts], overwrite=force)
        what = (f"base + {result.experts} expert{'s' * (result.experts != 1)} fused"
                if result.experts else "base model, no experts")
        click.echo(f"wrote {result.path} ({quant}, {human_size(result.size)}, {what}) "
                   f"in {result.seconds:.1f} s")
    if lora_dir is not None:
        if lora_dir.exists() and not lora_dir.is_dir():
            raise InputError(f"{lora_dir}: is a file; --lora needs a folder")
        for folder, out in adapters:
            size = write_lora_gguf(folder, out, source, overwrite=force)
            if resolved.format == "gguf":
                write_expert_gguf(folder, source)  # what the llama.cpp engine attaches
            click.echo(f"wrote {out} (LoRA adapter, {human_size(size)})")
            checkpoint("export.adapter_written")
        base = (str(resolved.path) if resolved.format == "gguf"
                else "BASE.gguf (from: pocketsleep export --gguf BASE.gguf --no-experts)")
        click.echo(f"use on top of the base model: llama-cli -m {base} --lora FILE")


def _active_experts(obj: CliContext) -> list[tuple[dict, Path]]:
    """(journal row, folder) of each active expert, oldest first; folders must exist."""
    out = []
    for row in obj.journal.active_experts():
        folder = obj.paths.expert_folder(row["path"])
        if not folder.is_dir():
            raise InputError(f"active expert {row['id']} is missing ({folder}); restore the "
                             "data home from a backup, or export with --no-experts")
        out.append((row, folder))
    return out
