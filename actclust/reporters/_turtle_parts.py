"""TURTLE's parts: representation spaces, the stacked task encoders, the outer loss and
the inner classifiers' closed-form Adam steps (used by :mod:`.turtle`)."""

from __future__ import annotations

import numpy as np

from ..errors import ActclustError
from ._base import check_finite_rows, is_layer_view


def _is_2d(X) -> bool:
    """A 2-D array, tensor, data frame or store layer: one representation space."""
    shape = getattr(X, "shape", None)
    return shape is not None and len(shape) == 2


def as_spaces(X) -> tuple[list, bool]:
    """``(spaces, several)``: a list or tuple whose every item is 2-D is several spaces
    (one per item); anything else (an array, a tensor, a store layer, a list of rows) is
    one space.

    Example:
        >>> import numpy as np
        >>> spaces, several = as_spaces([np.zeros((4, 2)), np.zeros((4, 3))])
        >>> len(spaces), several
        (2, True)
        >>> as_spaces([[1.0, 2.0], [3.0, 4.0]])[1]  # a list of rows is one space
        False
    """
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ActclustError("X is an empty list: give one array (or store layer) per "
                                "representation space, or a single array")
        if all(_is_2d(space) for space in X):
            rows = {int(space.shape[0]) for space in X}
            if len(rows) > 1:
                raise ActclustError(f"the representation spaces have different numbers of "
                                    f"rows ({sorted(rows)}); row i of every space must be "
                                    "the same input")
            return list(X), True
    return [X], False


def _encoder(dims, n_clusters: int, n_heads: int = 1):
    """One task encoder per space: a ``Linear(d, C)`` with bias whose weight is written
    ``g * v / ||v||`` per output row (``nn.utils.weight_norm``'s default), initialised
    like ``nn.Linear`` with ``g = ||v||``; the authors: "weight norm is crucial for good
    performance". Plain parameters, so the module pickles and saves like any other.
    ``n_heads > 1`` stacks that many independent encoders per space (``v`` is
    heads x clusters x features), trained together in one batched product."""
    import torch
    from torch import nn

    lead = (n_heads,) if n_heads > 1 else ()
    thetas = []
    for d in dims:
        bound = 1 / np.sqrt(d)
        v = torch.empty(*lead, n_clusters, d).uniform_(-bound, bound)
        thetas.append(nn.ParameterDict({
            "v": nn.Parameter(v), "g": nn.Parameter(v.norm(dim=-1, keepdim=True)),
            "bias": nn.Parameter(torch.empty(*lead, n_clusters).uniform_(-bound, bound))}))
    return nn.ModuleList(thetas)


def _one_head(encoder, head: int):
    """The task encoders of one head of a stacked encoder, as a one-head encoder."""
    from torch import nn

    return nn.ModuleList([nn.ParameterDict({
        key: nn.Parameter(theta[key][head].detach().clone()) for key in ("v", "g", "bias")})
        for theta in encoder]) if encoder[0]["v"].dim() == 3 else encoder


def _logits(theta, z):
    """``rows x clusters`` logits, or ``heads x rows x clusters`` for stacked heads."""
    import torch

    weight = theta["g"] * theta["v"] / theta["v"].norm(dim=-1, keepdim=True)
    if weight.dim() == 2:
        return torch.nn.functional.linear(z, weight, theta["bias"])
    heads, clusters, d = weight.shape
    flat = z @ weight.reshape(heads * clusters, d).T
    return flat.view(-1, heads, clusters).transpose(0, 1) + theta["bias"][:, None, :]


def _stacked(flat_logits, labels):
    """Inner classifiers' ``rows x (heads * clusters)`` logits as ``labels``' shape."""
    if labels.dim() == 2:
        return flat_logits
    heads, n, clusters = labels.shape
    return flat_logits.view(n, heads, clusters).transpose(0, 1)


def task_labels(encoder, spaces):
    """``(labels, per_space)``: each space's ``softmax(theta_s z_s)`` and their mean
    (with stacked heads, ``heads x rows x clusters`` each)."""
    import torch

    per_space = [torch.softmax(_logits(theta, z), -1) for theta, z in zip(encoder, spaces)]
    return sum(per_space) / len(per_space), per_space


