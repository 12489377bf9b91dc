from pathlib import Path

import pytest

from n2g_site.config import Config, UserError, load_toml, merge, parse_ranges


def test_parse_ranges_sorts_and_dedupes():
    assert parse_ranges("5,0,3-4,4", what="--layers") == (0, 3, 4, 5)


@pytest.mark.parametrize("text", ["a", "1-", "3-1", "1,,2"])
def test_parse_ranges_rejects_with_the_value(text):
    with pytest.raises(UserError, match=r"--layers"):
        parse_ranges(text, what="--layers")


def test_default_layers_are_evenly_spaced_and_include_both_ends():
    assert Config().select_layers(30) == (0, 6, 12, 17, 23, 29)
    assert Config().select_layers(2) == (0, 1)
    assert Config().select_layers(1) == (0,)


def test_out_of_range_layer_and_neuron_name_the_value():
    with pytest.raises(UserError, match=r"layer 7 is out of range.*0-1"):
        Config(layers="0,7").select_layers(2)
    with pytest.raises(UserError, match=r"neuron 99 is out of range.*0-63"):
        Config(neurons="99").select_neurons(64)


def test_all_and_neurons_conflict():
    with pytest.raises(UserError, match="--all"):
        Config(neurons="1", all_neurons=True).validate()


def test_toml_merges_sections_and_rejects_unknown_keys(tmp_path: Path):
    path = tmp_path / "n2g.toml"
    path.write_text('model = "random:tiny"\nwork_dir = "w"\n[mine]\ntop_k = 7\n[fit]\nimportance_threshold = 0.6\n')
    cfg = merge(Config(), load_toml(path), source=str(path)).validate()
    assert (cfg.model, cfg.work_dir, cfg.mine.top_k, cfg.fit.importance_threshold) == ("random:tiny", Path("w"), 7, 0.6)
    with pytest.raises(UserError, match="unknown option 'topk'"):
        merge(Config(), {"mine": {"topk": 1}}, source="x")


def test_bad_threshold_is_a_user_error():
    from dataclasses import replace

    with pytest.raises(UserError, match="--importance-threshold 1.5"):
        replace(Config(), fit=replace(Config().fit, importance_threshold=1.5)).validate()
