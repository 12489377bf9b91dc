"""The documentation cannot drift from the code: option tables are generated and checked, every document the
code cites is in the repository, and relative links between the docs resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from n2g_site import docgen
from n2g_site.config import declared

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "generator" / "n2g_site"


def test_option_tables_match_the_code():
    assert docgen.stale(ROOT) == [], "run `make docs` (python -m n2g_site.docgen) and commit the result"


def test_the_check_fails_on_a_drifted_table(tmp_path: Path):
    for name in docgen.FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text(encoding="utf-8"), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8").replace("| `0-3` |", "| `0-7` |"), encoding="utf-8")
    assert docgen.stale(tmp_path) == ["README.md"]


def test_readme_states_the_defaults_of_the_code():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("<!-- options:main -->") : readme.index("<!-- /options:main -->")]
    for opt in declared():
        if opt.option.main:
            assert f"| `{opt.flag}` |" in table, opt.flag
    assert "| `--neurons` | Neurons of each selected layer, e.g. `0-15`. | `0-3` |" in table


def _hyperparameter_rows() -> list[tuple[list[str], list[str]]]:
    text = (ROOT / "docs" / "algorithm.md").read_text(encoding="utf-8")
    section = text[text.index("## Hyperparameters") :]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 3 and cells[1].startswith("`--"):
            flags = re.findall(r"`(--[a-z-]+)`", cells[1])
            rows.append((flags, [d.strip() for d in cells[2].split(", ")]))
    return rows


def test_algorithm_notes_give_the_codes_defaults():
    by_flag = {o.flag: o for o in declared()}
    rows = _hyperparameter_rows()
    assert len(rows) >= 12
    checked = 0
    for flags, defaults in rows:
        if any(by_flag[f].option.default_text for f in flags):
            continue  # described in words (the mask token, the sentence ends)
        assert len(flags) == len(defaults), flags
        for flag, default in zip(flags, defaults, strict=True):
            assert default.split(" (")[0] == by_flag[flag].default_text, (flag, default)
            checked += 1
    assert checked >= 15


def _cited() -> list[tuple[Path, str, str | None]]:
    cites = []
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "templates").rglob("*.j2")]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"([\w./-]+\.md)\b(?:, \"([^\"]+)\")?", text):
            cites.append((path, match.group(1), match.group(2)))
    return cites


REPO_DOCS = re.compile(r"^(docs/[\w-]+\.md|benchmarks/README\.md|README\.md|CONTRIBUTING\.md|CHANGELOG\.md)$")


def test_no_module_cites_a_document_that_is_not_in_the_repository():
    """A citation (``docs/algorithm.md, "Prune"``) names a document of the repository and one of its sections.

    A path without a section may be a page of the work dir's docs/ (``docs/index.md``), so only cited
    sections and the documents named below are checked."""
    for path, doc, section in _cited():
        if not REPO_DOCS.match(doc) or (section is None and doc.startswith("docs/")):
            continue
        where = path.relative_to(ROOT)
        assert (ROOT / doc).is_file(), f"{where} cites {doc}, which is not in the repository"
        if section:
            headings = re.findall(r"^#+ (.*)$", (ROOT / doc).read_text(encoding="utf-8"), flags=re.M)
            assert any(section in h for h in headings), f"{where}: {doc} has no section {section!r}"
    assert any(doc == "docs/algorithm.md" for _, doc, _ in _cited())
    for path in (*PACKAGE.rglob("*.py"), *(ROOT / "templates").rglob("*.j2"), ROOT / "README.md"):
        text = path.read_text(encoding="utf-8")
        for gone in ("design.md", "n2g-algorithm.md", "offline-assets.md", "review-", "team docs"):
            assert gone not in text, f"{path.relative_to(ROOT)} cites {gone}, which is not in the repository"


@pytest.mark.parametrize(
    "doc",
    ["README.md", "CONTRIBUTING.md", "CHANGELOG.md", "docs/algorithm.md", "docs/developer-guide.md", "docs/options.md"],
)
def test_relative_links_resolve(doc: str):
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        assert (path.parent / target).exists(), f"{doc} links to {target}, which does not exist"
