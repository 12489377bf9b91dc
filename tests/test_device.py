"""Where the model runs: ``--device`` is honoured by every loader or refused, ``--dtype`` is applied and
recorded, and files of two dtypes never mix. No GPU is needed: the ``meta`` device stands in for one (every
loader must put the weights there when asked), and a loader that ignores the device is simulated."""

import dataclasses

import pytest
import torch

from n2g_site import models
from n2g_site.config import DTYPE_NAMES, Config, UserError
from n2g_site.proposers import MlmProposer
from n2g_site.shards import merge
from n2g_site.store import WorkDir, read_json, write_json


def _devices(model) -> set[str]:
    return {p.device.type for p in model.bridge.parameters()}


def test_random_model_goes_to_the_requested_device():
    model = models.load_model("random:tiny", device="meta")
    assert _devices(model) == {"meta"}


def test_local_hf_folder_goes_to_the_requested_device(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = models.embedded_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model = models.load_model(str(tmp_path), device="meta")
    assert _devices(model) == {"meta"}
    assert {p.dtype for p in model.bridge.parameters()} == {torch.float32}


def test_a_loader_that_ignores_the_device_is_stopped(monkeypatch):
    real = models._load_random
    # Today's bug, simulated: the weights stay on the CPU whatever was asked.
    monkeypatch.setattr(
        models,
        "_load_random",
        lambda spec, placement, seed: real(spec, dataclasses.replace(placement, device=torch.device("cpu")), seed),
    )
    with pytest.raises(
        UserError,
        match=r"asked for meta in fp32, but \d+ of \d+ weight tensors are elsewhere "
        r"\(\d+ on device cpu\)",
    ):
        models.load_model("random:tiny", device="meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_says_how_to_get_one():
    with pytest.raises(UserError, match="sees no CUDA GPU. Install the CUDA build of torch"):
        models.load_model("random:tiny", device="cuda")


def test_bf16_weights_and_activations_close_to_fp32(tiny_model):
    half = models.load_model("random:tiny", dtype="bf16")
    assert {p.dtype for p in half.bridge.parameters()} == {torch.bfloat16} and half.dtype_name == "bf16"
    tokens = torch.tensor([tiny_model.encode("The cat sat on the mat in Paris.")])
    full = tiny_model.mlp_activations(tokens, [1])[1]
    low = half.mlp_activations(tokens, [1])[1]
    assert low.dtype == torch.bfloat16
    scale = full.abs().amax(dim=(0, 1))  # per neuron
    assert ((low.float() - full).abs() / scale).median() < 0.05


def test_dtype_names_agree_and_tf32_needs_cuda():
    assert tuple(models.DTYPES) == DTYPE_NAMES
    with pytest.raises(UserError, match="--dtype tf32 is a CUDA matmul mode; with --device cpu use --dtype fp32"):
        Config(dtype="tf32").validate()
    with pytest.raises(UserError, match="--dtype tf32 is a CUDA matmul mode; with --device cpu use --dtype fp32"):
        models.load_model("random:tiny", dtype="tf32")  # without a Config: the loader refuses it too
    with pytest.raises(UserError, match="--dtype 'fp8' is not one of"):
        Config(dtype="fp8").validate()
    Config(dtype="tf32", device="cuda:1").validate()


def test_mlm_proposer_runs_on_the_model_device():
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    config = DistilBertConfig(vocab_size=8, dim=8, n_layers=1, n_heads=2, hidden_dim=16, max_position_embeddings=16)
    proposer = MlmProposer(
        tokenizer=None, mlm=DistilBertForMaskedLM(config), text=[], encode=list, first=0, device="meta"
    )
    assert {p.device.type for p in proposer.mlm.parameters()} == {"meta"}


def _work_dir(root, dtype: str | None) -> WorkDir:
    work = WorkDir(root)
    manifest = {"model": "random:tiny", "corpus": "c", "seed": 0, "hook": "h", "mine": {"top_k": 2}}
    if dtype is not None:
        manifest["dtype"] = dtype
    work.write_manifest(manifest)
    return work


def test_merge_refuses_a_work_dir_of_another_dtype(tmp_path):
    here = _work_dir(tmp_path / "here", "fp32")
    there = _work_dir(tmp_path / "there", "bf16")
    write_json(there.fitted(0, 1), {"schema": "n2g-site/neuron-fit/1"})
    with pytest.raises(UserError, match=r"other dtype .*'bf16' there, 'fp32' here"):
        merge(here, [there.root])
    assert not here.fitted(0, 1).exists()
    legacy = _work_dir(tmp_path / "legacy", None)  # a run.json from before --dtype: fp32
    write_json(legacy.fitted(0, 2), {"schema": "n2g-site/neuron-fit/1"})
    assert merge(here, [legacy.root]) == 1


def test_a_work_dir_refuses_a_second_dtype(tmp_path):
    work = _work_dir(tmp_path / "w", None)
    assert work.check_identity({"dtype": "fp32"})["dtype"] == "fp32"
    with pytest.raises(UserError, match=r"dtype='fp32' \(now 'bf16'\)"):
        work.check_identity({"dtype": "bf16"})
    assert read_json(work.manifest).get("dtype") is None  # checking writes nothing


def test_fit_refuses_another_dtype_than_the_mined_one_and_records_its_own(tmp_path):
    from click.testing import CliRunner

    from n2g_site.cli import app

    run = [
        "--model",
        "random:tiny",
        "--corpus",
        "wiki",
        "--layers",
        "1",
        "--neurons",
        "0-1",
        "--work-dir",
        str(tmp_path / "w"),
    ]
    fit = ["fit", *run, "--train-examples", "2", "--augmenter", "none"]
    runner = CliRunner()
    mined = runner.invoke(app, ["mine", *run, "--top-k", "3", "--max-tokens", "2000", "--dtype", "bf16"])
    assert mined.exit_code == 0, mined.output
    assert read_json(tmp_path / "w" / "run.json")["dtype"] == "bf16"
    refused = runner.invoke(app, fit)
    assert refused.exit_code == 2 and "dtype='bf16' (now 'fp32')" in refused.output
    fitted = runner.invoke(app, [*fit, "--dtype", "bf16"])
    assert fitted.exit_code == 0, fitted.output
    assert read_json(WorkDir(tmp_path / "w").fitted(1, 0))["dtype"] == "bf16"
