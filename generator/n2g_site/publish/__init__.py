"""The publish side: from a rendered work dir to a built, bundled or deployed site.

- :mod:`.build`: the ``publish`` stage: derive ``mkdocs.yml`` from the built-in base and run MkDocs
  (Material) into ``--site-dir``; measure the site against GitHub Pages' 1 GB.
- :mod:`.hooks`: the MkDocs hooks file the build config names (fragments swapped into pages, and after the
  build, the neuron pages written by :mod:`.pages`).
- :mod:`.pages`: every neuron page written from the one MkDocs-built shell page and the render stage's
  per-layer packs.
- :mod:`.bundle`: ``--zip``, the offline bundle.
- :mod:`.deploy`: ``n2g-site deploy``, the site pushed to a gh-pages branch.
"""

from .build import PAGES_LIMIT_BYTES, SiteSize, derive_config, measure_site, publish

__all__ = ["PAGES_LIMIT_BYTES", "SiteSize", "derive_config", "measure_site", "publish"]
