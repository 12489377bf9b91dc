"""What a neuron's graph drawing shows: the trie's strongest patterns, up to a node budget.

A *pattern* is a trie node where a match may stop (``end`` not null) together with its path from the
activating token (``Graph.patterns``). The drawing is the trie itself, never a merge of equal tokens
across patterns: two nodes are one drawn node only when they are one trie node, i.e. they share the whole
pattern prefix from the activating token. So every drawn path from an activating token to a node marked
as an end is a pattern of the graph, and a path that ends at a node without that mark is the unfinished
part of a longer pattern, never a pattern of its own.

Huge graphs (the demo has a 1,712-node trie) are drawn partially: patterns are ranked strongest first
(:func:`pattern_rank`) and taken in that order while their new nodes fit in ``max_nodes``
(:data:`MAX_NODES`) and their branch ends in ``max_rows`` rows (:data:`MAX_ROWS`, the drawing's height); a
pattern that does not fit, or is longer than ``max_depth`` tokens (:data:`MAX_DEPTH`), is left out, and weaker ones may
still fill the budget. A drawn pattern brings its
whole path, so every prefix of it that is a pattern is drawn too, and the counts (:class:`Selection`) say
how many patterns and nodes exist and how many are drawn. A graph whose every pattern is too long has its
strongest pattern drawn whole, so a drawing always shows at least one pattern.

>>> from n2g_site.n2g.graph import Graph, Node
>>> g = Graph([Node(0, -1, 0, "paris", " Paris", 1.0, 0.9, None, 3),
...            Node(1, 0, 1, "in", " in", 0.9, 0.0, 0.9, 2), Node(2, 0, 1, "of", " of", 0.8, 0.0, 0.4, 1)])
>>> s = select(g, max_nodes=2, max_depth=10, max_rows=20)
>>> s.nodes, s.drawn_patterns, s.patterns, s.hidden
((0, 1), 1, 2, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..n2g.graph import Graph, Node

# 22 nodes: the drawing is the largest part of a neuron page, paid once per neuron of a whole-model site. At 60
# nodes the demo's large graphs (79-1,712 trie nodes) showed 16-25 patterns in at most ~12 KB of SVG
# (benchmarks/README.md, "Graph drawings"); 40 kept their strongest patterns in at most ~8 KB. With svg_compact's
# lighter nodes the synthetic benchmark's graphs take 3.6 KB of drawing on average at 25 nodes (30: 4.1 KB;
# benchmarks/README.md, "Site size, third pass"); 22 (fourth pass) pays for the activation-band list that band
# windows added to each page.
MAX_NODES = 22
# 20 rows (branch ends; a row is ~31 pt): a drawing at most ~620 pt (~830 px) tall, so the top of a neuron
# page at 1400 x 900 shows most of it beside the summary. Without it the demo's capped drawings were up to
# 31 rows (~1,300 px) tall.
MAX_ROWS = 20
# 10 tokens: a drawn column is ~76 pt (a short token's box and the gap to the next), so a drawing is at
# most ~760 pt (~1,000 px) wide and, shrunk to a page's column, its labels stay readable. Longer patterns
# (the demo has patterns of up to 30 tokens: whole training sentences) are counted, not drawn.
MAX_DEPTH = 10


def pattern_rank(node: Node) -> tuple[float, int, int, int]:
    """Sort key of a pattern's end node, strongest first: the predicted activation (``end``), then its
    support (``count``: training lines through that node), then the shorter pattern, then the node id
    (trie order; deterministic for a given graph)."""
    return (-float(node.end if node.end is not None else float("-inf")), -node.count, node.depth, node.id)


@dataclass(frozen=True)
class Selection:
    """The trie nodes a drawing shows and what it leaves out."""

    nodes: tuple[int, ...]  # node ids to draw, parents first, the strongest branch of each node first
    total: int  # nodes in the trie
    patterns: int  # patterns in the trie (nodes with an end)
    drawn_patterns: int  # patterns among the drawn nodes (chosen ones and their prefixes that are patterns)

    @property
    def drawn(self) -> int:
        return len(self.nodes)

    @property
    def hidden(self) -> int:
        """Trie nodes left out of the drawing."""
        return self.total - len(self.nodes)

    @property
    def hidden_patterns(self) -> int:
        return self.patterns - self.drawn_patterns


def select(
    graph: Graph, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH, max_rows: int = MAX_ROWS
) -> Selection:
    """The nodes to draw: whole patterns of at most ``max_depth`` tokens, strongest first, while they fit in
    ``max_nodes`` nodes and ``max_rows`` rows (branch ends) (module docstring).

    Nodes come back in drawing order: a depth-first walk where the activating tokens and every node's
    children are ordered by the rank of the strongest chosen pattern through them, so layout.py, which stacks
    the leaves in this order, puts the strongest pattern on top.
    """
    if min(max_nodes, max_depth, max_rows) < 1:
        raise ValueError(
            f"max_nodes={max_nodes!r}, max_depth={max_depth!r}, max_rows={max_rows!r}: a drawing "
            "needs at least 1 of each"
        )
    nodes = graph.nodes
    ends = sorted((n for n in nodes if n.end is not None), key=pattern_rank)
    fitting = [(rank, end) for rank, end in enumerate(ends) if end.depth < max_depth]
    chosen: set[int] = set()
    best: dict[int, int] = {}  # node id -> rank of the strongest chosen pattern through it
    parents: set[int] = set()  # chosen nodes with a chosen child
    rows = 0  # chosen leaves: the drawing's height in rows
    for rank, end in fitting or list(enumerate(ends))[:1]:
        path: list[int] = []
        node_id = end.id
        while node_id >= 0 and node_id not in chosen:
            path.append(node_id)
            node_id = nodes[node_id].parent
        if not path:
            continue  # a prefix of a chosen pattern: drawn already
        # Joining the drawing below a leaf extends that row; anywhere else it opens a row.
        new_rows = 0 if node_id >= 0 and node_id not in parents else 1
        if chosen and (len(chosen) + len(path) > max_nodes or rows + new_rows > max_rows):
            continue
        chosen.update(path)
        parents.update(path[1:])
        if node_id >= 0:
            parents.add(node_id)
        rows += new_rows
        node_id = end.id
        while node_id >= 0 and node_id not in best:
            best[node_id] = rank
            node_id = nodes[node_id].parent
    children: dict[int, list[int]] = {}
    for node_id in sorted(chosen, key=lambda i: (best[i], i)):
        children.setdefault(nodes[node_id].parent, []).append(node_id)
    order: list[int] = []
    stack = list(reversed(children.get(-1, [])))
    while stack:
        node_id = stack.pop()
        order.append(node_id)
        stack.extend(reversed(children.get(node_id, [])))
    return Selection(
        nodes=tuple(order),
        total=len(nodes),
        patterns=len(ends),
        drawn_patterns=sum(1 for i in order if nodes[i].end is not None),
    )