def turtle_loss(inner_logits, labels, per_space, gamma: float = 10.0):
    """TURTLE's outer loss (the authors' Eq. 12):
    ``sum_s CE(W_s z_s, labels) - gamma * sum_s H(mean_batch softmax(theta_s z_s))``.

    ``inner_logits`` are the inner classifiers' logits per space (treated as constants:
    the first-order hypergradient reaches the task encoder only through the soft
    ``labels``); ``per_space`` each space's own labelling, whose batch mean's entropy
    keeps the clusters in use. Stacked heads (``heads x rows x clusters``) give the sum
    of :func:`head_losses`.

    Example:
        >>> import torch
        >>> labels = torch.eye(3).repeat(4, 1)  # confident and balanced
        >>> logits = 50 * labels  # a classifier that already fits them
        >>> round(turtle_loss([logits], labels, [labels], gamma=1.0).item(), 4)  # -log 3
        -1.0986
    """
    return head_losses(inner_logits, labels, per_space, gamma).sum()


def head_losses(inner_logits, labels, per_space, gamma: float = 10.0):
    """TURTLE's outer loss per head: a vector with one entry per head (one entry for
    ``rows x clusters`` inputs)."""
    import torch

    if labels.dim() == 2:
        inner_logits = [logits.unsqueeze(0) for logits in inner_logits]
        labels, per_space = labels.unsqueeze(0), [p.unsqueeze(0) for p in per_space]
    error = sum(-(labels * torch.log_softmax(logits.detach(), -1)).sum(-1).mean(-1)
                for logits in inner_logits)
    entropy = sum(torch.special.entr(p.mean(-2)).sum(-1) for p in per_space)
    return error - gamma * entropy


def _inner_fit(spaces, labels, weights, steps: int, lr: float, state=None):
    """``steps`` Adam steps (betas 0.9/0.999, eps 1e-8) of one linear classifier per space
    on soft ``labels``, by the closed-form gradient of the cross-entropy (the same
    updates ``torch.optim.Adam`` makes, without autograd's overhead on these small
    problems). ``weights`` (per space ``[W, b]``) are updated in place; ``state`` holds
    Adam's moments across calls (a warm start) or is ``None`` (fresh moments).

    Stacked heads: ``labels`` is ``heads x rows x clusters`` and each space's ``W`` is
    ``(heads * clusters) x features`` (``b`` likewise), one classifier per head in one
    product; the softmax runs over each head's clusters."""
    import torch

    if state is None:
        state = {"t": 0, "m": [[torch.zeros_like(w) for w in ws] for ws in weights],
                 "v": [[torch.zeros_like(w) for w in ws] for ws in weights]}
    clusters = labels.shape[-1]
    if labels.dim() == 3:
        labels = labels.transpose(0, 1).reshape(labels.shape[1], -1)
    n = labels.shape[0]
    with torch.no_grad():
        for _ in range(steps):
            state["t"] += 1
            t = state["t"]
            correction1, correction2 = 1 - 0.9 ** t, 1 - 0.999 ** t
            for z, ws, ms, vs in zip(spaces, weights, state["m"], state["v"]):
                W, b = ws
                logits = torch.addmm(b, z, W.T).view(n, -1, clusters)
                residual = (torch.softmax(logits, -1).view(n, -1) - labels) / n
                for param, grad, m, v in zip(ws, (residual.T @ z, residual.sum(0)), ms, vs):
                    m.mul_(0.9).add_(grad, alpha=0.1)
                    v.mul_(0.999).addcmul_(grad, grad, value=0.001)
                    denom = (v.sqrt() / np.sqrt(correction2)).add_(1e-8)
                    param.addcdiv_(m, denom, value=-lr / correction1)
    return state


def _check_space(space, n_features: int | None = None) -> np.ndarray:
    """One space of several, checked as a 2-D finite float32 array."""
    from sklearn.utils import check_array

    if hasattr(space, "detach"):
        space = space.detach().cpu().numpy()
    if is_layer_view(space):
        space = np.asarray(space)
    space = np.asarray(space) if not hasattr(space, "iloc") else space.to_numpy()
    if space.dtype.kind == "f" and space.ndim == 2:
        check_finite_rows(space)
    space = check_array(space, dtype=[np.float32, np.float64]).astype(np.float32)
    if n_features is not None and space.shape[1] != n_features:
        raise ActclustError(f"X has {space.shape[1]} features, but TURTLE is expecting "
                            f"{n_features} features as input")
    return space
