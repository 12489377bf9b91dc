"""Model loading: random-init, a local Hugging Face folder, and the hook contract."""

import numpy as np
import pytest
import torch

from n2g_site.config import UserError
from n2g_site.models import embedded_tokenizer, load_model


def test_random_tiny_is_seeded_and_hooks_every_layer(tiny_model):
    tokens = torch.tensor([tiny_model.encode("The cat sat on the mat in Paris.")])
    acts = tiny_model.mlp_activations(tokens, [0, 1])
    assert set(acts) == {0, 1} and acts[1].shape == (1, tokens.shape[1], tiny_model.d_mlp)
    again = load_model("random:tiny").mlp_activations(tokens, [1])[1]
    torch.testing.assert_close(again, acts[1], rtol=0, atol=0)
    other = load_model("random:tiny", seed=1).mlp_activations(tokens, [1])[1]
    assert not torch.equal(other, acts[1])


def test_early_stop_gives_the_same_values_as_deeper_runs(tiny_model):
    tokens = torch.tensor([tiny_model.encode("Rivers flow into the sea.")])
    shallow = tiny_model.mlp_activations(tokens, [0])[0]
    deep = tiny_model.mlp_activations(tokens, [0, 1])[0]
    torch.testing.assert_close(shallow, deep)


def test_right_padding_does_not_change_real_positions(tiny_model):
    ids = tiny_model.encode("A short sentence about Paris and London.")
    alone = tiny_model.mlp_activations(torch.tensor([ids]), [1])[1][0]
    padded = tiny_model.mlp_activations(torch.tensor([ids + [0] * 7]), [1])[1][0, : len(ids)]
    torch.testing.assert_close(alone, padded, rtol=1e-5, atol=1e-6)


def test_special_tokens_and_info(tiny_model):
    info = tiny_model.info()
    assert info["bos"] == "<|endoftext|>" and info["hook"] == "blocks.{layer}.mlp.hook_post"
    assert tiny_model.mask_id != tiny_model.bos_id
    strings = tiny_model.token_strings()
    assert len(strings) == tiny_model.d_vocab and strings[tiny_model.bos_id] == "<|endoftext|>"


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A tiny random Llama (gated SwiGLU MLP, like SmolLM2) saved as a local Hugging Face folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = embedded_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, model


def test_local_hf_dir_hook_post_is_the_down_proj_input(llama_dir):
    folder, reference = llama_dir
    model = load_model(str(folder))
    assert (model.n_layers, model.d_mlp) == (2, 48)
    ids = model.encode("The cat sat on the mat.")
    seen = {}
    handle = reference.model.layers[1].mlp.down_proj.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    with torch.no_grad():
        reference(torch.tensor([ids]))
    handle.remove()
    ours = model.mlp_activations(torch.tensor([ids]), [1])[1]
    np.testing.assert_allclose(ours.numpy(), seen["x"].numpy(), rtol=1e-4, atol=1e-5)


def test_model_dir_without_weights_is_a_user_error(tmp_path, llama_dir):
    folder, _ = llama_dir
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(UserError, match="has no weights"):
        load_model(str(tmp_path))


def test_bad_hook_lists_the_real_ones():
    with pytest.raises(UserError, match="does not exist.*hook_post"):
        load_model("random:tiny", hook="blocks.{layer}.mlp.nope")


def test_mask_token_by_string_or_id(tiny_model):
    assert tiny_model.token_id("<|im_end|>") == 2 == tiny_model.token_id("2")
    with pytest.raises(UserError, match="--mask-token 'two tokens here'"):
        tiny_model.token_id("two tokens here")


def test_a_batch_that_runs_out_of_memory_is_split_and_gives_the_same_values(tiny_model, monkeypatch):
    tokens = torch.tensor([tiny_model.encode("The cat sat on the mat in Paris.")] * 5)
    expected = tiny_model.mlp_activations(tokens, [0, 1])
    real = type(tiny_model)._forward_hooks
    sizes = []

    def small_memory(self, batch, layers):
        sizes.append(batch.shape[0])
        if batch.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, batch, layers)

    monkeypatch.setattr(type(tiny_model), "_forward_hooks", small_memory)
    got = tiny_model.mlp_activations(tokens, [0, 1])
    assert max(s for s in sizes if s <= 2) <= 2 and sizes[0] == 5
    for layer in (0, 1):
        torch.testing.assert_close(got[layer], expected[layer])
