"""The render stage's Jinja environment: the built-in templates under a user's ``--templates``, autoescaped,
with the display filters the templates use; every template compiled up front so a broken one fails before
any page is written, and a template error reported with its file and line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2

from ..config import Config, UserError
from ..resources import builtin_path
from .plots import histogram
from .tokens import display_token

TEMPLATES = (
    "neuron.md.j2",
    "neuron_body.html.j2",
    "neuron_example.html.j2",
    "neuron_negative.html.j2",
    "layer.md.j2",
    "layer_body.html.j2",
    "index.md.j2",
    "reading.md.j2",
    "reading_body.html.j2",
    "fidelity.md.j2",
    "fidelity_body.html.j2",
    "home_fidelity.html.j2",
    "neuron_scores.html.j2",
    "fidelity_legend.html.j2",
    "chart.svg.j2",
    "method.md.j2",
    "model.md.j2",
    "cite.md.j2",
    "data.md.j2",
    "patterns.md.j2",
    "patterns_body.html.j2",
)


def num(value: Any, digits: int = 3) -> str:
    """A number for display: '–' for missing/NaN, else ``digits`` significant digits."""
    if value is None:
        return "–"
    value = float(value)
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}g}"


def _sortval(value: Any) -> str:
    """A number for a table cell's ``data-v`` (client-side sort): '' when missing."""
    if value is None:
        return ""
    value = float(value)
    return "" if math.isnan(value) or math.isinf(value) else f"{value:.6g}"


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.{digits}f}%"


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()#+!|"})


def _md(value: Any) -> str:
    """Backslash-escape Markdown syntax in a value placed in a Markdown template (autoescape does HTML)."""
    return str(value).translate(_MD_SPECIAL)


def make_env(cfg: Config) -> jinja2.Environment:
    """Jinja environment: user templates (``cfg.templates``) over the built-in ones, autoescaped."""
    loaders: list[jinja2.BaseLoader] = []
    if cfg.templates is not None:
        if not Path(cfg.templates).is_dir():
            raise UserError(f"--templates {str(cfg.templates)!r} is not a folder: pass a folder of templates")
        loaders.append(jinja2.FileSystemLoader(str(cfg.templates)))
    loaders.append(jinja2.FileSystemLoader(str(builtin_path("templates"))))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,  # every template, Markdown included
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # tojson without spaces: a neuron page's playground data is written once per neuron of a whole-model site.
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "separators": (",", ":")}
    env.filters.update(
        num=num,
        pct=_pct,
        md=_md,
        sortval=_sortval,
        token=lambda v: display_token(v) if isinstance(v, str) else str(v),
        histogram=histogram,
    )
    return env


def _template_file(env: jinja2.Environment, name: str) -> str:
    try:
        _, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        return filename or name
    except jinja2.TemplateNotFound:
        return name


def load_templates(env: jinja2.Environment) -> dict[str, jinja2.Template]:
    """Compile every template up front so a broken one fails before any page is written."""
    out = {}
    for name in TEMPLATES:
        try:
            out[name] = env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or _template_file(env, exc.name or name)
            raise UserError(
                f"template {where}, line {exc.lineno}: {exc.message}; fix the template "
                f"(or remove it from --templates to use the built-in one)"
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise UserError(f"template {exc.name!r} not found in --templates or the built-in templates") from None
    return out


def render(env: jinja2.Environment, template: jinja2.Template, **context: Any) -> str:
    try:
        return template.render(**context)
    except jinja2.TemplateError as exc:
        where = _template_file(env, template.name or "?")
        line = ""
        lineno = getattr(exc, "lineno", None)  # TemplateSyntaxError has one
        if lineno:
            line = f", line {lineno}"
        raise UserError(f"template {where}{line} does not render: {exc}") from None
