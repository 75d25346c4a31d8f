"""Reusable Transformer and Vision Transformer layers, written with `keras.ops` only."""

from keras_vit.layers.class_token import ClassToken
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.image_preprocessing import ImagePreprocessing
from keras_vit.layers.layer_scale import LayerScale
from keras_vit.layers.mlp import MLP
from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention
from keras_vit.layers.multiscale_block import MultiScaleBlock
from keras_vit.layers.patch_encoder import PatchEncoder, resample_position_embedding
from keras_vit.layers.patch_merging import PatchMerging
from keras_vit.layers.pooling_attention import PoolingAttention, relative_distance_index
from keras_vit.layers.positional_encoding import (
    PositionalEncoding,
    sinusoidal_encoding,
    sinusoidal_encoding_2d,
    sinusoidal_encoding_at,
)
from keras_vit.layers.re_attention import ReAttention
from keras_vit.layers.re_attention_block import ReAttentionBlock
from keras_vit.layers.soft_split import SoftSplit
from keras_vit.layers.std_conv2d import StdConv2D
from keras_vit.layers.swin_block import (
    SwinTransformerBlock,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from keras_vit.layers.token_embedding import TokenEmbedding
from keras_vit.layers.token_performer import TokenPerformer
from keras_vit.layers.token_pooling import TokenPooling
from keras_vit.layers.token_transformer import TokenTransformer
from keras_vit.layers.transformer_block import TransformerBlock
from keras_vit.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_vit.layers.window_attention import WindowAttention, relative_position_index

__all__ = [
    "ClassToken",
    "ReAttention",
    "ReAttentionBlock",
    "SoftSplit",
    "TokenPerformer",
    "TokenTransformer",
    "DropPath",
    "ImagePreprocessing",
    "LayerScale",
    "MLP",
    "MultiHeadSelfAttention",
    "PatchEncoder",
    "PositionalEncoding",
    "StdConv2D",
    "TokenPooling",
    "TransformerBlock",
    "TokenEmbedding",
    "TransformerDecoderBlock",
    "resample_position_embedding",
    "sinusoidal_encoding",
    "sinusoidal_encoding_2d",
    "sinusoidal_encoding_at",
    "WindowAttention",
    "relative_position_index",
    "SwinTransformerBlock",
    "shifted_window_mask",
    "window_partition",
    "window_reverse",
    "PatchMerging",
    "PoolingAttention",
    "relative_distance_index",
    "MultiScaleBlock",
]
