"""The ``n2g-site`` command: ``build`` runs every stage; ``mine``, ``fit``, ``evaluate``, ``relate``,
``render``, ``publish`` run one; ``merge`` joins sharded work dirs; ``deploy`` pushes the built site.
With ``--executor ray``, mine, fit and evaluate run as one Ray task per shard (executors.py).

The options are generated from the fields declared in :mod:`n2g_site.config` (help, type, range). Each
command takes the option groups it reads (:data:`COMMANDS`) and refuses the others by name. The options it
was given (over an optional ``n2g.toml``) become one validated :class:`~n2g_site.config.Config`. A
:class:`~n2g_site.config.UserError` ends the run with one line on stderr and exit code 2.

click rather than typer: the options are generated from a table, which click composes as decorators.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from . import __version__
from .config import CONFIG_FILE_HELP, Config, Declared, UserError, grouped, load_toml, merge
from .progress import console, say
from .store import WorkDir, ensure_writable

if TYPE_CHECKING:
    from .models import LoadedModel

# The option groups each command reads (config.GROUPS); an option's ``also`` adds single commands.
# A command refuses every other option of the table with one line and exit code 2.
COMMANDS: dict[str, tuple[str, ...]] = {
    "build": ("run", "model", "select", "mine", "fit", "evaluate", "cluster", "site", "publish"),
    "mine": ("run", "model", "select", "mine", "cluster"),
    "fit": ("run", "model", "select", "fit", "cluster"),
    "merge": ("run",),
    "evaluate": ("run", "select", "evaluate", "cluster"),
    "relate": ("run", "model"),
    "render": ("run", "site"),
    "publish": ("run", "publish"),
    "deploy": ("run",),
}
OPTIONS: tuple[Declared, ...] = grouped()


def uses(command: str, opt: Declared) -> bool:
    """Whether ``command`` reads option ``opt``."""
    return opt.option.group in COMMANDS[command] or command in opt.option.also


def _key(opt: Declared) -> str:
    """The click parameter name: ``mine__top_k`` for ``[mine] top_k``."""
    return f"{opt.section}__{opt.name}" if opt.section else opt.name


def _click_type(opt: Declared) -> Any:
    if opt.option.choices:
        return click.Choice(opt.option.choices)
    if opt.option.path:
        return click.Path(path_type=Path, file_okay=False, exists=opt.option.path == "existing-dir")
    return opt.kind


def _help(opt: Declared) -> str:
    return f"{opt.option.described()} Default: {opt.default_text}. [{opt.option.group}]"


def _options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Every option of the table on ``command``: the ones it reads with their help, the others hidden and
    untyped, so that passing one is refused by name (:func:`_refuse_unused`) rather than as an unknown flag."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for opt in reversed(OPTIONS):
            key = _key(opt)
            flag = opt.kind is bool
            if uses(command, opt):
                func = click.option(
                    opt.flag, key, type=None if flag else _click_type(opt), is_flag=flag, default=None, help=_help(opt)
                )(func)
            else:
                func = click.option(opt.flag, key, is_flag=flag, default=None, hidden=True)(func)
        return click.option(
            "--config",
            "config_file",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help=CONFIG_FILE_HELP,
        )(func)

    return decorate


def _refuse_unused(command: str, values: dict[str, Any]) -> None:
    for opt in OPTIONS:
        key = _key(opt)
        if values.get(key) is not None and not uses(command, opt):
            readers = [name for name in COMMANDS if uses(name, opt)]
            raise UserError(
                f"{command} does not use {opt.flag} (a {opt.option.group} option): it is read by "
                f"{', '.join(readers)}; leave it out here"
            )


def _config(values: dict[str, Any], notes: list[str]) -> Config:
    config_file = values.pop("config_file", None)
    cfg = Config()
    if config_file is not None:
        cfg = merge(cfg, load_toml(config_file, notes), source=str(config_file))
    flags: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        section, _, name = key.rpartition("__")
        if section:
            flags.setdefault(section, {})[name] = value
        else:
            flags[name] = value
    return merge(cfg, flags, source="command line").validate()


def _command(name: str, *, own: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn ``func(cfg, **own)`` into the command ``name``: its options, one config, errors as one line.

    ``own`` names the command's own arguments (merge's SOURCES, deploy's options), passed as they are."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def run(**values: Any) -> None:
            extra = {k: values.pop(k) for k in own}
            try:
                _refuse_unused(name, values)
                notes: list[str] = []
                cfg = _config(values, notes)
                for note in notes:
                    console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
                func(cfg, **extra)
            except UserError as exc:
                console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
                sys.exit(2)
            except KeyboardInterrupt:
                console.print("[yellow]interrupted: finished files are kept; rerun the same command to resume")
                sys.exit(130)

        return _options(name)(run)

    return decorate


class _Session:
    """Loads the model at most once, and only when a stage needs it."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._model: LoadedModel | None = None

    def model(self) -> LoadedModel:
        if self._model is None:
            from .models import load_model

            started = time.perf_counter()
            say(f"model: loading {self.cfg.model!r} onto {self.cfg.device} in {self.cfg.dtype}")
            self._model = load_model(
                self.cfg.model, device=self.cfg.device, dtype=self.cfg.dtype, seed=self.cfg.seed, hook=self.cfg.hook
            )
            say(
                f"model: {self._model.name}, {self._model.n_layers} layers x {self._model.d_mlp} neurons, "
                f"weights on {self._model.device} in {self._model.dtype_name} "
                f"({time.perf_counter() - started:.1f} s)"
            )
        return self._model


