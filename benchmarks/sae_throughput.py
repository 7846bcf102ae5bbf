"""Training throughput of SparseAutoencoder next to a bare torch loop of the same network.

Rows: 200,000 x 384 float32 (MiniLM's width), each a non-negative combination of 8 of
2,000 random unit directions plus an offset and noise. Both train the same TopK network
(``d`` -> ``n_latents`` -> ``d``, ``k`` active latents, same batch size, same number of
steps, Adam, unit-norm decoder rows renormalised after each step) on 2 torch threads:

- ours: ``SparseAutoencoder(...).fit(X)`` end to end, everything included (the scaling
  pass, the geometric median of 32,768 rows, the initialisation, the shared trainer
  with its history and NaN guard, AuxK and the dead-latent counters, and the closing
  metrics pass over all rows);
- bare: a plain loop, nothing else: TopK forward (dense codes times the decoder), MSE,
  backward, Adam step, decoder renormalisation.

rows/s = rows x epochs / wall seconds. Last line:
``sae_rows_per_s=<n> bare_rows_per_s=<n> ratio=<bare/ours>`` (target: ratio <= 1.3).

    python benchmarks/sae_throughput.py [--rows 200000] [--dim 384] [--latents 1536]
        [--k 32] [--batch 1024] [--epochs 2] [--threads 2] [--device cpu]
"""

import argparse
import time

import numpy as np
import torch

from actclust.reporters.sae import SparseAutoencoder


def rows(n: int, d: int, n_dirs: int = 2000, active: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n_dirs, d)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    X = np.zeros((n, d), np.float32)
    for start in range(0, n, 20_000):  # bounded memory for the index arrays
        stop = min(start + 20_000, n)
        picks = rng.integers(0, n_dirs, (stop - start, active))
        weights = rng.exponential(size=(stop - start, active)).astype(np.float32)
        X[start:stop] = np.einsum("nk,nkd->nd", weights, directions[picks])
    X += rng.normal(size=d).astype(np.float32)  # an offset for b_pre to find
    X += 0.05 * rng.normal(size=(n, d)).astype(np.float32)
    return X


def bare_loop(X: np.ndarray, n_latents: int, k: int, batch_size: int, epochs: int,
              lr: float, device: str) -> float:
    """Rows per second of a plain TopK autoencoder loop over ``X``."""
    n, d = X.shape
    data = torch.from_numpy(X).to(device)
    torch.manual_seed(0)
    W_dec = torch.randn(n_latents, d, device=device)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_enc = W_dec.T.clone().requires_grad_(True)
    W_dec.requires_grad_(True)
    b_enc = torch.zeros(n_latents, device=device, requires_grad=True)
    b_pre = data[:4096].mean(0).clone().requires_grad_(True)
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_pre], lr=lr)
    start = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(n).split(batch_size):
            x = data[idx.to(device)]
            pre = (x - b_pre) @ W_enc + b_enc
            values, indices = pre.topk(k, dim=1)
            codes = torch.zeros_like(pre).scatter(1, indices, values.relu())
            loss = (codes @ W_dec + b_pre - x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                W_dec /= W_dec.norm(dim=1, keepdim=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return epochs * n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--latents", type=int, default=1536)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    X = rows(args.rows, args.dim)
    n, d = X.shape
    print(f"rows {n} x {d}, {args.latents} latents, k={args.k}, batch {args.batch}, "
          f"{args.epochs} epochs, device {args.device}, torch threads "
          f"{torch.get_num_threads()}")
    sae = SparseAutoencoder(args.latents, k=args.k, batch_size=args.batch,
                            epochs=args.epochs, device=args.device, random_state=0)
    start = time.perf_counter()
    sae.fit(X)
    ours = args.epochs * n / (time.perf_counter() - start)
    bare = bare_loop(X, args.latents, args.k, args.batch, args.epochs, sae.lr, args.device)
    print(f"ours: fvu {sae.fvu_:.3f}, l0 {sae.l0_:.1f}, dead {sae.dead_fraction_:.3f}")
    print(f"sae_rows_per_s={ours:.0f} bare_rows_per_s={bare:.0f} ratio={bare / ours:.3f}")


if __name__ == "__main__":
    main()
