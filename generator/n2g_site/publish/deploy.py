"""``n2g-site deploy``: push the built site to a branch (default ``gh-pages``) of a git remote.

A thin wrapper round MkDocs' ``gh-deploy`` (:func:`mkdocs.commands.gh_deploy.gh_deploy`, which runs
ghp-import) on the derived config that ``publish`` wrote into the work dir. MkDocs' command works in the
current folder's repository and leaves a ``gh-pages`` branch there; this one works in a scratch bare
repository in the work dir (``deploy.git``) instead, so it runs from any folder and never touches the user's
branches:

1. the remote is resolved: a name (``origin``) is looked up in the current folder's repository, anything
   else (``https://...``, ``git@...``, a path to a bare repo) is used as it is;
2. the scratch repo fetches the remote's branch when it exists, so the new commit follows its history
   (a plain fast-forward push, no force);
3. MkDocs' gh-deploy commits ``--site-dir`` (plus ``.nojekyll``) onto that branch and pushes it.

``--dry-run`` pushes to a fresh temporary bare repository instead of the remote, lists what the branch
holds, and deletes it: the whole path is exercised and nothing leaves the machine.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, UserError
from ..progress import say
from ..store import WorkDir, read_json
from . import build as publish

SCRATCH = "deploy.git"  # in the work dir
# GitHub Pages publishes sites of at most 1 GB ("GitHub Pages limits", docs.github.com): publish/build.py measures a
# site against it (publish.measure_site) and deploy states where this one stands before pushing.
PAGES_LIMIT_BYTES = publish.PAGES_LIMIT_BYTES
REMOTE = "target"  # the scratch repo's name for the remote being deployed to


@dataclass
class DeployResult:
    remote: str  # the URL or path pushed to ("(dry run)" when nothing left the machine)
    branch: str
    commit: str  # the pushed commit
    files: int  # files on the branch after the push

    def __str__(self) -> str:
        return f"{self.files} files on branch {self.branch!r} of {self.remote} (commit {self.commit[:10]})"


def _git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip() or proc.returncode}")
    return proc


def _is_url(remote: str) -> bool:
    return "://" in remote or ":" in remote or "/" in remote or os.sep in remote or remote.endswith(".git")


def resolve_remote(remote: str) -> str:
    """A remote name of the current folder's repository -> its URL; a URL or path is returned as is."""
    if _is_url(remote):
        if "://" not in remote and ":" not in remote:  # a local path: absolute, as the scratch repo runs elsewhere
            return str(Path(remote).resolve())
        return remote
    inside = _git("rev-parse", "--is-inside-work-tree", check=False)
    if inside.returncode != 0:
        raise UserError(
            f"--remote {remote!r} is a remote name, but {Path.cwd()} is not in a git repository: "
            "run deploy from your repository or pass the remote's URL"
        )
    url = _git("config", "--get", f"remote.{remote}.url", check=False).stdout.strip()
    if not url:
        raise UserError(
            f"--remote {remote!r}: this repository has no such remote (see `git remote -v`); pass a remote name or URL"
        )
    return url


def _scratch(path: Path, url: str) -> None:
    if not (path / "HEAD").exists():
        path.mkdir(parents=True, exist_ok=True)
        _git("init", "--bare", "--quiet", str(path))
    if _git("remote", "get-url", REMOTE, cwd=path, check=False).returncode == 0:
        _git("remote", "set-url", REMOTE, url, cwd=path)
    else:
        _git("remote", "add", REMOTE, url, cwd=path)
    # ghp-import commits with the user's git identity; CI runners often have none.
    if not _git("config", "user.name", cwd=path, check=False).stdout.strip():
        _git("config", "user.name", "n2g-site", cwd=path)
    if not _git("config", "user.email", cwd=path, check=False).stdout.strip():
        _git("config", "user.email", "n2g-site@users.noreply.github.com", cwd=path)