def _on_ray(stage: str, cfg: Config) -> bool:
    """Run ``stage`` as Ray tasks when --executor ray (True), else leave it to this process (False)."""
    if cfg.executor != "ray":
        return False
    from .executors import run_on_ray

    run_on_ray(stage, cfg)
    return True


def _mine(cfg: Config, session: _Session) -> None:
    from .mine import mine

    ensure_writable(cfg.work_path, "--work-dir")
    if not _on_ray("mine", cfg):
        mine(cfg, session.model, WorkDir(cfg.work_path))


def _fit(cfg: Config, session: _Session) -> None:
    from .fit import fit

    if not _on_ray("fit", cfg):
        fit(cfg, session.model, WorkDir(cfg.work_path))


def _evaluate(cfg: Config, session: _Session | None = None) -> None:
    from .evaluate import evaluate

    if not _on_ray("evaluate", cfg):  # a model is loaded only for --ood-corpus / --ordinary-eval-tokens: the
        # build's own, else the one the work dir names (its model, dtype and hook)
        evaluate(cfg, WorkDir(cfg.work_path), load_model=session.model if session is not None else None)


def _relate(cfg: Config, session: _Session) -> None:
    from .relate import relate

    relate(cfg, session.model, WorkDir(cfg.work_path))


def _render(cfg: Config) -> None:
    from .render import render_site

    summary = render_site(cfg, WorkDir(cfg.work_path))
    say(f"render: {summary}")


def _publish(cfg: Config) -> None:
    from .publish import publish

    ensure_writable(cfg.site_dir, "--site-dir")
    site = publish(cfg, WorkDir(cfg.work_path))
    say(f"publish: site written to {site} (open {site / 'index.html'})")
    if cfg.zip_site:
        from .publish.bundle import zip_site

        archive = zip_site(site)
        say(
            f"publish: offline bundle {archive} ({archive.stat().st_size / 1e6:.1f} MB; unzip and open "
            f"{site.name}/index.html)"
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="n2g-site")
def app() -> None:
    """Neuron to Graph for every MLP neuron of a language model, published as a static site.

    `n2g-site build` runs the stages mine -> fit -> evaluate -> relate -> render -> publish into site/. Each
    stage writes its files under the work dir and skips work already done, so a stopped build resumes where
    it stopped, and each stage can be rerun alone with the same options it reads.
    """


