"""The publish stage: ``docs/`` -> ``site/`` with MkDocs (Material theme).

The build config is derived from the base ``mkdocs.yml`` shipped with n2g-site (the repo's, or the
wheel's copy): docs_dir, site_dir, site_url, the nav (home, reading, fidelity, the prose pages, layers; never
the neuron pages, which are also excluded from search by their front matter), the fragment hook, the stylesheet and the
script
(token search, table sorting) are added, and the result is written to ``<work dir>/mkdocs.yml`` so ``mkdocs serve -f
<that file>``
shows the same site. A ``mkdocs.yml`` in the current folder is not read.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, UserError
from ..progress import say
from ..resources import builtin_path
from ..store import WorkDir, atomic_write_text, read_json

HOOKS = Path(__file__).resolve().parent / "hooks.py"
CSS = "assets/n2g.css"
JS = "assets/n2g.js"  # token search box, pattern search, sortable layer tables, data loader
PLAYGROUND_JS = "assets/playground.js"  # the neuron pages' in-browser graph predictor
# Material's prose search runs in a Web Worker, which browsers refuse to start from file://; this shim (MIT,
# vendored) stands in there, so the unzipped offline bundle searches too. Over http it does nothing.
WORKER_SHIM = "assets/vendor/iframe-worker.js"
OVERRIDES = "overrides"  # in the built-in templates: Material template overrides (the neuron pages' frame)


def _layer_key(path: Path) -> int:
    match = re.fullmatch(r"L(\d+)", path.stem)
    return int(match.group(1)) if match else -1


def derive_config(cfg: Config, work: WorkDir) -> dict[str, Any]:
    """The MkDocs config for this run (see module docstring)."""
    base_path = builtin_path("mkdocs.yml")
    try:
        base = yaml.safe_load(base_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{base_path} is not valid YAML: {exc}") from None
    docs = work.docs.resolve()
    if not (docs / "index.md").exists():
        raise UserError(f"{docs} has no rendered pages: run `n2g-site render` first (or `n2g-site build`)")

    conf = dict(base)
    conf["docs_dir"] = str(docs)
    conf["site_dir"] = str(Path(cfg.site_dir).resolve())
    if cfg.site_url:
        conf["site_url"] = cfg.site_url
    conf["use_directory_urls"] = True  # the fragments' relative links assume directory URLs
    theme = dict(base.get("theme") or {"name": "material"})
    # The neuron pages' lean frame (templates/overrides/neuron.html), picked by the shell page's front matter.
    theme.setdefault("custom_dir", str(builtin_path("templates") / OVERRIDES))
    conf["theme"] = theme
    manifest = _manifest(work)
    layers = sorted((docs / "layers").glob("L*.md"), key=_layer_key)
    nav: list[Any] = [{"Home": "index.md"}, {"How to read a graph": "reading.md"}, {"Fidelity": "fidelity.md"}]
    # Prose pages (render/guide.py), in the nav and in MkDocs' search; older renders may lack them.
    about = [
        {title: md}
        for title, md in (
            ("Method", "method.md"),
            ("Model and corpus", "model.md"),
            ("Data", "data.md"),
            ("How to cite", "cite.md"),
        )
        if (docs / md).exists()
    ]
    if about:
        nav.append({"About": about})
    if (docs / "patterns.md").exists():
        nav.append({"Pattern search": "patterns.md"})
    if layers:
        nav.append({"Layers": [{f"Layer {_layer_key(p)}": f"layers/{p.name}"} for p in layers]})
    conf["nav"] = nav
    conf["not_in_nav"] = "/neurons/"
    conf["hooks"] = [*(base.get("hooks") or []), str(HOOKS)]
    conf["extra_css"] = [*(base.get("extra_css") or []), CSS]
    conf["extra_javascript"] = [*(base.get("extra_javascript") or []), JS, PLAYGROUND_JS]
    plugins = base.get("plugins") or []
    names = [p if isinstance(p, str) else next(iter(p)) for p in plugins]
    if "search" not in names:
        plugins = [*plugins, "search"]
    conf["plugins"] = plugins
    extra = dict(base.get("extra") or {})
    extra["n2g_fragments"] = str(work.fragments.resolve())
    extra["polyfills"] = [*(extra.get("polyfills") or []), WORKER_SHIM]
    extra.setdefault("generator", False)  # no "Made with Material for MkDocs" line
    conf["extra"] = extra
    info = manifest.get("corpus_info") or {}
    if "copyright" not in base and (info.get("licence") or "wikipedia.org" in str(info.get("url") or "")):
        src = "Wikipedia" if "wikipedia.org" in str(info.get("url") or "") else info.get("name", "the corpus")
        conf["copyright"] = f"Example text from {src}, {info.get('licence') or 'CC BY-SA 4.0'}."
    return conf


def _manifest(work: WorkDir) -> dict[str, Any]:
    return read_json(work.manifest) if work.manifest.exists() else {}


# ------------------------------------------------------------------------------------------ site size

PAGES_LIMIT_BYTES = 1_000_000_000  # GitHub Pages publishes sites of at most 1 GB ("GitHub Pages limits")
# What a site's bytes are, by path: (name, grows with the number of neurons). First match wins.
_PARTS = (
    ("neuron pages", True, re.compile(r"neurons/.*index\.html")),
    ("large graphs (graph.svg)", True, re.compile(r"neurons/.*")),
    ("layer data (export/)", True, re.compile(r"export/layer_.*")),
    ("token-search index", True, re.compile(r"token-search/.*")),
    ("layer pages", True, re.compile(r"layers/.*")),
    ("playground tokenizer", False, re.compile(r"playground/.*")),
    ("theme and assets", False, re.compile(r"assets/.*")),
    ("prose search index", False, re.compile(r"search/.*")),
    ("other pages and files", False, re.compile(r".*")),
)


@dataclass
class SiteSize:
    """A built site's bytes: in all, by part (:data:`_PARTS`), and per neuron page."""

    total: int
    neurons: int  # neuron pages
    parts: dict[str, int]  # part -> bytes, largest first

    @property
    def per_neuron(self) -> float:
        return self.total / self.neurons if self.neurons else float("nan")

    @property
    def growing(self) -> int:
        """Bytes of the parts that grow with the number of neurons (pages, data, index, layer pages)."""
        grows = {name for name, growing, _ in _PARTS if growing}
        return sum(v for k, v in self.parts.items() if k in grows)

    def projected(self, neurons: int) -> float:
        """The size of the same site with ``neurons`` neurons: the fixed parts once, the growing parts at this
        site's rate per neuron."""
        if not self.neurons:
            return float(self.total)
        return self.total - self.growing + self.growing / self.neurons * neurons

    def fits(self, limit: int = PAGES_LIMIT_BYTES) -> int:
        """How many neurons fit under ``limit`` at this site's rate."""
        if not self.neurons or not self.growing:
            return 0
        return max(0, int((limit - (self.total - self.growing)) / (self.growing / self.neurons)))

    def __str__(self) -> str:
        top = ", ".join(
            f"{name} {v / 1e6:,.1f} MB ({v / max(self.neurons, 1) / 1e3:,.1f} KB a neuron)"
            for name, v in list(self.parts.items())[:5]
        )
        return (
            f"site {self.total / 1e6:,.1f} MB for {self.neurons:,} neurons, {self.per_neuron / 1e3:,.1f} KB a "
            f"neuron ({self.growing / max(self.neurons, 1) / 1e3:,.1f} KB of it grows with the neurons, the rest "
            f"is fixed); biggest: {top}"
        )

    def projection(self, model_neurons: int, limit: int = PAGES_LIMIT_BYTES) -> str:
        """The site against GitHub Pages' limit, now and for every neuron of the model."""
        whole = self.projected(model_neurons)
        verdict = "fits" if self.total <= limit else "does NOT fit"
        return (
            f"GitHub Pages serves at most {limit / 1e9:g} GB: this site ({self.total / 1e6:,.1f} MB) {verdict}; "
            f"at {self.growing / max(self.neurons, 1) / 1e3:,.1f} KB a neuron about {self.fits(limit):,} neurons "
            f"fit; all {model_neurons:,} neurons of the model would be ~{whole / 1e9:,.2f} GB"
        )