@contextmanager
def _cwd(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _check_site(cfg: Config, work: WorkDir) -> Path:
    site = Path(cfg.site_dir).resolve()
    if not (site / "index.html").is_file():
        raise UserError(
            f"--site-dir {str(site)!r} has no built site (no index.html): run `n2g-site publish` "
            "(or `n2g-site build`) with the same options first"
        )
    if not work.mkdocs_config.is_file():
        raise UserError(f"{work.mkdocs_config} is missing: run `n2g-site publish` with the same --work-dir first")
    return site


def site_bytes(site: Path) -> int:
    """Total size of the files under ``site``."""
    return sum(
        entry.stat().st_size
        for folder, _, names in os.walk(site)
        for entry in (Path(folder) / name for name in names)
        if entry.is_file()
    )


def size_warning(size: int, limit: int | None = None) -> str | None:
    """What to tell a user pushing ``size`` bytes towards GitHub Pages; None when it fits ``limit``
    (default :data:`PAGES_LIMIT_BYTES`)."""
    limit = PAGES_LIMIT_BYTES if limit is None else limit
    if size <= limit:
        return None
    return (
        f"the site is {size / 1e6:,.0f} MB; GitHub Pages publishes sites of at most {limit / 1e6:,.0f} MB "
        f"and will not serve this one. Deploy fewer neurons (--layers / --neurons; `n2g-site publish` prints "
        f"what a neuron costs and how many fit), or put --site-dir on any static host (or share "
        f"`n2g-site build --zip`'s bundle)"
    )


def deploy(
    cfg: Config,
    work: WorkDir,
    *,
    remote: str = "origin",
    branch: str = "gh-pages",
    message: str | None = None,
    dry_run: bool = False,
) -> DeployResult:
    """Push ``cfg.site_dir`` to ``branch`` of ``remote`` (see the module docstring)."""
    from mkdocs import exceptions
    from mkdocs.commands.gh_deploy import gh_deploy
    from mkdocs.config import load_config

    if shutil.which("git") is None:
        raise UserError("deploy needs git, which is not on PATH: install it (Debian: apt-get install git)")
    if not branch or branch.startswith("-") or _git("check-ref-format", "--branch", branch, check=False).returncode:
        raise UserError(f"--branch {branch!r} is not a valid branch name")
    site = _check_site(cfg, work)
    size = publish.measure_site(site)
    model_info = (read_json(work.manifest) if work.manifest.is_file() else {}).get("model_info") or {}
    if isinstance(model_info.get("n_layers"), int) and isinstance(model_info.get("d_mlp"), int):
        say(f"deploy: {size.projection(model_info['n_layers'] * model_info['d_mlp'], PAGES_LIMIT_BYTES)}")
    else:
        say(f"deploy: {size}")
    if (warning := size_warning(size.total)) is not None:
        say(f"deploy: warning: {warning}")
    tmp = None
    try:
        if dry_run:
            tmp = Path(tempfile.mkdtemp(prefix="n2g-deploy-"))
            url = str(tmp / "remote.git")
            _git("init", "--bare", "--quiet", url)
            scratch = tmp / "scratch.git"
        else:
            url = resolve_remote(remote)
            scratch = work.root / SCRATCH
        _scratch(scratch, url)
        fetched = _git(
            "fetch", "--quiet", REMOTE, f"+refs/heads/{branch}:refs/remotes/{REMOTE}/{branch}", cwd=scratch, check=False
        )
        if fetched.returncode != 0 and "couldn't find remote ref" not in fetched.stderr:
            raise UserError(f"cannot reach --remote {url!r}: {fetched.stderr.strip()}")
        try:
            config = load_config(str(work.mkdocs_config), site_dir=str(site), remote_name=REMOTE, remote_branch=branch)
        except exceptions.ConfigurationError as exc:
            raise UserError(f"{work.mkdocs_config}: {exc}; rerun `n2g-site publish`") from None
        logger = logging.getLogger("mkdocs")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            with _cwd(scratch):
                gh_deploy(config, message=message, ignore_version=True)
        except exceptions.Abort as exc:
            raise UserError(f"deploy to {url!r} failed: {exc}") from None
        except subprocess.CalledProcessError:
            raise UserError(
                f"git push to {url!r} ({branch}) was refused: check the URL and your rights to "
                "push; a branch that was rewritten elsewhere may need deleting first"
            ) from None
        finally:
            logger.setLevel(level)
        commit = _git("rev-parse", f"refs/heads/{branch}", cwd=scratch).stdout.strip()
        files = _git("ls-tree", "-r", "--name-only", commit, cwd=scratch).stdout.splitlines()
        return DeployResult(remote="(dry run)" if dry_run else url, branch=branch, commit=commit, files=len(files))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
