"""Models by hub id, read offline from a Hugging Face cache laid out as huggingface_hub
lays it out (refs/, snapshots/<commit>/ with symlinks into blobs/)."""

import hashlib
import json
import shutil

import pytest

from actclust.cli import main
from actclust.errors import ActclustError
from actclust.models import load_target
from actclust.store import ActivationStore
from tests.conftest import build_tiny_hf_model

MAIN = "a" * 40
V2 = "b" * 40


def _put_snapshot(cache, repo_id, commit, source, refs=(), blobs=False):
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        if blobs:  # the real layout: content in blobs/<hash>, snapshots hold symlinks
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
            blob = folder / "blobs" / digest
            blob.parent.mkdir(exist_ok=True)
            shutil.copy2(file, blob)
            (snapshot / file.name).symlink_to(f"../../blobs/{digest}")
        else:
            shutil.copy2(file, snapshot / file.name)
    for ref in refs:
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / ref).write_text(commit)


@pytest.fixture(scope="module")
def hub_cache(tiny_models, tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf") / "hub"
    _put_snapshot(cache, "org/tiny-gpt2", MAIN, tiny_models["gpt2"], refs=["main"])
    other = build_tiny_hf_model(tmp_path_factory.mktemp("gpt2-v2"), "gpt2", seed=1)
    _put_snapshot(cache, "org/tiny-gpt2", V2, other, refs=["v2"])
    _put_snapshot(cache, "org/tiny-llama", MAIN, tiny_models["llama"], refs=["main"],
                  blobs=True)
    return cache


@pytest.fixture
def offline_cache(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache


def test_hub_ids_load_from_the_cache_with_their_hook_names(offline_cache):
    gpt2 = load_target("org/tiny-gpt2")
    llama = load_target("org/tiny-llama")
    for target, arch in ((gpt2, "GPT2Model"), (llama, "LlamaModel")):
        assert target.info["architecture"] == arch and target.info["revision"] == MAIN
        assert "blocks.2.hook_resid_post" in target.hook_points
    assert gpt2.name == "org/tiny-gpt2"


def test_a_revision_picks_its_snapshot_by_branch_or_commit(offline_cache):
    main_rev = load_target("org/tiny-gpt2")
    by_branch = load_target("org/tiny-gpt2", revision="v2")
    by_commit = load_target("org/tiny-gpt2", revision=V2)
    assert by_branch.info["revision"] == by_commit.info["revision"] == V2
    assert by_branch.config_hash == by_commit.config_hash != main_rev.config_hash


def test_uncached_offline_is_one_line_saying_how_to_get_it(offline_cache):
    with pytest.raises(ActclustError, match=r"unknown model 'org/absent': not a bundled "
                       r"model \(minilm, digits-mlp\), a model directory, nor a hub id in "
                       r"the Hugging Face cache .*huggingface-cli download org/absent.*HF_HUB_OFFLINE=0"):
        load_target("org/absent")
    with pytest.raises(ActclustError, match="at revision nope"):
        load_target("org/tiny-gpt2", revision="nope")


def test_a_ref_that_is_not_a_commit_cannot_lead_out_of_the_cache(offline_cache, tmp_path):
    folder = offline_cache / "models--org--tiny-gpt2" / "refs"
    (folder / "evil").write_text("../../../../../etc")
    with pytest.raises(ActclustError, match="does not hold a commit hash"):
        load_target("org/tiny-gpt2", revision="evil")
    with pytest.raises(ActclustError, match="not a branch, tag or commit name"):
        load_target("org/tiny-gpt2", revision="../../x")


def test_capture_by_hub_id_records_the_commit(offline_cache, tmp_path, capsys):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t, "kind": k}) + "\n" for t, k in
                            [("the cat sat", "a"), ("a dog ran", "b"), ("birds sing", "a")]))
    out = tmp_path / "store"
    assert main(["capture", "--model", "org/tiny-llama", "--revision", "main", "--dataset",
                 str(docs), "--layers", "blocks.1.hook_resid_post", "--pool", "mean",
                 "--out", str(out), "--quiet"]) == 0
    model = ActivationStore(out).manifest["model"]
    assert model["name"] == "org/tiny-llama" and model["revision"] == MAIN
    assert main(["models", "org/tiny-gpt2", "--revision", "v2"]) == 0
    assert "blocks.0.hook_resid_post" in capsys.readouterr().out
    assert main(["capture", "--model", "org/absent", "--dataset", str(docs), "--layers",
                 "blocks.0.hook_resid_post", "--out", str(tmp_path / "s2"), "--quiet"]) == 2
    assert "huggingface-cli download org/absent" in capsys.readouterr().err


def test_uncached_with_downloads_allowed_is_fetched_into_the_cache(
        hub_cache, tiny_models, monkeypatch):
    import huggingface_hub

    asked = []

    def fetch(repo_id, revision=None, cache_dir=None, allow_patterns=None):
        asked.append((repo_id, revision, str(cache_dir)))
        _put_snapshot(cache_dir, repo_id, "c" * 40, tiny_models["gpt2"], refs=["main"])
        return str(cache_dir / ("models--" + repo_id.replace("/", "--")) / "snapshots"
                   / ("c" * 40))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fetch)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    target = load_target("org/fetched")
    assert asked == [("org/fetched", None, str(hub_cache))]
    assert target.info["revision"] == "c" * 40
    assert load_target("org/fetched").info["revision"] == "c" * 40 and len(asked) == 1
