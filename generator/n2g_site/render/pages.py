"""The former home of the render stage, kept so ``from n2g_site.render.pages import render_site`` (the CLI,
older tests) keeps working: the stage is :func:`n2g_site.render.render_site` (render/__init__.py), its Jinja
environment :mod:`n2g_site.render.jinja_env`."""

from __future__ import annotations

from . import render_site
from .jinja_env import load_templates, make_env

__all__ = ["load_templates", "make_env", "render_site"]
