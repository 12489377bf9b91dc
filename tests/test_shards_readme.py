"""The README's cluster recipes (Slurm, Ray) are valid commands: each n2g-site line is parsed by the real CLI
(options, types, the groups each command takes, ranges) without running it, and the recipe as a whole is
coherent: every stage names --layers, the shards of an array cover 0..n-1, all stages share one work dir and
the mining options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from n2g_site import cli
from n2g_site.config import Config

README = Path(__file__).resolve().parents[1] / "README.md"
SMOLLM2_LAYERS = 30


def _block(heading: str) -> list[str]:
    """The lines of the first ```bash block after the paragraph starting with ``heading``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert match, f"no bash block after {heading!r} in README.md"
    return [line for line in match.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _commands(lines: list[str]) -> list[tuple[list[str], list[int]]]:
    """Each n2g-site command of a shell block as argv (without 'n2g-site'), with the Slurm array indices
    it runs for ([0] outside an array); shell variables assigned in the block are expanded."""
    env: dict[str, str] = {"jid": "1"}

    def expand(text: str) -> str:
        return re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)

    out = []
    for line in lines:
        line = line.replace("\\$SLURM_ARRAY_TASK_ID", "{task}")
        assign = re.fullmatch(r"(\w+)=(?!\$\()(.*)", line.strip())
        if assign:
            env[assign.group(1)] = shlex.split(expand(assign.group(2)))[0]
            continue
        line = expand(line)
        array = re.search(r"--array=(\d+)-(\d+)", line)
        tasks = list(range(int(array.group(1)), int(array.group(2)) + 1)) if array else [0]
        wrapped = re.findall(r'--wrap "([^"]*)"', line)
        shells = wrapped or [line.split("#")[0]]
        for shell in shells:
            for part in shell.split("&&"):
                argv = shlex.split(part)
                if argv and argv[0] == "n2g-site":
                    out.append((argv[1:], tasks))
    return out


def _dry_run(argv: list[str], task: int) -> tuple[str, Config]:
    """Parse ``n2g-site argv`` as the CLI does and build its validated Config, without running the stage."""
    name, args = argv[0], [a.replace("{task}", str(task)) for a in argv[1:]]
    command = cli.app.commands[name]
    parent = click.Context(cli.app, info_name="n2g-site", **cli.app.context_settings)  # as `n2g-site NAME` runs
    ctx = command.make_context(name, args, parent=parent)  # unknown options, bad types and choices raise here
    values = dict(ctx.params)
    values.pop("sources", None)
    cli._refuse_unused(name, values)
    return name, cli._config(values, [])


@pytest.mark.parametrize("heading", ["**On Slurm**", "**On Ray**"])
def test_readme_cluster_recipe_is_valid(heading):
    commands = _commands(_block(heading))
    stages = {argv[0] for argv, _ in commands}
    assert {"mine", "fit", "evaluate"} <= stages
    work_dirs, mining = set(), set()
    for argv, tasks in commands:
        shards = set()
        for task in tasks:
            name, cfg = _dry_run(argv, task)
            work_dirs.add(cfg.work_path)
            if name in ("mine", "fit", "evaluate", "build"):
                assert cfg.layers is not None, f"`n2g-site {' '.join(argv)}` must name --layers"
                cfg.select_layers(SMOLLM2_LAYERS)  # in range for SmolLM2-135M
            if name in ("mine", "build"):
                mining.add(cfg.mine)
            if cfg.shard is not None:
                shards.add(cfg.shard_index)
        if shards:  # an array over --shard covers every part once
            counts = {n for _, n in shards}
            assert len(counts) == 1 and sorted(i for i, _ in shards) == list(range(counts.pop())), argv
        elif "--executor" not in argv:
            assert len(tasks) == 1, f"an array without --shard runs the same work {len(tasks)} times: {argv}"
    assert len(work_dirs) == 1, work_dirs
    assert len(mining) == 1, "every mine/build command must use the same mining options"


def test_the_dry_run_catches_a_broken_recipe():
    """What the checks above stand on: a fit given a mining option, or a bad shard, is refused."""
    from n2g_site.config import UserError

    with pytest.raises(UserError, match="fit does not use --max-tokens"):
        _dry_run(["fit", "--all", "--layers", "0-29", "--max-tokens", "5"], 0)
    with pytest.raises(UserError, match="--shard '8/8'"):
        _dry_run(["fit", "--shard", "{task}/8"], 8)
    argv, tasks = _commands(['sbatch --array=0-1 --wrap "n2g-site fit --all --shard \\$SLURM_ARRAY_TASK_ID/2"'])[0]
    assert tasks == [0, 1] and _dry_run(argv, 1)[1].shard == "1/2" and _dry_run(argv, 1)[1].layers is None
