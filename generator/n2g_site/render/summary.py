"""A one-line, rule-based description of a graph, and how many separate triggers it has.

No language model is involved: the sentence is read off the trie. Activating tokens come first, ranked by
the strongest activation any of their patterns predicts; for each, the contexts its patterns require,
strongest pattern first::

    fires on “ except” after “ all” or “ everything”; “ unless”
    fires on “ Paris” after “ in” or “ to” ‹any›; “ London” (+3 more tokens)

Each alternative after "after" is one pattern's context in reading order (every token of it required,
‹any› = exactly one token of any value); a token that fires by itself is named alone.

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

MAX_TRIGGERS = 3  # activating tokens named in a summary
MAX_CONTEXT = 3  # pattern contexts named per activating token


@dataclass(frozen=True)
class Shape:
    """What the summary and the filters use."""

    summary: str  # "" for an empty graph
    groups: int  # separate activating-token groups (0 for an empty graph)


def _quote(token: str) -> str:
    return f"“{display_token(token)}”"


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


def _phrase(root: Node, contexts: list[list[Node | None]]) -> str:
    """``“ Paris”`` when the token fires alone, else ``“ Paris” after “ in” or “ to” ‹any›``: each
    alternative is one pattern's context in reading order, every token of it required."""
    text = _quote(root.token)
    if any(not c for c in contexts):
        return text
    seen: list[str] = []
    for context in contexts:
        words = " ".join(ANY if n is None else _quote(n.token) for n in context)
        if words not in seen:
            seen.append(words)
    shown = seen[:MAX_CONTEXT]
    more = f" (+{len(seen) - len(shown)} more contexts)" if len(seen) > len(shown) else ""
    return f"{text} after {' or '.join(shown)}{more}"


def describe(graph: Graph) -> Shape:
    """The graph's one-line summary and its number of trigger groups.

    >>> from n2g_site.n2g.graph import Node
    >>> g = Graph([Node(0, -1, 0, "except", " except", 1.0, 0.9), Node(1, 0, 1, "all", " all", 0.8, 0.0, 0.9, 1),
    ...            Node(2, 0, 1, "everything", " everything", 0.7, 0.0, 0.8, 1)])
    >>> describe(g)
    Shape(summary='fires on “ except” after “ all” or “ everything”', groups=1)
    """
    triggers = _triggers(graph)
    if not triggers:
        return Shape("", 0)
    phrases = [_phrase(root, contexts) for root, _, contexts, _ in triggers[:MAX_TRIGGERS]]
    summary = "fires on " + "; ".join(phrases)
    if len(triggers) > MAX_TRIGGERS:
        more = len(triggers) - MAX_TRIGGERS
        summary += f" (+{more} more token{'s' if more > 1 else ''})"
    return Shape(summary, _groups(triggers))


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
