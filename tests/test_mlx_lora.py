"""Wearing several LoRA experts at once on a tiny random MLX model."""

import json

import pytest

mx = pytest.importorskip("mlx.core")
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from tiny_models import tiny_mlx_llama  # noqa: E402

from pocketsleep.backends import mlx_lora  # noqa: E402
from pocketsleep.errors import InputError  # noqa: E402

@pytest.fixture
def model():
    return tiny_mlx_llama()


def write_expert(folder, model, layers=(1,), rank=4, scale=2.0, seed=1):
    mx.random.seed(seed)
    weights = {}
    for i in layers:
        for proj in ("q_proj", "v_proj"):
            lin = getattr(model.layers[i].self_attn, proj)
            out_dims, in_dims = lin.weight.shape
            prefix = f"model.layers.{i}.self_attn.{proj}"
            weights[f"{prefix}.lora_a"] = mx.random.normal((in_dims, rank)) * 0.2
            weights[f"{prefix}.lora_b"] = mx.random.normal((rank, out_dims)) * 0.2
    folder.mkdir(parents=True)
    mx.save_safetensors(str(folder / "adapters.safetensors"), weights)
    (folder / "adapter_config.json").write_text(json.dumps({
        "num_layers": len(layers),
        "lora_parameters": {"rank": rank, "scale": scale, "dropout": 0.0},
    }))
    return weights


def logits(model):
    return model(mx.array([[1, 2, 3, 4, 5]]))


def test_attach_changes_output_exactly_as_the_lora_formula(model, tmp_path):
    base = logits(model)
    w = write_expert(tmp_path / "e1", model)
    assert mlx_lora.attach(model, tmp_path / "e1") == 2
    attached = logits(model)
    assert not mx.allclose(base, attached, atol=1e-4)

    # The same expert fused into the weights by hand gives the same logits.
    mlx_lora.detach_all(model)
    for key in [k for k in w if k.endswith("lora_a")]:
        name = key[: -len(".lora_a")]
        lin = dict(model.named_modules())[name]
        lin.weight = lin.weight + (2.0 * (w[key] @ w[name + ".lora_b"])).T
    assert mx.allclose(logits(model), attached, atol=1e-4)


def test_two_experts_add_up_and_detach_restores_the_base(model, tmp_path):
    base = logits(model)
    write_expert(tmp_path / "e1", model, seed=1)
    write_expert(tmp_path / "e2", model, layers=(0, 1), seed=2)
    mlx_lora.attach(model, tmp_path / "e1")
    only1 = logits(model)
    mlx_lora.attach(model, tmp_path / "e2")
    both = logits(model)
    assert not mx.allclose(only1, both, atol=1e-4)
    mlx_lora.detach_all(model)
    assert mx.allclose(logits(model), base, atol=1e-6)
    assert not any(isinstance(m, mlx_lora.ExpertStack) for _, m in model.named_modules())


def test_scale_zero_is_the_base_model(model, tmp_path):
    base = logits(model)
    write_expert(tmp_path / "e1", model)
    mlx_lora.attach(model, tmp_path / "e1", scale=0.0)
    assert mx.allclose(logits(model), base, atol=1e-6)


def test_attached_experts_are_frozen(model, tmp_path):
    write_expert(tmp_path / "e1", model)
    model.freeze()
    mlx_lora.attach(model, tmp_path / "e1")
    assert tree_flatten(model.trainable_parameters()) == []


def test_expert_for_another_model_is_refused(model, tmp_path):
    other = tiny_mlx_llama(hidden_size=64, intermediate_size=128)
    write_expert(tmp_path / "e1", other)
    with pytest.raises(InputError, match="does not fit this model"):
        mlx_lora.attach(model, tmp_path / "e1")


def test_damaged_expert_is_a_clear_error(model, tmp_path):
    d = tmp_path / "e1"
    d.mkdir()
    (d / "adapter_config.json").write_text("{}")
    (d / "adapters.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="is damaged"):
        mlx_lora.attach(model, d)
    with pytest.raises(InputError, match="not an expert folder"):
        mlx_lora.attach(model, tmp_path / "missing")


def test_trainable_expert_starts_as_identity_trains_alone_and_saves(model, tmp_path):
    import mlx.optimizers as optim

    write_expert(tmp_path / "old", model)
    mlx_lora.attach(model, tmp_path / "old")
    before = logits(model)
    touched = mlx_lora.add_trainable_expert(
        model, num_layers=1, keys=["self_attn.q_proj", "mlp.down_proj"], rank=4, scale=8.0)
    assert touched == ["model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj"]
    assert mx.allclose(logits(model), before, atol=1e-6)  # B starts at zero
    trainable = dict(tree_flatten(model.trainable_parameters()))
    assert sorted(trainable) == sorted(
        f"{n}.{leaf}" for n in touched for leaf in ("new_a", "new_b"))
    frozen_before = {k: v for k, v in tree_flatten(model.parameters()) if "new_" not in k}

    def loss_fn(m):
        out = m(mx.array([[1, 2, 3, 4]]))
        return nn.losses.cross_entropy(out[0, :-1], mx.array([2, 3, 4])).mean()

    opt = optim.Adam(learning_rate=1e-2)
    step = nn.value_and_grad(model, loss_fn)
    first = None
    for _ in range(20):
        loss, grads = step(model)
        opt.update(model, grads)
        mx.eval(model.parameters())
        first = first if first is not None else loss.item()
    assert loss.item() < first
    for k, v in tree_flatten(model.parameters()):
        if "new_" not in k:
            assert mx.array_equal(v, frozen_before[k]), k  # nothing else moved

    trained = logits(model)
    mlx_lora.save_trainable_expert(model, tmp_path / "tonight",
                                   {"num_layers": 1, "lora_parameters": {"rank": 4, "scale": 8.0}})
    mlx_lora.drop_trainable_expert(model)
    assert mx.allclose(logits(model), before, atol=1e-6)
    mlx_lora.attach(model, tmp_path / "tonight")
    assert mx.allclose(logits(model), trained, atol=1e-5)


def test_a_scaled_trainable_expert_adds_that_fraction_of_its_change(model, tmp_path):
    """scale_trainable(f): each touched layer's output moves f times as far from the
    frozen layer's, and the expert written afterwards is the scaled one."""
    touched = mlx_lora.add_trainable_expert(model, num_layers=1, keys=["mlp.down_proj"],
                                            rank=4, scale=2.0)
    stack = dict(model.named_modules())[touched[0]]
    stack.new_b = mx.random.normal(stack.new_b.shape, key=mx.random.key(3)) * 0.3
    x = mx.random.normal((3, stack.linear.weight.shape[1]), key=mx.random.key(4))
    plain, full = stack.linear(x), stack(x)
    assert not mx.allclose(full, plain, atol=1e-3)

    mlx_lora.scale_trainable(model, 0.5)
    assert mx.allclose(stack(x) - plain, 0.5 * (full - plain), atol=1e-5)
    mlx_lora.save_trainable_expert(model, tmp_path / "half", {
        "num_layers": 1, "lora_parameters": {"rank": 4, "scale": 2.0}})
    _, saved = mlx_lora.read_expert(tmp_path / "half")
    assert mx.allclose(saved[f"{touched[0]}.lora_b"], stack.new_b)
