"""The embeddings DEC and IDEC cluster in: the paper's autoencoder (trained end to end or
layer by layer) or, without pretraining, a linear map initialised as PCA."""

from __future__ import annotations

import numpy as np

from ._trainer import ROW_CHUNK, batches


def autoencoder(d_in: int, hidden: tuple, d_embed: int):
    """Encoder d -> hidden... -> embed (ReLU between, linear embedding) and its mirror."""
    from torch import nn

    dims = [d_in, *hidden, d_embed]
    enc = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
    dec = [nn.Linear(b, a) for a, b in zip(dims[:-1], dims[1:])][::-1]

    def stack(layers):
        mods = []
        for i, layer in enumerate(layers):
            mods.append(layer)
            if i < len(layers) - 1:
                mods.append(nn.ReLU())
        return nn.Sequential(*mods)

    return nn.ModuleDict({"encoder": stack(enc), "decoder": stack(dec)})


def linear_map(d_in: int, d_embed: int, with_decoder: bool):
    """One linear layer d -> embed (and, for IDEC, its transpose back): the embedding
    of ``pretrain="none"``, filled in by :func:`init_pca`."""
    from torch import nn

    parts = {"encoder": nn.Sequential(nn.Linear(d_in, d_embed))}
    if with_decoder:
        parts["decoder"] = nn.Sequential(nn.Linear(d_embed, d_in))
    return nn.ModuleDict(parts)


def principal_axes(data, n_components: int) -> np.ndarray:
    """The top ``n_components`` principal axes (rows) of the already centred ``data``
    (tensor or streamed rows), from the covariance accumulated chunk by chunk in
    float64, so a streamed layer is never loaded whole. Each axis's sign is fixed (its
    largest entry positive) so that the result does not depend on the eigensolver."""
    d = data.shape[1]
    cov = np.zeros((d, d))
    for start in range(0, len(data), ROW_CHUNK):
        chunk = data[start:start + ROW_CHUNK].cpu().numpy().astype(np.float64)
        cov += chunk.T @ chunk
    values, vectors = np.linalg.eigh(cov / len(data))
    axes = vectors[:, np.argsort(values)[::-1][:n_components]].T
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(1)])
    return (axes * signs[:, None]).astype(np.float32)


def init_pca(module, data) -> None:
    """Set the linear map to the projection on the principal axes (zero bias: the rows
    are centred) and the decoder, when there is one, to its transpose, the best linear
    reconstruction from that many dimensions."""
    import torch

    encoder = module["encoder"][0]
    axes = torch.from_numpy(principal_axes(data, encoder.out_features))
    with torch.no_grad():
        encoder.weight.copy_(axes)
        encoder.bias.zero_()
        if "decoder" in module:
            module["decoder"][0].weight.copy_(axes.T)
            module["decoder"][0].bias.zero_()


def pretrain_layerwise(trainer, module, data, generator, *, epochs: int, batch_size: int,
                       dropout: float, lr: float) -> None:
    """Stacked denoising autoencoders: each encoder layer with its mirror decoder layer,
    trained on the (frozen) output of the layers below, input corrupted by dropout.
    Each batch goes through the frozen layers as it is drawn, so no layer's output is
    ever held for all rows (a streamed store layer stays streamed)."""
    import torch
    from torch import nn

    encoders = [m for m in module["encoder"] if isinstance(m, nn.Linear)]
    decoders = [m for m in module["decoder"] if isinstance(m, nn.Linear)][::-1]

    def below(batch, depth):
        with torch.no_grad():
            for enc in encoders[:depth]:
                batch = torch.relu(enc(batch))  # only the last encoder is linear
        return batch

    for depth, (enc, dec) in enumerate(zip(encoders, decoders)):
        last = depth == len(encoders) - 1
        params = list(enc.parameters()) + list(dec.parameters())
        opt = torch.optim.Adam(params, lr=lr)
        pair = nn.ModuleList([enc, dec])

        def denoising(idx, enc=enc, dec=dec, last=last, depth=depth):
            clean = below(data[idx.to(data.device)], depth)
            hidden = enc(nn.functional.dropout(clean, dropout))
            hidden = hidden if last else torch.relu(hidden)
            out = dec(nn.functional.dropout(hidden, dropout))
            out = out if depth == 0 else torch.relu(out)
            return nn.functional.mse_loss(out, clean)

        def epoch(_, opt=opt, depth=depth, loss=denoising):
            losses = trainer.run_batches(batches(len(data), batch_size, generator), loss, opt)
            return {"phase": f"pretrain layer {depth}", "loss": losses.mean(len(data))}

        trainer.run(pair, epochs, epoch, name=f"DEC layer {depth}", lr=lr)
