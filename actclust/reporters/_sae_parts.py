"""The numeric core of :class:`~actclust.reporters.sae.SparseAutoencoder`: the network, the
geometric median that places its pre-encoder bias, the batch loss (normalised MSE plus
AuxK) and the optimiser step that keeps decoder directions on the unit sphere."""

from __future__ import annotations

import numpy as np

# The authors place b_pre at the geometric median of at most this many rows.
MEDIAN_SAMPLE = 32768


def geometric_median(X, max_iter: int = 100, tol: float = 1e-7, eps: float = 1e-8):
    """The point minimising the summed Euclidean distance to the rows of ``X``, by
    Weiszfeld's iterations from the mean (each step: the mean weighted by inverse
    distances; ``eps`` bounds a weight when the estimate lands on a row). Stops when the
    summed distance improves by less than ``tol`` relatively, or after ``max_iter``.

    Unlike the mean, it moves little when a few rows are far away (breakdown point 1/2).

    Example:
        >>> X = np.r_[np.zeros((9, 2)), [[100.0, 100.0]]]  # nine rows at 0, one outlier
        >>> X.mean(0).round(1).tolist(), geometric_median(X).round(3).tolist()
        ([10.0, 10.0], [0.0, 0.0])
    """
    X = np.asarray(X, dtype=np.float64)
    median = X.mean(0)
    last = np.inf
    for _ in range(max_iter):
        dist = np.sqrt(np.square(X - median).sum(1))
        total = dist.sum()
        if last - total <= tol * max(total, 1e-300):
            break
        last = total
        weight = 1.0 / np.maximum(dist, eps)
        median = weight @ X / weight.sum()
    return median


def network_classes() -> dict:
    """The torch module, defined on first use (torch is imported lazily) as an attribute
    of this module, so it has a stable import name (see ``__getattr__`` below)."""
    if "SAENet" in globals():
        return {"SAENet": globals()["SAENet"]}
    import torch
    from torch import nn

    class SAENet(nn.Module):
        """A TopK sparse autoencoder: ``codes = relu(topk((x - b_pre) W_enc + b_enc))``,
        ``x_hat = codes W_dec + b_pre``. Row ``j`` of ``W_dec`` is latent ``j``'s
        direction (unit norm). ``last_fired`` counts, per latent, the training rows seen
        since it last fired: every tensor a fit changes lives here, so restoring the
        module restores all."""

        def __init__(self, d_in: int, n_latents: int):
            super().__init__()
            self.b_pre = nn.Parameter(torch.zeros(d_in))
            self.W_enc = nn.Parameter(torch.empty(d_in, n_latents))
            self.b_enc = nn.Parameter(torch.zeros(n_latents))
            self.W_dec = nn.Parameter(torch.empty(n_latents, d_in))
            self.register_buffer("last_fired", torch.zeros(n_latents, dtype=torch.int64))

        def pre_acts(self, x):
            return torch.addmm(self.b_enc, x - self.b_pre, self.W_enc)

        def decode(self, values, indices, bias: bool = True):
            """``sum_j values_j W_dec[indices_j]`` per row (plus ``b_pre``): a gather of
            k directions instead of a product with the dense codes, whose width is the
            number of latents (the authors' sparse kernels do the same)."""
            out = nn.functional.embedding_bag(indices, self.W_dec, mode="sum",
                                              per_sample_weights=values)
            return out + self.b_pre if bias else out

        def codes(self, x, k: int):
            """Dense codes, rows x latents: at most ``k`` non-zeros per row."""
            values, indices = self.pre_acts(x).topk(k, dim=1)
            return torch.zeros(len(x), self.W_enc.shape[1], dtype=x.dtype,
                               device=x.device).scatter_(1, indices, values.relu())

        @torch.no_grad()
        def init_from(self, k: int, median, generator):
            """The authors' start: random unit directions in ``W_dec``, ``W_enc`` their
            transpose, ``b_pre`` at ``median``; the encoder is then scaled so a random
            unit-norm input (around ``b_pre``) is reconstructed with unit norm on
            average."""
            directions = torch.randn(self.W_dec.shape, generator=generator)
            self.W_dec.copy_(directions / directions.norm(dim=1, keepdim=True))
            self.W_enc.copy_(self.W_dec.T)
            self.b_pre.copy_(torch.as_tensor(median, dtype=self.b_pre.dtype))
            probe = torch.randn(256, self.W_dec.shape[1], generator=generator)
            probe = probe / probe.norm(dim=1, keepdim=True)
            k = min(k, self.W_dec.shape[0])
            values, indices = self.pre_acts(probe + self.b_pre).topk(k, dim=1)
            norm = self.decode(values.relu(), indices, bias=False).norm(dim=1).mean()
            if norm > 0:
                self.W_enc.div_(norm)

    SAENet.__module__, SAENet.__qualname__ = __name__, "SAENet"
    globals()["SAENet"] = SAENet
    return {"SAENet": SAENet}


