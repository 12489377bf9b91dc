"""User mistakes end with one clear line naming the bad value, exit code 2, no traceback."""

import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from n2g_site.cli import COMMANDS, OPTIONS, app, uses


def run(*args):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["mine", "--model", "no-such-model-xyz"], "'no-such-model-xyz' is not a known model"),
        (["mine", "--model", "random:huge"], "unknown random size 'huge'"),
        (["mine", "--model", "random:tiny", "--layers", "0,5"], "layer 5 is out of range"),
        (["mine", "--model", "random:tiny", "--neurons", "64"], "neuron 64 is out of range"),
        (["mine", "--model", "random:tiny", "--layers", "x"], "--layers 'x'"),
        (["mine", "--model", "random:tiny", "--held-out", "1.5"], "--held-out 1.5"),
    ],
)
def test_bad_option_values(tmp_path, args, needle):
    code, out = run(*args, "--work-dir", str(tmp_path / "w"))
    assert code == 2, out
    assert needle in " ".join(out.split())
    assert "Traceback" not in out


def test_empty_corpus_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("   \n\t\n")
    code, out = run(
        "mine", "--model", "random:tiny", "--corpus", str(tmp_path / "empty"), "--work-dir", str(tmp_path / "w")
    )
    assert code == 2 and "holds no text" in out and "Traceback" not in out


def test_missing_corpus_path(tmp_path):
    code, out = run(
        "mine", "--model", "random:tiny", "--corpus", str(tmp_path / "nope"), "--work-dir", str(tmp_path / "w")
    )
    assert code == 2 and "does not exist" in out


def test_stage_before_its_input_says_which_stage_to_run(tmp_path):
    code, out = run("fit", "--model", "random:tiny", "--work-dir", str(tmp_path / "w"))
    assert code == 2 and "n2g-site mine" in out


def test_console_script_prints_one_line_and_exits_2(tmp_path):
    """The installed entry point itself (not the in-process runner)."""
    proc = subprocess.run(
        [sys.executable, "-m", "n2g_site.cli", "mine", "--model", "no-such-model-xyz", "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert any("no-such-model-xyz" in line for line in lines)
    assert lines[-1].startswith("error:") or "error:" in proc.stderr


def test_help_explains_every_option():
    code, out = run("build", "--help")
    assert code == 0
    for flag in (
        "--model",
        "--corpus",
        "--layers",
        "--neurons",
        "--all",
        "--top-k",
        "--work-dir",
        "--site-dir",
        "--importance-threshold",
        "--config",
    ):
        assert flag in out


def test_unwritable_work_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, out = run("mine", "--model", "random:tiny", "--work-dir", str(blocker / "work"))
    assert code == 2 and "--work-dir" in out and "is not a writable folder" in " ".join(out.split())


def test_top_k_larger_than_the_corpus_allows(tmp_path, text_corpus):
    code, out = run(
        "mine",
        "--model",
        "random:tiny",
        "--corpus",
        str(text_corpus),
        "--top-k",
        "500",
        "--work-dir",
        str(tmp_path / "w"),
    )
    assert code == 2 and "--top-k 500 is more than the" in " ".join(out.split())


def test_deploy_refuses_a_fit_option_by_name():
    code, out = run("deploy", "--augmenter", "mlm")
    assert code == 2
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: deploy does not use --augmenter (a fit option)"), out
    assert "read by build, fit" in lines[0]


def _unused_args(opt):
    return [opt.flag] if opt.kind is bool else [opt.flag, "1"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_refuses_every_option_it_does_not_read(command, tmp_path):
    """Before anything runs: no work dir is needed to be told."""
    prefix = [command, str(tmp_path)] if command == "merge" else [command]
    refused = [o for o in OPTIONS if not uses(command, o)]
    assert (command == "build") == (not refused)
    for opt in refused:
        code, out = run(*prefix, *_unused_args(opt))
        assert code == 2 and f"{command} does not use {opt.flag} (a {opt.option.group} option)" in out, (opt, out)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_exactly_the_options_a_command_reads(command):
    code, out = run(command, "--help")
    assert code == 0
    listed = set(re.findall(r"^\s+(--[a-z0-9-]+)", out, flags=re.M))
    wanted = {o.flag for o in OPTIONS if uses(command, o)} | {"--config"}
    own = {"deploy": {"--remote", "--branch", "--message", "--dry-run"}}.get(command, set())
    assert listed == wanted | own


def test_build_help_lists_every_option():
    code, out = run("build", "--help")
    assert code == 0
    for opt in OPTIONS:
        assert opt.flag in out and opt.option.help.split()[0] in out, opt.flag


def test_an_old_toml_key_is_read_with_a_note(tmp_path):
    config = tmp_path / "n2g.toml"
    config.write_text("[fit]\nfire_threshold = 0.4\n")
    code, out = run("evaluate", "--config", str(config), "--work-dir", str(tmp_path / "w"))
    assert code == 2 and "run `n2g-site mine`" in " ".join(out.split())  # got as far as the work dir
    assert "note: " in out and "[fit] fire_threshold is now [evaluate] fire_threshold" in " ".join(out.split())


def test_a_toml_file_may_hold_options_a_command_does_not_read(tmp_path):
    config = tmp_path / "n2g.toml"
    config.write_text('[fit]\naugmenter = "mlm"\n[mine]\ntop_k = 3\n')
    code, out = run(
        "deploy",
        "--config",
        str(config),
        "--work-dir",
        str(tmp_path / "w"),
        "--site-dir",
        str(tmp_path / "site"),
        "--dry-run",
    )
    assert code == 2 and "does not use" not in out and "has no built site" in " ".join(out.split())
