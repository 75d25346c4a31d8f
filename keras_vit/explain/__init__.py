"""Looking inside Vision Transformers: attention maps, rollout, LeGrad and Figure 7 of the ViT paper.

Every function takes a model built by the `keras_vit.applications` factories
(or loaded back from a `.keras` file) and returns NumPy arrays; the `plot_*`
functions turn them into matplotlib figures.

- `attention_maps`: softmax(QKᵀ/√d_k) of each encoder block and head.
- `attention_rollout` / `rollout`: Abnar & Zuidema, "Quantifying Attention
  Flow in Transformers" (2020): the product over layers of
  ½(A_l + I), row-normalised, with heads fused by mean, max or min.
- `legrad`: Bousselham et al., "LeGrad: An Explainability Method for Vision
  Transformers via Feature Formation Sensitivity" (2024): the gradient of the
  class logit with respect to each layer's attention map, ReLU, averaged over
  heads and query tokens, summed over layers, upsampled to the image.
- `mean_attention_distance`: the ViT paper's Figure 7 (right).
- `patch_embedding_filters`: principal components of the embedding filters
  E (Figure 7, left).
- `position_embedding_similarity`: cosine similarity of E_pos (Figure 7,
  centre).
- `remove_patches`, `deletion_test`, `class_probabilities`: faithfulness by
  deletion.

Modules: `graph` (finding the attention blocks by type, the hooks, the
model's logits), `attention`, `rollout`, `legrad`, `analyses` (Figure 7),
`faithfulness`, `heatmaps` (`explain`), `plotting`.

The model's own forward pass is left untouched (the fused attention kernel
stays the default): the model is called as it is, with
`MultiHeadSelfAttention.attention_probs_hook` set on the attention of the
blocks being explained, so only they pay for explicit scores. Public Keras
API only, so nested models and models reloaded from `.keras` work alike.
"""

from keras_vit.explain.analyses import mean_attention_distance, patch_embedding_filters, position_embedding_similarity
from keras_vit.explain.attention import attention_head_maps, attention_maps
from keras_vit.explain.faithfulness import class_probabilities, deletion_test, remove_patches
from keras_vit.explain.heatmaps import METHODS, explain
from keras_vit.explain.legrad import LEGRAD_LAST_BLOCKS, legrad
from keras_vit.explain.plotting import (
    plot_attention_heads,
    plot_heatmaps,
    plot_mean_attention_distance,
    plot_patch_embedding_filters,
    plot_position_embedding_similarity,
    save_explanation_figure,
)
from keras_vit.explain.rollout import HEAD_FUSIONS, attention_rollout, rollout

__all__ = [
    "HEAD_FUSIONS",
    "LEGRAD_LAST_BLOCKS",
    "METHODS",
    "attention_head_maps",
    "attention_maps",
    "attention_rollout",
    "class_probabilities",
    "deletion_test",
    "explain",
    "legrad",
    "mean_attention_distance",
    "patch_embedding_filters",
    "plot_attention_heads",
    "plot_heatmaps",
    "plot_mean_attention_distance",
    "plot_patch_embedding_filters",
    "plot_position_embedding_similarity",
    "position_embedding_similarity",
    "remove_patches",
    "rollout",
    "save_explanation_figure",
]