def measure_site(site: Path) -> SiteSize:
    """Every file under ``site``, summed by part."""
    parts: dict[str, int] = {}
    neurons = total = 0
    for folder, _, names in os.walk(site):
        rel_folder = Path(folder).relative_to(site).as_posix()
        for name in names:
            path = Path(folder) / name
            if not path.is_file():
                continue
            size = path.stat().st_size
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            part = next(label for label, _, pattern in _PARTS if pattern.fullmatch(rel))
            parts[part] = parts.get(part, 0) + size
            total += size
            neurons += part == "neuron pages"
    return SiteSize(total=total, neurons=neurons, parts=dict(sorted(parts.items(), key=lambda kv: -kv[1])))


@contextmanager
def _quiet():
    """MkDocs logs every step at INFO: keep only warnings and errors while we build."""
    logger = logging.getLogger("mkdocs")
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def publish(cfg: Config, work: WorkDir) -> Path:
    """Build the site from ``work.docs`` into ``cfg.site_dir``; return the site dir."""
    from mkdocs import exceptions
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    conf = derive_config(cfg, work)
    text = yaml.safe_dump(conf, sort_keys=False, allow_unicode=True)
    atomic_write_text(work.mkdocs_config, text)
    with _quiet():
        try:
            config = load_config(str(work.mkdocs_config))
            config.plugins.on_startup(command="build", dirty=False)
            try:
                build(config)
            finally:
                config.plugins.on_shutdown()
        except exceptions.ConfigurationError as exc:
            raise UserError(f"{work.mkdocs_config}: {exc}") from None
        except exceptions.MkDocsException as exc:
            raise UserError(f"mkdocs build failed: {exc}") from None
    site = Path(conf["site_dir"])
    _offline_search_index(site)
    size = measure_site(site)
    say(f"publish: {size}")
    model_info = _manifest(work).get("model_info") or {}
    if isinstance(model_info.get("n_layers"), int) and isinstance(model_info.get("d_mlp"), int):
        say(f"publish: {size.projection(model_info['n_layers'] * model_info['d_mlp'])}")
    return site


def _offline_search_index(site: Path) -> None:
    """Material reads ``search/search_index.js`` (``var __index = ...``) instead of fetching the JSON when a
    page is opened from file://: write it, so prose search works in the unzipped offline bundle."""
    index = site / "search" / "search_index.json"
    if index.is_file():
        atomic_write_text(index.with_suffix(".js"), "var __index = " + index.read_text(encoding="utf-8"))
