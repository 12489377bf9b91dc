"""MkDocs hook: put each page's pre-rendered HTML fragment in place of its placeholder paragraph.

The render stage writes light Markdown (a title and the paragraph ``N2G-FRAGMENT``) to ``docs/`` and the
heavy HTML (graph SVG, highlighted examples, tables) to ``fragments/<same path>.html``, so Python-Markdown
never parses it. ``on_page_content`` runs after Markdown and before the theme and the search plugin, and
swaps the fragment in by a plain string replacement; the built pages need no JavaScript to show it.

The fragments folder comes from the derived config: ``extra: {n2g_fragments: /abs/path}``.

Neuron pages are not MkDocs pages: ``on_post_build`` writes them all from one built shell page
(``n2g_site.publish.pages``), in ``mkdocs build`` and ``mkdocs serve`` alike.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.n2g")

PLACEHOLDER = "<p>N2G-FRAGMENT</p>"


def on_page_content(html, page, config, files):  # MkDocs hook signature; files unused
    if PLACEHOLDER not in html:
        return html
    root = (config.extra or {}).get("n2g_fragments")
    src = page.file.src_uri
    if not root:
        log.warning("%s has an N2G fragment placeholder but extra.n2g_fragments is not set", src)
        return html
    path = Path(root) / (src.rsplit(".", 1)[0] + ".html")
    try:
        fragment = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        log.warning("N2G fragment %s for %s is missing: rerun `n2g-site render`", path, src)
        return html.replace(PLACEHOLDER, "<p><em>This part of the page was not rendered.</em></p>", 1)
    return html.replace(PLACEHOLDER, fragment, 1)


def on_post_build(config):  # MkDocs hook signature
    root = (config.extra or {}).get("n2g_fragments")
    if not root:
        return
    from markdown.extensions.toc import slugify as default_slugify

    from n2g_site.publish.pages import write_neuron_pages

    toc = (config.mdx_configs or {}).get("toc") or {}
    slugify, sep = toc.get("slugify") or default_slugify, toc.get("separator", "-")
    try:
        count = write_neuron_pages(config.site_dir, root, lambda title: slugify(title, sep))
    except ValueError as exc:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"neuron pages not written: {exc}") from None
    log.debug("wrote %d neuron pages from the shell page", count)
