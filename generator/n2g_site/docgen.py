"""The option tables of README.md and docs/options.md, generated from the declared options (config.py).

Each table sits between two markers, ``<!-- options:NAME -->`` and ``<!-- /options:NAME -->``; everything
else in those files is written by hand. ``python -m n2g_site.docgen`` rewrites the tables (``make docs``);
``--check`` only reports files whose tables differ from the code and exits 1 (``make check`` and
tests/test_docs.py run it), so the documented options and defaults cannot drift from the code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .cli import COMMANDS, OPTIONS, uses
from .config import CONFIG_FILE_HELP, GROUPS, Declared

ROOT = Path(__file__).resolve().parents[2]


def _text(text: str) -> str:
    """Help text as Markdown: quoted values become code, and '<', '>', '|' outside code are escaped."""
    parts = re.split(r"('[^' ]+'|`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("'") and part.endswith("'") and len(part) > 1:
            out.append(f"`{part[1:-1]}`".replace("|", "\\|"))
        elif part.startswith("`"):
            out.append(part.replace("|", "\\|"))
        else:
            out.append(part.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|"))
    return "".join(out)


def _default(opt: Declared) -> str:
    if opt.option.default_text:
        return _text(opt.option.default_text)
    return f"`{opt.default_text}`"


def _key(opt: Declared) -> str:
    return f"`[{opt.section}] {opt.name}`" if opt.section else f"`{opt.name}`"


def main_table() -> str:
    """README's table: the main options (``Option.main``) and ``--config``."""
    lines = ["| option | meaning | default |", "|---|---|---|"]
    lines += [f"| `{o.flag}` | {_text(o.option.described())} | {_default(o)} |" for o in OPTIONS if o.option.main]
    lines.append(f"| `--config` | {_text(CONFIG_FILE_HELP)} | |")
    return "\n".join(lines)


def commands_table() -> str:
    """Which option groups each command takes."""
    lines = ["| command | option groups |", "|---|---|"]
    lines += [f"| `{name}` | {', '.join(groups)} |" for name, groups in COMMANDS.items()]
    return "\n".join(lines)


def reference() -> str:
    """docs/options.md: every option, by group, with its n2g.toml key, meaning, default and commands."""
    out = []
    for group, title in GROUPS.items():
        opts = [o for o in OPTIONS if o.option.group == group]
        readers = [name for name, groups in COMMANDS.items() if group in groups]
        out += [f"### {group}: {title}", "", f"Taken by: {', '.join(f'`{r}`' for r in readers)}.", ""]
        out += ["| option | n2g.toml | meaning | default |", "|---|---|---|---|"]
        for o in opts:
            also = [c for c in COMMANDS if uses(c, o) and c not in readers]
            extra = f" Also read by {', '.join(f'`{c}`' for c in also)}." if also else ""
            out.append(f"| `{o.flag}` | {_key(o)} | {_text(o.option.described())}{extra} | {_default(o)} |")
        out.append("")
    return "\n".join(out).rstrip()


TABLES = {"main": main_table, "commands": commands_table, "reference": reference}
FILES = ("README.md", "docs/options.md")


def render(text: str) -> str:
    """``text`` with each marked table replaced by its generated form."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise ValueError(f"unknown table <!-- options:{name} --> (known: {', '.join(TABLES)})")
        return f"<!-- options:{name} -->\n{TABLES[name]()}\n<!-- /options:{name} -->"

    return re.sub(r"<!-- options:(\w+) -->.*?<!-- /options:\1 -->", fill, text, flags=re.S)


def stale(root: Path = ROOT) -> list[str]:
    """The files under ``root`` whose tables differ from the code."""
    return [name for name in FILES if render(text := (root / name).read_text(encoding="utf-8")) != text]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        bad = stale()
        for name in bad:
            print(f"{name}: option tables differ from config.py; run `make docs` (python -m n2g_site.docgen)")
        return 1 if bad else 0
    if args:
        print("usage: python -m n2g_site.docgen [--check]")
        return 2
    for name in FILES:
        path = ROOT / name
        path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
