"""Figure 7 of the ViT paper (Dosovitskiy et al. 2020): patch-embedding filters, position-embedding
similarity and mean attention distance."""

import numpy as np
from keras import ops

from keras_vit.explain.graph import Structure, check_images, maps_by_block, model_name, walk_layers
from keras_vit.layers.patch_encoder import PatchEncoder


def token_distances(structure):
    """(N, N) pixel distances between the patch centres of `structure`'s grid."""
    gh, gw = structure.grid_size
    ph, pw = structure.pixels_per_token
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    y, x = rows.reshape(-1) * ph, cols.reshape(-1) * pw
    return np.sqrt((y[:, None] - y[None]) ** 2 + (x[:, None] - x[None]) ** 2)


def mean_attention_distance(model, images, batch_size=32):
    """Mean attention distance per block and head, in pixels (ViT paper, Fig. 7 right).

    For each patch token, the distance in image space to every other patch,
    weighted by the attention weights over the patch tokens (renormalised to
    sum to 1 without the prefix tokens), averaged over the patch tokens and
    the images. Like a receptive field size: small for local heads, large
    for global ones.

    Args:
        model: a ViT-family `keras.Model`.
        images: `(B, H, W, C)` or `(H, W, C)`.
        batch_size: images per forward pass.

    Returns:
        float32 array `(L, h)`: block × head, in pixels of the input image.
    """
    images = check_images(model, images)
    structure = Structure(model, images, "mean_attention_distance")
    chosen = structure.resolve_layers(None)
    heads = {b.attention.num_heads for b in structure.blocks}
    if len(heads) != 1:
        raise ValueError(
            f"`mean_attention_distance` needs the same number of heads in every block. Received: {sorted(heads)}"
        )
    distances = token_distances(structure)
    p = structure.num_prefix_tokens
    total = np.zeros((len(chosen), heads.pop()), "float64")

    def on_batch(batch, found):
        for i in chosen:
            a = found.pop(i)[:, :, p:, p:].astype("float64")  # (B, h, N, N)
            a = a / np.maximum(a.sum(axis=-1, keepdims=True), 1e-12)
            total[i] += (a * distances).sum(axis=-1).mean(axis=-1).sum(axis=0)

    maps_by_block(model, images, structure, chosen, on_batch, batch_size)
    return (total / len(images)).astype("float32")


def _find_encoder(model, method):
    encoders = [layer for layer in walk_layers(model) if isinstance(layer, PatchEncoder)]
    if not encoders:
        raise ValueError(
            f"`{method}` needs a model with a patch embedding (PatchEncoder). "
            f"Received: model={model_name(model)!r}, which has none."
        )
    return encoders[-1]


def patch_embedding_filters(model, num_components=28):
    """Principal components of the patch-embedding filters E (ViT paper, Fig. 7 left).

    The projection E maps a flattened P×P×C patch to D dimensions; its D
    filters are P·P·C vectors. Their principal components (SVD of the
    centred filters) show which patch structures the embedding picks up.

    Args:
        model: a model with a `PatchEncoder`.
        num_components: int, components to return (at most min(D, P·P·C)).

    Returns:
        `(components, explained_variance_ratio)`: float32 `(n, P, P, C)`,
        each component scaled to unit norm, and float32 `(n,)`.
    """
    encoder = _find_encoder(model, "patch_embedding_filters")
    kernel = np.asarray(ops.convert_to_numpy(encoder.projection.kernel), dtype="float64")  # (P, P, C, D)
    filters = kernel.reshape(-1, kernel.shape[-1]).T  # (D, P·P·C)
    limit = min(filters.shape)
    if not isinstance(num_components, (int, np.integer)) or not 1 <= num_components <= limit:
        raise ValueError(
            f"`num_components` must be an integer in [1, {limit}] for this model. "
            f"Received: num_components={num_components!r}"
        )
    centred = filters - filters.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    ratio = variance / max(variance.sum(), 1e-12)
    components = vt[:num_components].reshape((num_components,) + kernel.shape[:3])
    return components.astype("float32"), ratio[:num_components].astype("float32")


def position_embedding_similarity(model):
    """Cosine similarity between the position embeddings of the patches (ViT paper, Fig. 7 centre).

    Args:
        model: a model with a `PatchEncoder` that has position embeddings.

    Returns:
        float32 `(gh, gw, gh, gw)`: entry [i, j] is the `(gh, gw)` map of the
        similarity of patch (i, j)'s embedding to every patch's.
    """
    encoder = _find_encoder(model, "position_embedding_similarity")
    table = encoder.position_table()
    if table is None:
        raise ValueError(
            "`position_embedding_similarity` needs position embeddings. Received: model="
            f"{model_name(model)!r} with position_embedding={encoder.position_embedding!r}"
        )
    table = np.asarray(ops.convert_to_numpy(table), dtype="float64")[0, encoder.num_embedded_prefix_tokens :]
    unit = table / np.maximum(np.linalg.norm(table, axis=-1, keepdims=True), 1e-12)
    gh, gw = encoder.grid_size
    return (unit @ unit.T).reshape(gh, gw, gh, gw).astype("float32")
