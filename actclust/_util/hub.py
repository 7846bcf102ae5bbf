"""Find a Hugging Face hub model in the user's local cache, the way ``huggingface_hub``
lays it out, without importing it (its settings are read once at import; these are read
at each call, so a changed ``HF_HOME`` is honoured).

    $HF_HUB_CACHE (default $HF_HOME/hub, default ~/.cache/huggingface/hub)
      models--org--name/
        refs/main                   the commit hash a branch or tag points at
        snapshots/<commit>/         config.json, weights, tokenizer files
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ActclustError

# huggingface_hub's repo id rule: one or two names of letters, digits, "-", "_", "."
REPO_ID = re.compile(r"\A[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?\Z")
COMMIT = re.compile(r"\A[0-9a-f]{40}\Z")


def looks_like_repo_id(name: str) -> bool:
    """Whether ``name`` could be a hub model id (``gpt2``, ``EleutherAI/pythia-70m``).

    Example:
        >>> looks_like_repo_id("EleutherAI/pythia-70m"), looks_like_repo_id("./model")
        (True, False)
    """
    return bool(REPO_ID.match(name)) and ".." not in name and not name.endswith(".")


def hub_cache() -> Path:
    """The hub cache directory the user's environment names.

    Example:
        >>> import os; os.environ["HF_HUB_CACHE"] = "/tmp/hub"; str(hub_cache())
        '/tmp/hub'
        >>> del os.environ["HF_HUB_CACHE"]
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def offline() -> bool:
    """Whether the environment forbids downloads (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The snapshot directory of ``repo_id`` at ``revision`` (a branch, tag or commit;
    default ``main``) in the hub cache, or None when it is not there.

    A branch or tag is resolved through ``refs/``; the names read from disk must be a
    commit hash, so a crafted ref cannot point outside the cache.
    """
    folder = hub_cache() / ("models--" + repo_id.replace("/", "--"))
    revision = revision or "main"
    if COMMIT.match(revision):
        commit = revision
    else:
        if not re.match(r"\A[\w.-]+(/[\w.-]+)*\Z", revision) or ".." in revision:
            raise ActclustError(f"revision {revision!r} is not a branch, tag or commit name")
        ref = folder / "refs" / revision
        if not ref.is_file():
            return None
        commit = ref.read_text(encoding="utf-8", errors="replace").strip()
        if not COMMIT.match(commit):
            raise ActclustError(f"{ref} does not hold a commit hash; the cache is damaged: "
                                "download the model again")
    snapshot = folder / "snapshots" / commit
    return snapshot if (snapshot / "config.json").is_file() else None


def not_cached_message(repo_id: str, revision: str | None, bundled=()) -> str:
    at = f" at revision {revision}" if revision else ""
    others = f"a bundled model ({', '.join(bundled)}), a model directory, " if bundled else ""
    return (f"unknown model {repo_id!r}: not {others}nor a hub id{at} in the Hugging Face "
            f"cache ({hub_cache()}), and downloads are off (HF_HUB_OFFLINE=1); download it "
            f"once with `huggingface-cli download {repo_id}`, or set HF_HUB_OFFLINE=0 to let "
            "actclust fetch it")