@app.command()
@_command("build")
def build(cfg: Config) -> None:
    """Run every stage: mine, fit, evaluate, relate, render, publish. With no options: the demo (see README)."""
    if cfg.shard is not None:
        raise UserError(
            f"build runs every stage and --shard {cfg.shard} splits one: run `n2g-site mine|fit|evaluate "
            "--shard i/n` in each process, then `n2g-site merge`, or drop --shard"
        )
    started = time.perf_counter()
    session = _Session(cfg)
    _mine(cfg, session)
    _fit(cfg, session)
    _evaluate(cfg, session)
    _relate(cfg, session)
    _render(cfg)
    _publish(cfg)
    say(f"build: done in {time.perf_counter() - started:.0f} s")


@app.command()
@_command("mine")
def mine(cfg: Config) -> None:
    """Stream the corpus through the model; keep each selected neuron's top-k windows and every neuron's stats."""
    _mine(cfg, _Session(cfg))


@app.command()
@_command("fit")
def fit(cfg: Config) -> None:
    """Fit one N2G graph per selected neuron (prune, saliency, trie) and score it on held-out windows."""
    _fit(cfg, _Session(cfg))


@app.command()
@_command("relate")
def relate(cfg: Config) -> None:
    """Find similar neurons by graph content; compute logit effects (loads the model only if they are missing)."""
    _relate(cfg, _Session(cfg))


@app.command("merge")
@click.argument("sources", nargs=-1, required=False, type=click.Path(path_type=Path, file_okay=False, exists=True))
@_command("merge", own=("sources",))
def merge_command(cfg: Config, sources: tuple[Path, ...]) -> None:
    """Join sharded runs: copy the mining shards, fit and evaluate files of SOURCES (work dirs, none when the
    shards shared --work-dir) into --work-dir, combine the mining shards, rewrite the evaluate tables."""
    from .shards import merge as merge_work_dirs

    merge_work_dirs(WorkDir(cfg.work_path), sources)


@app.command()
@_command("evaluate")
def evaluate(cfg: Config) -> None:
    """Score each graph and the token-lookup and n-gram baselines on held-out text; print a per-layer table."""
    _evaluate(cfg)


@app.command()
@_command("render")
def render(cfg: Config) -> None:
    """Write the Markdown pages, SVG graphs and HTML fragments of the site into the work dir."""
    _render(cfg)


@app.command()
@_command("publish")
def publish(cfg: Config) -> None:
    """Build the static site from the rendered pages with MkDocs (Material theme) into --site-dir."""
    _publish(cfg)


@app.command("deploy")
@click.option(
    "--remote",
    default="origin",
    show_default=True,
    help="Where to push: a remote name of the current folder's git repository, or a URL or path "
    "(e.g. git@github.com:user/repo.git, /tmp/test.git).",
)
@click.option("--branch", default="gh-pages", show_default=True, help="The branch that receives the site.")
@click.option(
    "--message", default=None, help="Commit message. Default: MkDocs' ('Deployed ... with MkDocs version ...')."
)
@click.option(
    "--dry-run",
    is_flag=True,
    default=False,
    help="Push to a temporary local bare repository instead, report what the branch holds, delete it.",
)
@_command("deploy", own=("remote", "branch", "message", "dry_run"))
def deploy_command(cfg: Config, remote: str, branch: str, message: str | None, dry_run: bool) -> None:
    """Push the built --site-dir to a branch (gh-pages) of a git remote, with MkDocs' gh-deploy.

    Run `n2g-site publish` (or `build`) with --site-url set to the Pages URL first. Then, in GitHub's
    settings, Pages -> Source: "Deploy from a branch", gh-pages. See the README, "Publishing".
    """
    from .publish.deploy import deploy

    result = deploy(cfg, WorkDir(cfg.work_path), remote=remote, branch=branch, message=message, dry_run=dry_run)
    say(f"deploy: {'dry run, nothing pushed: ' if dry_run else ''}{result}")


def main() -> None:
    app(prog_name="n2g-site")


if __name__ == "__main__":
    main()
