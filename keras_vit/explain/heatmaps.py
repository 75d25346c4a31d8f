"""One heatmap per image by a named method: "legrad", "rollout" or "attention"."""

from keras_vit.explain.attention import attention_heatmap
from keras_vit.explain.legrad import legrad
from keras_vit.explain.rollout import attention_rollout

METHODS = ("legrad", "rollout", "attention")
# The options of `explain` each method takes (`save_explanation_figure` routes them).
METHOD_OPTIONS = {
    "legrad": ("class_index", "layers"),
    "rollout": ("head_fusion", "discard_ratio"),
    "attention": ("layer",),
}


def explain(
    model,
    images,
    method="legrad",
    class_index=None,
    layer=-1,
    head_fusion="mean",
    discard_ratio=0.0,
    upsample=True,
    layers=None,
):
    """One heatmap per image by `method`: "legrad", "rollout" or "attention".

    "legrad" sums over the blocks `layers` (see `legrad`). "attention" is the
    class token's attention at block `layer`, averaged over heads (without a
    class token, the mean attention the patches get).

    Returns:
        float32 `(B, H, W)` in [0, 1], or `(B, gh, gw)` with `upsample=False`.
    """
    if method == "legrad":
        return legrad(model, images, class_index=class_index, layers=layers, upsample=upsample)
    if method == "rollout":
        return attention_rollout(model, images, head_fusion=head_fusion, discard_ratio=discard_ratio, upsample=upsample)
    if method == "attention":
        return attention_heatmap(model, images, layer=layer, upsample=upsample)
    raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
