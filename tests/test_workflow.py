"""The GitHub Pages workflow: valid YAML with the official Pages actions, n2g-site commands that exist, and
its render + publish step working on a computed work dir without loading any model (actionlint too, when
installed)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from n2g_site.cli import app
from render_fixtures import make_workdir

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "pages.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def _uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def _step(job: dict, uses: str) -> dict:
    return next(step for step in job["steps"] if step.get("uses", "").startswith(uses + "@"))


def _n2g_commands(job: dict) -> list[list[str]]:
    """Every ``n2g-site ...`` command line of the job's run steps, split like the shell would."""
    out = []
    for step in job["steps"]:
        for line in (step.get("run") or "").splitlines():
            words = shlex.split(line.strip(), comments=True)
            if words and words[0] == "n2g-site":
                out.append(words[1:])
    return out


def test_triggers_permissions_and_jobs(workflow: dict) -> None:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "workflow_dispatch" in on and on["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert workflow["concurrency"]["group"] == "pages"
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    uses = _uses(build)
    order = ["actions/checkout", "actions/setup-python", "actions/configure-pages", "actions/upload-pages-artifact"]
    assert [u for u in uses if u in order] == order
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert _uses(deploy) == ["actions/deploy-pages"]
    assert deploy["environment"]["url"] == "${{ steps.deployment.outputs.page_url }}"
    assert deploy["steps"][0]["id"] == "deployment"


def test_render_and_publish_from_the_work_dir_into_the_uploaded_folder(workflow: dict) -> None:
    build = workflow["jobs"]["build"]
    commands = [c for c in _n2g_commands(build) if c[0] in ("render", "publish")]
    assert [c[0] for c in commands] == ["render", "publish"]
    publish = commands[1]
    site_dir = publish[publish.index("--site-dir") + 1]
    assert _step(build, "actions/upload-pages-artifact")["with"]["path"] == site_dir
    assert publish[publish.index("--site-url") + 1] == "$SITE_URL"
    step = next(s for s in build["steps"] if "n2g-site publish" in (s.get("run") or ""))
    assert step["env"]["SITE_URL"] == "${{ steps.pages.outputs.base_url }}/"
    assert _step(build, "actions/configure-pages")["id"] == "pages"


def test_every_n2g_site_option_in_the_workflow_exists(workflow: dict) -> None:
    commands = _n2g_commands(workflow["jobs"]["build"])
    assert {c[0] for c in commands} >= {"build", "render", "publish"}
    for words in commands:
        command = app.commands[words[0]]
        flags = {flag for p in command.params if isinstance(p, click.Option) for flag in p.opts}
        for word in words[1:]:
            if word.startswith("--"):
                assert word in flags, f"n2g-site {words[0]} has no option {word}"


def test_the_render_step_needs_no_model(workflow: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the workflow's render and publish lines (env substituted) on a computed work dir."""
    import n2g_site.models

    monkeypatch.setattr(n2g_site.models, "load_model", lambda *a, **k: pytest.fail("render/publish loaded a model"))
    work = workflow["env"]["N2G_WORK_DIR"]
    make_workdir(tmp_path / work)
    monkeypatch.chdir(tmp_path)
    env = {"$N2G_WORK_DIR": work, "$SITE_URL": "https://user.github.io/repo/"}
    for words in _n2g_commands(workflow["jobs"]["build"]):
        if words[0] not in ("render", "publish"):
            continue
        result = CliRunner().invoke(app, [env.get(w, w) for w in words])
        assert result.exit_code == 0, result.output
    site = tmp_path / "_site"
    assert (site / "index.html").is_file() and (site / "neurons" / "L0" / "N3" / "index.html").is_file()
    assert "https://user.github.io/repo/" in (site / "sitemap.xml").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not installed")
def test_actionlint_accepts_the_workflow() -> None:
    result = subprocess.run(["actionlint", str(WORKFLOW)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("committed", "event", "compute", "rc", "outputs"),
    [
        (True, "push", "false", 0, {"found": "true", "ready": "true"}),
        (False, "workflow_dispatch", "true", 0, {"found": "false", "ready": "true"}),
        (False, "push", "false", 0, {"found": "false", "ready": "false"}),  # nothing to publish yet: no failure
        (False, "workflow_dispatch", "false", 1, {}),
    ],
)
def test_locate_step_decides_what_runs(
    workflow: dict, tmp_path: Path, committed: bool, event: str, compute: str, rc: int, outputs: dict
) -> None:
    build = workflow["jobs"]["build"]
    step = next(s for s in build["steps"] if s.get("id") == "locate")
    gated = [s for s in build["steps"] if s.get("uses", "").startswith(("actions/configure-pages", "actions/upload"))]
    assert all(s["if"] == "steps.locate.outputs.ready == 'true'" for s in gated)
    assert workflow["jobs"]["deploy"]["if"] == "needs.build.outputs.ready == 'true'"
    work = tmp_path / workflow["env"]["N2G_WORK_DIR"]
    if committed:
        work.mkdir()
        (work / "run.json").write_text("{}")
    out = tmp_path / "github_output"
    out.touch()
    env = {
        "PATH": "/usr/bin:/bin",
        "N2G_WORK_DIR": work.name,
        "GITHUB_OUTPUT": str(out),
        "EVENT": event,
        "COMPUTE": compute,
    }
    result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == rc, result.stdout + result.stderr
    assert dict(line.split("=", 1) for line in out.read_text().splitlines()) == outputs
