from dataclasses import fields as dc_fields
from pathlib import Path

import pytest

from n2g_site.config import (
    GROUPS,
    MOVED,
    SECTIONS,
    Config,
    EvaluateConfig,
    FitConfig,
    MineConfig,
    UserError,
    declared,
    load_toml,
    merge,
    option_of,
    parse_ranges,
    upgrade,
)


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


# ------------------------------------------------------------------------------ declared options


def test_every_field_is_declared_once_with_help_and_a_known_group():
    options = list(declared())
    flags = [o.flag for o in options]
    assert len(flags) == len(set(flags)), "two options share a flag"
    for cls in (Config, *SECTIONS.values()):
        for f in dc_fields(cls):
            assert f.name in SECTIONS or option_of(f) is not None, f"{cls.__name__}.{f.name} has no Option"
    for o in options:
        assert o.option.help.endswith(".") and "Default:" not in o.option.help, o.flag
        assert o.option.group in GROUPS, o.flag
        assert o.kind in (int, float, str, bool, Path), o.flag


def test_the_defaults_pass_their_own_checks():
    for o in declared():
        assert o.option.allows(o.default), o.flag
    Config().validate()


@pytest.mark.parametrize(
    ("section", "name", "value", "message"),
    [
        ("mine", "held_out", 1.0, "--held-out 1.0 must lie strictly between 0 and 1, e.g. 0.2"),
        ("mine", "max_tokens", -1, "--max-tokens -1 must be 0 or more (0 = the whole corpus)"),
        ("mine", "top_k", 0, "--top-k 0 must be 1 or more"),
        ("fit", "pivot_threshold", 0.0, "--pivot-threshold 0.0 must be above 0 and at most 1, e.g. 0.75"),
        ("fit", "augmenter", "bert", "--augmenter 'bert' is not one of auto, self, mlm, none"),
        ("evaluate", "fire_threshold", 1.5, "--fire-threshold 1.5 must lie between 0 and 1"),
        ("evaluate", "ngram", 0, "--ngram 0 must be 1 or more (1 = the token alone)"),
        ("", "checkpoint_seconds", -1.0, "--checkpoint-seconds -1.0 must be 0 or more (0 = after every batch)"),
        ("", "bad_utf8", "ignore", "--bad-utf8 'ignore' is not one of fail, skip"),
    ],
)
def test_range_errors_come_from_the_declaration(section, name, value, message):
    from dataclasses import replace

    cfg = Config()
    cfg = (
        replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})
        if section
        else replace(cfg, **{name: value})
    )
    with pytest.raises(UserError) as err:
        cfg.validate()
    assert str(err.value) == message


def test_sections_hold_the_stage_options():
    assert {f.name for f in dc_fields(EvaluateConfig)} == {
        "fire_threshold",
        "ngram",
        "ood_corpus",
        "ood_tokens",
        "ordinary_eval_tokens",
    }
    assert "fire_threshold" not in {f.name for f in dc_fields(FitConfig)}
    assert "batch_tokens" in {f.name for f in dc_fields(MineConfig)}


# Fit files made before fire_threshold moved to [evaluate] recorded exactly these options ("config"); fit
# reuses a file only when its config equals Config.fit_record(). A new fit option changes this record and so
# makes every existing fit stale: change this dict on purpose, and say so in CHANGELOG.md.
FIT_RECORD_BEFORE_THE_MOVE = {
    "train_examples": 10, "pivot_threshold": 1.0, "prune_threshold": 0.5, "prune_step": 5, "prune_max_context": 30,
    "post_context": 5, "sentence_ends": ".!\n", "mask_token": None, "activation_threshold": 0.5,
    "importance_threshold": 0.75, "fire_threshold": 0.5, "augmenter": "auto", "augment_importance_threshold": 0.8,
    "augment_per_position": 5, "augment_min_prob": 1e-5, "augment_keep_threshold": 0.5,
    "mlm_model": "distilbert-base-uncased",
}  # fmt: skip


