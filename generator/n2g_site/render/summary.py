"""A one-line, rule-based description of a graph, and how many separate triggers it has.

No language model is involved: the sentence is read off the trie. Activating tokens come first, ranked by
the strongest activation any of their patterns predicts; for each, the context tokens that its patterns
require, ranked by importance, with where they stand::

    fires on “ except” after “ all” or “ everything”; “ unless”
    fires on “ Paris” after “ in” or with “ to” 2 tokens before; “ London” (+3 more tokens)

``groups`` is a rough polysemanticity signal from the graph's shape: activating tokens are joined into one
group when they share a context token (they fire in the same kind of context) or are of the same kind
(all digits, all punctuation, all whitespace); the number of groups that remain is the number of
unrelated triggers the graph explains. A graph for "' Paris' or ' London' after ' in'" has 1 group; one for
"' except', or any digit, or ' Paris' after ' in'" has 3.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from ..n2g.graph import Graph, Node
from .tokens import display_token

MAX_TRIGGERS = 3  # activating tokens named in a summary
MAX_CONTEXT = 3  # context tokens named per activating token


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
    if all(unicodedata.category(ch).startswith("P") or unicodedata.category(ch).startswith("S") for ch in body):
        return "punctuation"
    return None


def _triggers(graph: Graph) -> list[tuple[Node, float, list[tuple[int, Node]]]]:
    """Per activating-token key: (its node, best predicted value, [(depth, context node)]), strongest first."""
    children = graph.children()
    by_key: dict[str, tuple[Node, float, dict[str, tuple[int, Node]]]] = {}
    for root in graph.activating_tokens:
        if root.key is None:
            continue
        best = root.end if root.end is not None else float("-inf")
        context: dict[str, tuple[int, Node]] = {}
        stack = list(children.get(root.id, []))
        while stack:
            node = graph.nodes[stack.pop()]
            if node.end is not None:
                best = max(best, node.end)
            if node.key is not None:
                seen = context.get(node.key)
                if seen is None or (node.importance, -node.depth) > (seen[1].importance, -seen[0]):
                    context[node.key] = (node.depth, node)
            stack.extend(children.get(node.id, []))
        if root.key in by_key:  # the same key under two roots cannot happen in a trie; keep the stronger
            old = by_key[root.key]
            if old[1] >= best:
                continue
        by_key[root.key] = (root, best, context)
    ranked = sorted(by_key.values(), key=lambda t: (-t[1], -t[0].count, t[0].id))
    out = []
    for root, best, context in ranked:
        ctx = sorted(context.values(), key=lambda dn: (-dn[1].importance, dn[0], dn[1].id))
        out.append((root, best, ctx))
    return out


def _phrase(root: Node, alone: bool, context: list[tuple[int, Node]]) -> str:
    text = _quote(root.token)
    if alone or not context:
        return text
    shown = context[:MAX_CONTEXT]
    after = [_quote(node.token) for depth, node in shown if depth == 1]
    parts = [f"after {' or '.join(after)}"] if after else []
    parts += [f"with {_quote(node.token)} {depth} tokens before" for depth, node in shown if depth > 1]
    return f"{text} {' or '.join(parts)}"


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
    phrases = [_phrase(root, root.end is not None, ctx) for root, _, ctx in triggers[:MAX_TRIGGERS]]
    summary = "fires on " + "; ".join(phrases)
    if len(triggers) > MAX_TRIGGERS:
        more = len(triggers) - MAX_TRIGGERS
        summary += f" (+{more} more token{'s' if more > 1 else ''})"
    return Shape(summary, _groups(triggers))


def _groups(triggers: list[tuple[Node, float, list[tuple[int, Node]]]]) -> int:
    """Connected components of activating tokens linked by a shared context key or the same kind."""
    parent = list(range(len(triggers)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[tuple[str, str], int] = {}
    for i, (root, _, context) in enumerate(triggers):
        labels = [("ctx", node.key or "") for _, node in context]
        kind = _kind(root.key or "")
        if kind is not None:
            labels.append(("kind", kind))
        for label in labels:
            j = owner.setdefault(label, i)
            parent[find(i)] = find(j)
    return len({find(i) for i in range(len(triggers))})
