"""The N2G graph: a trie of token patterns that make a neuron fire, and how it is built from lines.

A *line* is one activating token with the context that mattered for it, read right to left: element 0 is
the activating token, element d is the token d positions before it, or ``None`` ("ignore": exactly one
token of any value) where the token in between was not important. The trie stores every line from its
root; a node whose line may stop there carries ``end``, the normalised activation predicted for a match.

JSON form (``graph`` in a neuron's fit file; JSON Schema in ``schemas/graph.schema.json``)::

    {"nodes": [{"id": 0, "parent": -1, "depth": 0, "key": "paris", "token": " Paris",
                "importance": 1.0, "activation": 0.92, "end": null, "count": 3}, ...]}

- ``parent`` is -1 for the activating tokens (depth 0, the trie's roots); nodes are listed parents first.
- ``key`` is the normalised token (see :func:`normalise`) or null for an ignore node; ``token`` is the
  first raw token string seen there (empty for ignore).
- ``importance`` is the largest saliency of this context token for the activating token seen in any line
  (1.0 for activating tokens); ``activation`` the largest normalised activation of the token itself.
- ``end`` is the largest normalised activation of the activating token over the lines that stop here
  (null if no line stops here); ``count`` is how many lines pass through the node.

Where we differ from the original code (docs/algorithm.md, "Deviations"): ``end`` and the node values take the
maximum over lines instead of the first one inserted, so a graph does not depend on example order; the
trie is searched with backtracking (predict.py) instead of being rewritten by ``merge_ignores``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

SCHEMA = "n2g-site/graph/1"


def normalise(token: str) -> str:
    """The trie key of a token string: ' The', 'The' and ' the' all become 'the'.

    As the original: title-case tokens longer than one character are lower-cased, then tokens longer than
    one character that contain a letter lose surrounding whitespace. Whitespace and punctuation tokens
    keep their exact form.

    >>> [normalise(t) for t in (" The", "The", " the", " THE", " ", "\\n", "a")]
    ['the', 'the', 'the', 'THE', ' ', '\\n', 'a']
    """
    if len(token) > 1 and token.istitle():
        token = token.lower()
    if len(token) > 1 and any(ch.isalpha() for ch in token):
        token = token.strip()
    return token


@dataclass
class Element:
    """One position of a line."""

    key: str | None  # normalised token, None = ignore
    token: str  # raw token string (for display)
    importance: float  # saliency of this position for the activating token
    activation: float  # normalised activation of this token itself


@dataclass
class Line:
    elements: list[Element]  # element 0 = activating token, then earlier positions
    end: float  # normalised activation of the activating token


@dataclass
class Node:
    id: int
    parent: int
    depth: int
    key: str | None
    token: str
    importance: float
    activation: float
    end: float | None = None
    count: int = 0


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)

    def children(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for node in self.nodes:
            out.setdefault(node.parent, []).append(node.id)
        return out

    def path(self, node_id: int) -> list[Node]:
        """Nodes from the activating token (depth 0) down to ``node_id``."""
        out = []
        while node_id >= 0:
            node = self.nodes[node_id]
            out.append(node)
            node_id = node.parent
        return out[::-1]

    def patterns(self) -> list[tuple[list[str | None], float]]:
        """Every complete match: the keys from the activating token backwards, and the predicted value."""
        return [([n.key for n in self.path(node.id)], node.end) for node in self.nodes if node.end is not None]

    @property
    def activating_tokens(self) -> list[Node]:
        return [n for n in self.nodes if n.parent == -1]

    @property
    def depth(self) -> int:
        return max((n.depth for n in self.nodes), default=-1) + 1

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "nodes": [asdict(n) for n in self.nodes]}

    @classmethod
    def from_json(cls, data: dict, *, check_schema: bool = False) -> Graph:
        """Load a graph, checking node order, parents and depths (cheap, always).

        ``check_schema=True`` also validates against ``schemas/graph.schema.json`` (~3 ms for 50 nodes): for
        files from elsewhere; the stages reading our own fit files skip it.
        """
        if check_schema:
            from ..schemas import validate

            validate(data, "graph")
        elif data.get("schema") != SCHEMA:
            raise ValueError(f"graph schema {data.get('schema')!r} is not {SCHEMA!r}")
        nodes = [Node(**n) for n in data["nodes"]]
        for i, node in enumerate(nodes):
            if (
                node.id != i
                or node.parent >= i
                or (node.parent == -1) != (node.depth == 0)
                or (node.parent >= 0 and nodes[node.parent].depth != node.depth - 1)
            ):
                raise ValueError(f"graph node {i} is out of order or has a bad parent/depth")
        return cls(nodes)


def make_lines(
    tokens: Sequence[str],
    keys: Sequence[str | None],
    norm_acts: Sequence[float] | np.ndarray,
    importance: Sequence[Sequence[float]] | np.ndarray,
    *,
    activation_threshold: float,
    importance_threshold: float,
    skip: Sequence[bool] | None = None,
    positions: Iterable[int] | None = None,
    also_important: Sequence[Sequence[bool]] | np.ndarray | None = None,
) -> list[Line]:
    """Lines of one pruned sample (``make_line`` in the original).

    ``importance[k][i]`` is the effect of occluding position k on the activation at position i.
    ``skip[j]`` marks positions that take no slot (the BOS token). One line is made for each position whose
    normalised activation exceeds ``activation_threshold`` (strictly); its context keeps the positions whose
    importance exceeds ``importance_threshold`` (strictly), unimportant positions in between become ignore
    elements, and everything left of the leftmost important position is dropped. For an augmented sample,
    ``also_important[k][i]`` marks what was important in the sample it was made from (same positions).
    """
    skip = skip if skip is not None else [False] * len(tokens)
    lines = []
    for i in positions if positions is not None else range(len(tokens)):
        if skip[i] or not norm_acts[i] > activation_threshold:
            continue
        elements: list[Element] = []
        last_important = 0
        for j in range(i, -1, -1):
            if skip[j]:
                continue
            important = (
                j == i
                or importance[j][i] > importance_threshold
                or (also_important is not None and also_important[j][i])
            )
            elements.append(
                Element(
                    key=keys[j] if important else None,
                    token=tokens[j] if important else "",
                    importance=1.0 if j == i else float(importance[j][i]),
                    activation=float(norm_acts[j]),
                )
            )
            if important:
                last_important = len(elements)
        lines.append(Line(elements=elements[:last_important], end=float(norm_acts[i])))
    return lines


def build_graph(lines: Iterable[Line]) -> Graph:
    """Insert lines into a trie; identical paths share nodes, values take the maximum over lines."""
    graph = Graph()
    index: dict[tuple[int, str | None], int] = {}
    for line in lines:
        parent = -1
        for depth, el in enumerate(line.elements):
            node_id = index.get((parent, el.key))
            if node_id is None:
                node_id = len(graph.nodes)
                graph.nodes.append(Node(node_id, parent, depth, el.key, el.token, el.importance, el.activation))
                index[(parent, el.key)] = node_id
            node = graph.nodes[node_id]
            node.importance = max(node.importance, el.importance)
            node.activation = max(node.activation, el.activation)
            node.count += 1
            parent = node_id
        if parent >= 0:
            node = graph.nodes[parent]
            node.end = line.end if node.end is None else max(node.end, line.end)
    return graph
