"""A one-line, rule-based description of a graph, and how many separate triggers it has.

No language model is involved: the sentence is read off the trie. Activating tokens come first, ranked by
the strongest activation any of their patterns predicts; for each, the contexts its patterns require,
strongest pattern first::

    fires on “ except” after “ all” or “ everything”; “ unless”
    fires on “ Paris” after “ in” or “ to” ‹any›; “ London” (+3 more tokens)

Each alternative after "after" is one pattern's context in reading order (every token of it required,
‹any› = exactly one token of any value); a token that fires by itself is named alone.

The line is one line: at most :data:`MAX_SUMMARY_CHARS` characters. A token longer than
:data:`MAX_TOKEN_CHARS` is cut with "…"; a context longer than :data:`MAX_CONTEXT_TOKENS` tokens (a whole
sentence copied into a pattern) keeps only its tokens nearest the activating one, after "…"; activating tokens
are named strongest first while the line has room (at least one, itself cut to fit), the rest counted
"(+N more tokens)". :attr:`Shape.triggers` has the phrase of every activating token (up to
:data:`MAX_LISTED`, tokens cut at :data:`MAX_LISTED_TOKEN_CHARS`, its strongest context named and the others
counted, so the list stays a few hundred bytes): the full list a neuron page shows a click away.

``groups`` is a rough polysemanticity signal from the graph's shape: activating tokens are joined into one
group when they share a context token (they fire in the same kind of context) or are of the same kind
(all digits, all punctuation, all symbols, all whitespace); the number of groups that remain is the number of
unrelated triggers the graph explains. A graph for "' Paris' or ' London' after ' in'" has 1 group; one for
"' except', or any digit, or ' Paris' after ' in'" has 3.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from ..n2g.graph import Graph, Node
from .tokens import display_token

MAX_TRIGGERS = 3  # activating tokens named in a summary, at most
MAX_CONTEXT = 3  # pattern contexts named per activating token
MAX_SUMMARY_CHARS = 160  # the one line, "(+N more tokens)" included
MAX_TOKEN_CHARS = 16  # a token in the one line, "…" included
MAX_CONTEXT_TOKENS = 4  # tokens of one context named; a longer one keeps its nearest 3 after "…"
MAX_LISTED = 5  # activating tokens in the full list (Shape.triggers), past the line; the rest counted (all in the data)
MAX_LISTED_TOKEN_CHARS = 20  # a token in the full list
MAX_LISTED_CONTEXT = 1  # contexts named per activating token in the full list (the rest counted)


@dataclass(frozen=True)
class Shape:
    """What the summary and the filters use."""

    summary: str  # "" for an empty graph
    groups: int  # separate activating-token groups (0 for an empty graph)
    triggers: tuple[str, ...] = ()  # every activating token's phrase, strongest first (up to MAX_LISTED)
    more: int = 0  # activating tokens beyond those in ``triggers``
    named: int = 0  # activating tokens the one line names (the first ``named`` of ``triggers``)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quote(token: str, limit: int = MAX_TOKEN_CHARS) -> str:
    return f"“{_cut(display_token(token), limit)}”"


def _kind(key: str) -> str | None:
    """The class that joins single triggers into one group, or None (a token of its own)."""
    body = key.strip() or key
    if body.isdigit():
        return "digits"
    if body.isspace():
        return "whitespace"
    categories = {unicodedata.category(ch)[0] for ch in body}
    if categories == {"P"}:
        return "punctuation"
    if categories == {"S"}:  # math, currency, emoji...: a kind of their own, not punctuation
        return "symbols"
    return None


ANY = "‹any›"  # an ignore element in a summary: exactly one token of any value


def _triggers(graph: Graph) -> list[tuple[Node, float, list[list[Node | None]], list[Node]]]:
    """Per activating token: (its node, best predicted value, the contexts of its complete patterns (earliest
    token first, None = any one token; strongest pattern first), every keyed context node below it),
    strongest activating token first."""
    children = graph.children()
    out = []
    for root in graph.activating_tokens:
        if root.key is None:
            continue
        patterns: list[tuple[float, int, list[Node | None]]] = []
        keyed: list[Node] = []
        if root.end is not None:
            patterns.append((root.end, root.id, []))
        stack = list(children.get(root.id, []))
        while stack:
            node = graph.nodes[stack.pop()]
            if node.key is not None:
                keyed.append(node)
            if node.end is not None:
                path = graph.path(node.id)[1:]  # context, nearest first
                patterns.append((node.end, node.id, [n if n.key is not None else None for n in reversed(path)]))
            stack.extend(children.get(node.id, []))
        if not patterns:
            continue
        patterns.sort(key=lambda p: (-p[0], len(p[2]), p[1]))
        out.append((root, patterns[0][0], [p[2] for p in patterns], keyed))
    out.sort(key=lambda t: (-t[1], -t[0].count, t[0].id))
    return out


def _phrase(
    root: Node, contexts: list[list[Node | None]], limit: int = MAX_TOKEN_CHARS, most: int = MAX_CONTEXT
) -> str:
    """``“ Paris”`` when the token fires alone, else ``“ Paris” after “ in” or “ to” ‹any›``: each
    alternative is one pattern's context in reading order, every token of it required (a long one elided
    to its nearest tokens); tokens cut at ``limit`` characters."""
    text = _quote(root.token, limit)
    if any(not c for c in contexts):
        return text
    seen: list[str] = []
    for context in contexts:
        named = [ANY if n is None else _quote(n.token, limit) for n in context]
        if len(named) > MAX_CONTEXT_TOKENS:
            named = ["…", *named[-(MAX_CONTEXT_TOKENS - 1) :]]
        words = " ".join(named)
        if words not in seen:
            seen.append(words)
    shown = seen[:most]
    left = len(seen) - len(shown)
    more = f" (+{left} more context{'s' if left > 1 else ''})" if left else ""
    return f"{text} after {' or '.join(shown)}{more}"


def describe(graph: Graph) -> Shape:
    """The graph's one-line summary, its number of trigger groups and the triggers listed past the line.

    >>> from n2g_site.n2g.graph import Node
    >>> g = Graph([Node(0, -1, 0, "except", " except", 1.0, 0.9), Node(1, 0, 1, "all", " all", 0.8, 0.0, 0.9, 1),
    ...            Node(2, 0, 1, "everything", " everything", 0.7, 0.0, 0.8, 1)])
    >>> describe(g)  # doctest: +NORMALIZE_WHITESPACE
    Shape(summary='fires on “ except” after “ all” or “ everything”', groups=1,
          triggers=('“ except” after “ all” (+1 more context)',), more=0, named=1)
    """
    triggers = _triggers(graph)
    if not triggers:
        return Shape("", 0)
    listed = tuple(
        _phrase(root, contexts, MAX_LISTED_TOKEN_CHARS, MAX_LISTED_CONTEXT)
        for root, _, contexts, _ in triggers[:MAX_LISTED]
    )
    line, named = _one_line(triggers)
    return Shape(line, _groups(triggers), listed, max(0, len(triggers) - MAX_LISTED), named)


def _more(n: int) -> str:
    return f" (+{n} more token{'s' if n > 1 else ''})" if n else ""


def _one_line(triggers: list[tuple[Node, float, list[list[Node | None]], list[Node]]]) -> tuple[str, int]:
    """The line: "fires on " + the strongest activating tokens' phrases that fit in :data:`MAX_SUMMARY_CHARS`
    (the first one always, cut to fit), then the count of the rest; and how many phrases it names."""
    phrases = [_phrase(root, contexts) for root, _, contexts, _ in triggers[:MAX_TRIGGERS]]
    head = "fires on "
    # the longest "(+N more tokens)" this line can need, so the line stays in its cap whatever N is
    room = MAX_SUMMARY_CHARS - len(head) - len(_more(len(triggers)))
    kept: list[str] = []
    for phrase in phrases:
        line = "; ".join([*kept, phrase])
        if len(line) > room:
            if not kept:
                kept.append(_cut(phrase, room))
            break
        kept.append(phrase)
    return head + "; ".join(kept) + _more(len(triggers) - len(kept)), len(kept)


def _groups(triggers: list[tuple[Node, float, list[list[Node | None]], list[Node]]]) -> int:
    """Connected components of activating tokens linked by a shared context key or the same kind."""
    parent = list(range(len(triggers)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[tuple[str, str], int] = {}
    for i, (root, _, _, keyed) in enumerate(triggers):
        labels = [("ctx", node.key or "") for node in keyed]
        kind = _kind(root.key or "")
        if kind is not None:
            labels.append(("kind", kind))
        for label in labels:
            j = owner.setdefault(label, i)
            parent[find(i)] = find(j)
    return len({find(i) for i in range(len(triggers))})
