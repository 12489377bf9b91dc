"""Token strings made visible: whitespace and control characters get a printable stand-in.

Used for example tokens and graph labels alike. No HTML escaping happens here: Jinja's autoescape
(pages) and svg_compact.py (SVG) do that.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence

# Stand-ins for the whitespace that matters in a token.
_VISIBLE = {"\n": "⏎", "\t": "⇥", "\r": "↵"}
SPACE = "␣"
EMPTY = "∅"


def _char(ch: str) -> str:
    if ch in _VISIBLE:
        return _VISIBLE[ch]
    if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


def vocab_text(vocab: Sequence[str], token_id: int) -> str:
    """Entry ``token_id`` of ``vocab``, or ``<token_id>`` for an id outside it (a page still shows the token).

    >>> vocab_text(["a", "b"], 1), vocab_text(["a", "b"], 7)
    ('b', '<7>')
    """
    return vocab[token_id] if 0 <= token_id < len(vocab) else f"<{token_id}>"


@functools.lru_cache(maxsize=1 << 17)  # pure; the same tokens recur across a layer's graphs and pages
def display_token(s: str, *, inline: bool = False) -> str:
    """A token as it should be shown.

    ``inline=True`` is for running example text: spaces stay spaces there, even in a whitespace-only
    token, so sentences read naturally (newlines, tabs and control characters are still made visible).

    ``"\\n"`` -> ``"⏎"``, ``"\\t"`` -> ``"⇥"``, other control characters -> ``"\\x07"``-style escapes,
    and a token made only of whitespace shows each space as ``"␣"``. A token with letters keeps its
    spaces (``" Paris"`` stays ``" Paris"``, so example text reads naturally). The empty string -> ``"∅"``.

    >>> [display_token(t) for t in ("\\n", "\\t", " ", "  ", " Paris", "\\x07", "a\\nb", "")]
    ['⏎', '⇥', '␣', '␣␣', ' Paris', '\\\\x07', 'a⏎b', '∅']
    """
    if not s:
        return EMPTY
    if s.isspace() and not inline:
        return "".join(SPACE if unicodedata.category(ch) == "Zs" else _char(ch) for ch in s)
    return "".join(_char(ch) for ch in s)