def __getattr__(name):
    if name == "SAENet":
        return network_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class BatchLoss:
    """The loss of one batch and the statistics the epoch reports.

    ``loss = |x - x_hat|^2 / (rows * total_var)``: the normalised MSE (the authors scale
    the MSE by one over the data's variance, so the loss is the fraction of variance
    unexplained), plus ``aux_coef`` times AuxK: the ``k_aux`` dead latents with the
    largest pre-activations (dead: no firing for ``dead_after`` rows) reconstruct the
    residual ``x - x_hat`` (detached), normalised by the residual's own variance, as the
    authors' ``normalized_mse``. The firing counters are updated before the dead mask is
    read, as theirs.
    """

    def __init__(self, net, k: int, k_aux: int, aux_coef: float, dead_after: int,
                 total_var: float):
        import torch

        self.net, self.k, self.k_aux, self.aux_coef = net, k, k_aux, aux_coef
        self.dead_after, self.total_var = dead_after, total_var
        n_latents = net.W_dec.shape[0]
        self.fired = torch.zeros(n_latents, dtype=torch.bool, device=net.W_dec.device)
        self.sse = torch.zeros((), dtype=torch.float64, device=net.W_dec.device)
        self.aux = torch.zeros((), dtype=torch.float64, device=net.W_dec.device)
        self.rows = self.aux_steps = 0

    def reset(self):
        self.fired.zero_()
        self.sse.zero_()
        self.aux.zero_()
        self.rows = self.aux_steps = 0

    def __call__(self, x):
        import torch

        net = self.net
        pre = net.pre_acts(x)
        values, indices = pre.topk(self.k, dim=1)
        values = values.relu()
        err = x - net.decode(values, indices)
        sse = err.square().sum()
        loss = sse / (len(x) * self.total_var)
        with torch.no_grad():
            self.sse += sse.detach()
            self.rows += len(x)
            hit = indices[values > 0]
            self.fired[hit] = True
            net.last_fired += len(x)
            net.last_fired[hit] = 0
        if self.aux_coef > 0 and self.k_aux > 0:
            dead = net.last_fired >= self.dead_after
            n_dead = int(dead.sum())
            if n_dead:
                aux = self._aux_loss(pre, dead, min(self.k_aux, n_dead), err.detach())
                self.aux += aux.detach()
                self.aux_steps += 1
                loss = loss + self.aux_coef * aux
        return loss

    def _aux_loss(self, pre, dead, k_aux: int, residual):
        values, indices = pre.masked_fill(~dead, -float("inf")).topk(k_aux, dim=1)
        recon = self.net.decode(values.relu(), indices, bias=False)
        spread = (residual - residual.mean(0)).square().sum().clamp_min(1e-30)
        return (recon - residual).square().sum() / spread

    def record(self) -> dict:
        """The epoch's fraction of variance unexplained (from the batches as trained),
        the share of latents that fired on none of its rows, and the mean AuxK loss."""
        rows = max(self.rows, 1)
        return {"fvu": float(self.sse) / (rows * self.total_var),
                "dead": 1.0 - float(self.fired.float().mean()),
                "aux": float(self.aux) / self.aux_steps if self.aux_steps else 0.0}


class UnitNormStep:
    """Adam as the trainer sees it: before each step the decoder gradient's component
    along each direction is removed (the authors' projection), after it every
    direction is scaled back to unit norm."""

    def __init__(self, opt, net):
        self.opt, self.net = opt, net

    def zero_grad(self):
        self.opt.zero_grad(set_to_none=True)

    def step(self):
        import torch

        W = self.net.W_dec
        with torch.no_grad():
            if W.grad is not None:
                W.grad.sub_((W.grad * W).sum(1, keepdim=True) * W)
            self.opt.step()
            W.div_(W.norm(dim=1, keepdim=True).clamp_min(1e-12))


def top_k_rows(chunks, n_latents: int, n_rows: int, min_activation: float) -> list:
    """For each latent, the row indices of its ``n_rows`` largest activations above
    ``min_activation``, largest first, merged over ``(start, codes)`` chunks so only
    ``n_rows`` per latent are ever kept."""
    import torch

    best_v = torch.full((0, n_latents), -float("inf"))
    best_i = torch.zeros((0, n_latents), dtype=torch.int64)
    for start, codes in chunks:
        # the chunk's own best first: memory stays at one chunk plus 2 x n_rows per latent
        values, at = codes.topk(min(n_rows, len(codes)), dim=0)
        values, index = torch.cat([best_v, values]), torch.cat([best_i, at + start])
        best_v, at = values.topk(min(n_rows, len(values)), dim=0)
        best_i = index.gather(0, at)
    best_v, best_i = best_v.numpy(), best_i.numpy()
    return [best_i[best_v[:, j] > min_activation, j] for j in range(n_latents)]
