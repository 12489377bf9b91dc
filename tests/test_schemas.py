"""The documented JSON formats: what fit writes validates, and broken data is refused with a clear message."""

import copy

import pytest

from n2g_site.config import FitConfig
from n2g_site.n2g.graph import Graph
from n2g_site.n2g.phases import fit_neurons
from n2g_site.schemas import validate
from synthetic import VOCAB, SyntheticSource, TableProposer, paris_after_place_word, task_from_texts


@pytest.fixture(scope="module")
def graph_json():
    source = SyntheticSource({(0, 7): paris_after_place_word})
    task = task_from_texts(source, 0, 7, [" He lives in Paris.", " She was born in Paris on Monday."])
    [fitted] = fit_neurons([task], source, FitConfig(), VOCAB, TableProposer([" at", " on"]))
    return fitted.graph.to_json()


def test_a_fitted_graph_validates_and_round_trips(graph_json):
    validate(graph_json, "graph")
    assert Graph.from_json(graph_json, check_schema=True).to_json() == graph_json
    assert Graph.from_json(graph_json) == Graph.from_json(graph_json, check_schema=True)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g["nodes"][0].pop("key"), "'key' is a required property"),
        (lambda g: g["nodes"][0].update(count=0), "nodes/0/count"),
        (lambda g: g.update(schema="n2g-site/graph/0"), "schema"),
        (lambda g: g["nodes"][1].update(parent=5), "out of order"),
    ],
)
def test_broken_graphs_are_refused(graph_json, edit, message):
    data = copy.deepcopy(graph_json)
    edit(data)
    with pytest.raises(ValueError, match=message):
        Graph.from_json(data, check_schema=True)