def test_fit_record_keeps_existing_fit_files_current(tmp_path):
    record = Config().fit_record()
    assert record.pop("fit_batch_tokens") is None  # fit resolves it (4096 on the CPU) and records the number
    # The calibration options: a file without them is not fitted again, only calibrated (calibrate.recalibratable).
    calibration = (record.pop("paper"), record.pop("calibration_tokens"), record.pop("token_patterns"))
    assert calibration == (False, 16384, 1)
    assert record == FIT_RECORD_BEFORE_THE_MOVE
    # A file from before --fit-batch-tokens was fitted in groups of 4, which is what 4096 means: still current.
    from dataclasses import replace

    from n2g_site.fit import SCHEMA, _is_current, _reuse, fit_options
    from n2g_site.store import write_json

    old = tmp_path / "N00000.json"
    write_json(old, {"schema": SCHEMA, "status": "fitted", "config": FIT_RECORD_BEFORE_THE_MOVE})
    cfg = Config()
    # Its graph is reused: only calibrated (or, with --paper, its config rewritten), never fitted again.
    assert _reuse(old, replace(cfg, fit=fit_options(cfg)).fit_record(), "fp32", None, "cpu") == "recalibrate"
    new = {**FIT_RECORD_BEFORE_THE_MOVE, "paper": False, "calibration_tokens": 16384, "token_patterns": 1}
    new["fit_batch_tokens"] = 4096
    write_json(old, {"schema": SCHEMA, "status": "fitted", "config": new})
    assert _is_current(old, replace(cfg, fit=fit_options(cfg)).fit_record(), "fp32")
    gpu = Config(device="cuda")
    assert _reuse(old, replace(gpu, fit=fit_options(gpu)).fit_record(), "fp32", None, "cpu") == "fit"  # groups of 256
    moved = merge(Config(), {"evaluate": {"fire_threshold": 0.4}}, source="x")
    assert moved.fit_record()["fire_threshold"] == 0.4


def test_moved_toml_keys_are_read_at_their_new_place_with_a_note(tmp_path: Path):
    path = tmp_path / "n2g.toml"
    path.write_text("ngram = 3\n[fit]\nfire_threshold = 0.4\nprune_step = 2\n")
    notes: list[str] = []
    cfg = merge(Config(), load_toml(path, notes), source=str(path)).validate()
    assert (cfg.evaluate.fire_threshold, cfg.evaluate.ngram, cfg.fit.prune_step) == (0.4, 3, 2)
    assert len(notes) == len(MOVED) == 2
    assert "[fit] fire_threshold is now [evaluate] fire_threshold" in notes[0]
    assert "top-level ngram is now [evaluate] ngram" in notes[1]


def test_a_key_set_in_its_old_and_new_place_is_an_error():
    with pytest.raises(UserError, match=r"\[fit\] fire_threshold and \[evaluate\] fire_threshold both set"):
        upgrade({"fit": {"fire_threshold": 0.4}, "evaluate": {"fire_threshold": 0.5}}, source="n2g.toml")


def test_a_moved_key_passed_directly_names_its_new_table():
    with pytest.raises(UserError, match=r"unknown option 'fire_threshold' in \[fit\] \(it is now in \[evaluate\]\)"):
        merge(Config(), {"fit": {"fire_threshold": 0.4}}, source="x")


def test_a_fit_option_declared_not_recorded_leaves_fits_current():
    from dataclasses import make_dataclass

    from n2g_site.config import option

    extended = make_dataclass(
        "Extended",
        [
            ("budget", int, option(8, "Tokens in flight.", "fit", minimum=1, record=False)),
            ("strict", bool, option(False, "Changes graphs.", "fit")),
        ],
        bases=(FitConfig,),
        frozen=True,
    )
    cfg = Config(fit=extended(budget=64))
    record = cfg.fit_record()
    assert "budget" not in record and record["strict"] is False
    assert {
        k: v
        for k, v in record.items()
        if k not in ("strict", "fit_batch_tokens", "paper", "calibration_tokens", "token_patterns")
    } == FIT_RECORD_BEFORE_THE_MOVE
