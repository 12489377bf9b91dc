"""`n2g-site deploy`: the built site lands on a gh-pages branch of a (local, bare) git remote."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from n2g_site.cli import app
from n2g_site.config import Config
from n2g_site.publish import publish
from n2g_site.render import render_site
from render_fixtures import make_workdir

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("deploy")
    work = make_workdir(root / "work")
    cfg = Config(site_dir=root / "site", site_url="https://example.org/repo/")
    render_site(cfg, work)
    return work.root, publish(cfg, work)


def deploy(built: tuple[Path, Path], *args: str, cwd: Path, monkeypatch: pytest.MonkeyPatch):
    """`n2g-site deploy` run from ``cwd``."""
    work, site = built
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, ["deploy", "--work-dir", str(work), "--site-dir", str(site), *args])


def test_deploy_to_a_local_bare_repo_pushes_gh_pages(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "remote.git"
    git("init", "--bare", "--quiet", str(bare))
    result = deploy(
        built, "--remote", str(bare), cwd=tmp_path, monkeypatch=monkeypatch
    )  # from a folder that is no git repo
    assert result.exit_code == 0, result.output
    files = git("ls-tree", "-r", "--name-only", "gh-pages", cwd=bare).splitlines()
    assert "index.html" in files and "neurons/L0/N3/index.html" in files and ".nojekyll" in files
    assert "neurons/L0/N3/index.html" in files and "export/index.json" in files and "export/layer_00.jsonl.gz" in files
    page = git("show", "gh-pages:neurons/L0/N3/index.html", cwd=bare)
    assert page == (built[1] / "neurons" / "L0" / "N3" / "index.html").read_text(encoding="utf-8")
    # a second deploy follows the branch's history (a fast-forward push, no force)
    result = deploy(built, "--remote", str(bare), "--message", "second", cwd=tmp_path, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    log = git("log", "--format=%s", "gh-pages", cwd=bare).splitlines()
    assert log[0] == "second" and len(log) == 2


def test_remote_name_is_looked_up_in_the_current_repo(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "pages.git"
    git("init", "--bare", "--quiet", str(bare))
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "--quiet", cwd=repo)
    git("remote", "add", "publish", str(bare), cwd=repo)
    result = deploy(built, "--remote", "publish", "--branch", "site", cwd=repo, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert "index.html" in git("ls-tree", "--name-only", "site", cwd=bare).splitlines()
    assert git("branch", "--list", cwd=repo).strip() == ""  # the user's repository gets no branch


def test_dry_run_pushes_nothing(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = deploy(
        built, "--remote", "https://example.invalid/never.git", "--dry-run", cwd=tmp_path, monkeypatch=monkeypatch
    )
    assert result.exit_code == 0, result.output
    assert "dry run, nothing pushed" in result.output and "files on branch 'gh-pages'" in result.output


def test_errors_are_user_errors(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work, site = built
    empty = tmp_path / "empty-site"
    empty.mkdir()
    result = CliRunner().invoke(app, ["deploy", "--work-dir", str(work), "--site-dir", str(empty), "--dry-run"])
    assert result.exit_code == 2 and "has no built site" in result.output
    result = deploy(
        built, "--remote", "origin", cwd=tmp_path, monkeypatch=monkeypatch
    )  # a name, outside any repository
    assert result.exit_code == 2 and "not in a git repository" in result.output
    result = deploy(built, "--branch", "bad..name", "--dry-run", cwd=tmp_path, monkeypatch=monkeypatch)
    assert result.exit_code == 2 and "not a valid branch name" in result.output
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    result = deploy(built, "--dry-run", cwd=tmp_path, monkeypatch=monkeypatch)
    assert result.exit_code == 2 and "needs git" in result.output


def test_a_site_over_the_pages_limit_gets_a_warning(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GitHub Pages serves at most 1 GB: deploy says so (and what to do) before pushing a larger site."""
    import n2g_site.publish.deploy as deploy_module

    _, site = built
    size = deploy_module.site_bytes(site)
    assert size == sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) > 0
    assert deploy_module.size_warning(size) is None
    assert "the site is 1,500 MB; GitHub Pages publishes sites of at most 1,000 MB" in deploy_module.size_warning(
        1_500_000_000
    )
    monkeypatch.setattr(deploy_module, "PAGES_LIMIT_BYTES", size - 1)
    result = deploy(built, "--dry-run", cwd=tmp_path, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert "warning: the site is" in result.output and "--layers / --neurons" in result.output


def test_site_size_by_part_and_projection(tmp_path) -> None:
    """publish.measure_site sums a site by part; the parts that grow with the neurons set the projection."""
    from n2g_site.publish import measure_site

    files = {
        "neurons/L0/N0/index.html": 10_000,
        "neurons/L0/N1/index.html": 12_000,
        "neurons/L0/N1/graph.svg": 4_000,
        "export/layer_00.jsonl.gz": 6_000,
        "export/index.json": 500,
        "token-search/tokens-00.js": 2_000,
        "layers/L0/index.html": 1_000,
        "assets/n2g.css": 50_000,
        "playground/tokenizer.js": 100_000,
        "index.html": 20_000,
    }
    for rel, size in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x" * size)
    size = measure_site(tmp_path)
    assert size.total == sum(files.values()) and size.neurons == 2
    assert size.parts["neuron pages"] == 22_000 and size.parts["large graphs (graph.svg)"] == 4_000
    assert size.parts["layer data (export/)"] == 6_000 and size.parts["other pages and files"] == 20_500
    assert list(size.parts)[:2] == ["playground tokenizer", "theme and assets"]  # largest first
    assert size.growing == 22_000 + 4_000 + 6_000 + 2_000 + 1_000  # 17,500 bytes a neuron
    assert size.projected(1000) == size.total - size.growing + 17_500 * 1000
    assert size.fits(1_000_000) == (1_000_000 - (size.total - size.growing)) // 17_500
    text = size.projection(46_080, 1_000_000_000)
    assert "fits" in text and "46,080 neurons" in text and "17.5 KB a neuron" in text
    assert "2 neurons" in str(size) and "biggest: playground tokenizer" in str(size)
