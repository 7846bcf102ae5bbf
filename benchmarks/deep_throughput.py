"""Training throughput of the deep reporters, next to a bare torch loop over the same network.

Rows: 100,000 x 384 float32 (MiniLM's width), drawn around 50 random centres, or a
store layer (``--store DIR --layer NAME``). Each reporter is fitted end to end for a few
passes over the rows, everything included (k-means, target updates, neighbour tables);
samples per second = rows x training passes / wall time of the fit:

- DEC: ``pretrain_epochs`` passes of autoencoder pretraining + each clustering update's
  pass (an update interval is one pass);
- IIC: ``epochs`` passes (each row and its paired view);
- DeepCluster: ``epochs`` passes (each preceded by features + k-means of every row).

The reference is a plain torch loop (Adam or SGD, cross-entropy or MSE, same widths, same
batch size) over the same rows: what the network alone costs. The ratio line shows the
share of that speed each reporter keeps. Last line:
``dec_sps=<n> iic_sps=<n> deepcluster_sps=<n>``.

    python benchmarks/deep_throughput.py [--rows 100000] [--dim 384] [--passes 2] [--device cpu]
"""

import argparse
import time

import numpy as np
import torch

from actclust.reporters import DEC, IIC, DeepCluster


def rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, d)).astype(np.float32)
    return centres[rng.integers(0, 50, n)] + rng.normal(size=(n, d)).astype(np.float32)


def bare_loop(net, X: np.ndarray, passes: int, batch_size: int, device: str, loss,
              paired: bool = False) -> float:
    """Samples per second of plain minibatch training of ``net`` (no reporter logic);
    ``paired`` runs each batch twice through the network, as IIC does with its views."""
    data = torch.from_numpy(X).to(device)
    targets = torch.from_numpy(np.arange(len(X)) % 10).to(device)
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(passes):
        for idx in torch.randperm(len(X)).split(batch_size):
            idx = idx.to(device)
            batch, target = data[idx], targets[idx]
            if paired:
                batch, target = torch.cat([batch, batch]), torch.cat([target, target])
            value = loss(net(batch), batch, target)
            opt.zero_grad()
            value.backward()
            opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return passes * len(X) / (time.perf_counter() - start)


def mlp(widths, batch_norm=False):
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.BatchNorm1d(b)] if batch_norm else [])
        layers += [torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def timed_fit(model, X) -> tuple[float, object]:
    start = time.perf_counter()
    model.fit(X)
    return time.perf_counter() - start, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--store", help="read rows from this store instead of random rows")
    parser.add_argument("--layer", help="the store layer to read (with --store)")
    args = parser.parse_args()

    if args.store:
        from actclust import ActivationStore

        X = ActivationStore(args.store).layer(args.layer).to_numpy()[: args.rows]
        X = np.ascontiguousarray(X, dtype=np.float32)
    else:
        X = rows(args.rows, args.dim)
    n, d = X.shape
    p, dev = args.passes, args.device
    print(f"rows {n} x {d}, {p} passes, device {dev}, torch threads {torch.get_num_threads()}")

    dec = DEC(10, pretrain_epochs=p, max_updates=p + 1, tol=0.0, n_init=5, device=dev,
              random_state=0)
    t_dec, dec = timed_fit(dec, X)
    dec_passes = p + sum(1 for h in dec.history_ if h["phase"] == "cluster" and "loss" in h)
    dec_sps = dec_passes * n / t_dec

    iic = IIC(10, epochs=p, device=dev, random_state=0)
    t_iic, _ = timed_fit(iic, X)
    iic_sps = p * n / t_iic

    dc = DeepCluster(10, epochs=p, device=dev, random_state=0)
    t_dc, _ = timed_fit(dc, X)
    dc_sps = p * n / t_dc

    mse = lambda out, x, y: torch.nn.functional.mse_loss(out, x)  # noqa: E731
    ce = lambda out, x, y: torch.nn.functional.cross_entropy(out, y)  # noqa: E731
    torch.manual_seed(0)
    ref_dec = bare_loop(mlp([d, 500, 500, 2000, 10, 2000, 500, 500, d]), X, p, 256, dev, mse)
    ref_iic = bare_loop(mlp([d, 256, 128, 10], batch_norm=True), X, p, 512, dev, ce, paired=True)
    ref_dc = bare_loop(mlp([d, 512, 128, 10], batch_norm=True), X, p, 256, dev, ce)

    print(f"{'reporter':12s} {'fit s':>8s} {'samples/s':>10s} {'bare loop/s':>12s} {'share':>6s}")
    for name, t, sps, ref in [("DEC", t_dec, dec_sps, ref_dec), ("IIC", t_iic, iic_sps, ref_iic),
                              ("DeepCluster", t_dc, dc_sps, ref_dc)]:
        print(f"{name:12s} {t:8.1f} {sps:10.0f} {ref:12.0f} {sps / ref:6.2f}")
    print(f"dec_sps={dec_sps:.0f} iic_sps={iic_sps:.0f} deepcluster_sps={dc_sps:.0f}")


if __name__ == "__main__":
    main()
