"""MIRAM configuration."""

from transformers import PretrainedConfig

LINEAR_ATTENTIONS = ("nystromformer", "performer", "linformer")

# AutoModel* resolves any MIRAM checkpoint to any of these heads, with or without the package installed.
MIRAM_AUTO_MAP = {
    "AutoConfig": "configuration_miram.MiramConfig",
    "AutoModel": "modeling_miram.MiramModel",
    "AutoModelForPreTraining": "modeling_miram.MiramForPreTraining",
    "AutoModelForImageClassification": "modeling_miram.MiramForImageClassification",
}


class MiramConfig(PretrainedConfig):
    r"""
    Configuration of a MIRAM model: a ViT masked autoencoder with one decoder per reconstruction scale
    (Masked Image Reconstruction Across Multiple Scales, Nguyen et al.). The encoder and decoder fields are those of
    transformers' `ViTMAEConfig`, so a ViTMAE checkpoint maps onto the encoder and the scale-1 decoder.

    Args:
        scales (`list[int]`, defaults to `[1, 2]`):
            Reconstruction factors. Decoder `k` reconstructs the image at `scales[k]` times the input size: its token
            grid is the encoder grid with each token duplicated into a `scales[k] x scales[k]` block.
        decoder_attention (`list[str]`, *optional*):
            Attention of each decoder: an exact implementation of transformers' attention interface (`"sdpa"`,
            `"eager"`, `"flash_attention_2"`, ...) or a linear one (`"nystromformer"`, `"performer"`, `"linformer"`).
            Defaults to `"sdpa"` for every scale. The encoder follows `attn_implementation` as usual.
        scale_loss_weights (`list[float]`, *optional*):
            Weights of the per-scale losses in the total loss (a weighted mean). Defaults to equal weights, as in the
            paper.
        num_landmarks (`int`, defaults to 64): Nystromformer landmarks.
        nystrom_pinv_iterations (`int`, defaults to 6): Newton-Schulz iterations of the Nystromformer pseudo-inverse.
        nystrom_conv_kernel_size (`int`, defaults to 33): depthwise convolution on the values (0 disables it).
        performer_features (`int`, defaults to 256): FAVOR+ random features per head.
        performer_seed (`int`, defaults to 0): seed of the random features (layer `i` uses `performer_seed + i`).
        linformer_k (`int`, defaults to 256): projected sequence length of Linformer.
        use_mean_pooling (`bool`, defaults to `True`):
            Classification from the mean of the patch tokens (MAE fine-tuning) rather than the CLS token.
        drop_path_rate (`float`, defaults to 0.0): stochastic depth of the encoder, for fine-tuning.

    Example:

    ```python
    >>> from miram_hf import MiramConfig, MiramForPreTraining
    >>> config = MiramConfig(image_size=112, scales=[1, 2], decoder_attention=["sdpa", "nystromformer"])
    >>> model = MiramForPreTraining(config)
    ```
    """

    model_type = "miram"

    def __init__(
        self,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-12,
        image_size: int | list[int] = 224,
        patch_size: int = 16,
        num_channels: int = 3,
        qkv_bias: bool = True,
        decoder_num_attention_heads: int = 16,
        decoder_hidden_size: int = 512,
        decoder_num_hidden_layers: int = 8,
        decoder_intermediate_size: int = 2048,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = False,
        scales: list[int] | None = None,
        decoder_attention: list[str] | None = None,
        scale_loss_weights: list[float] | None = None,
        num_landmarks: int = 64,
        nystrom_pinv_iterations: int = 6,
        nystrom_conv_kernel_size: int = 33,
        performer_features: int = 256,
        performer_seed: int = 0,
        linformer_k: int = 256,
        use_mean_pooling: bool = True,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        kwargs.setdefault("auto_map", dict(MIRAM_AUTO_MAP))
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.image_size = list(image_size) if isinstance(image_size, (list, tuple)) else image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.qkv_bias = qkv_bias
        self.decoder_num_attention_heads = decoder_num_attention_heads
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_hidden_layers = decoder_num_hidden_layers
        self.decoder_intermediate_size = decoder_intermediate_size
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.scales = list(scales) if scales is not None else [1, 2]
        self.decoder_attention = list(decoder_attention) if decoder_attention else ["sdpa"] * len(self.scales)
        self.scale_loss_weights = list(scale_loss_weights) if scale_loss_weights else [1.0] * len(self.scales)
        self.num_landmarks = num_landmarks
        self.nystrom_pinv_iterations = nystrom_pinv_iterations
        self.nystrom_conv_kernel_size = nystrom_conv_kernel_size
        self.performer_features = performer_features
        self.performer_seed = performer_seed
        self.linformer_k = linformer_k
        self.use_mean_pooling = use_mean_pooling
        self.drop_path_rate = drop_path_rate
        self._validate_miram()

    @property
    def image_height_width(self) -> tuple[int, int]:
        size = self.image_size
        return (size, size) if isinstance(size, int) else (size[0], size[1])

    @property
    def patch_grid(self) -> tuple[int, int]:
        """Encoder token grid (rows, columns) at `image_size`."""
        height, width = self.image_height_width
        return height // self.patch_size, width // self.patch_size

    def _validate_miram(self) -> None:
        height, width = self.image_height_width
        if not isinstance(self.patch_size, int):
            raise ValueError(f"patch_size must be one int (square patches), got {self.patch_size!r}.")
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image_size {height}x{width} is not a multiple of patch_size {self.patch_size}: "
                "pick a size whose height and width divide by the patch size."
            )
        if not self.scales or any(not isinstance(f, int) or f < 1 for f in self.scales):
            raise ValueError(f"scales must be a non-empty list of positive ints such as [1, 2], got {self.scales!r}.")
        if len(set(self.scales)) != len(self.scales):
            raise ValueError(f"scales must not repeat a factor, got {self.scales!r}.")
        for name in ("decoder_attention", "scale_loss_weights"):
            if len(getattr(self, name)) != len(self.scales):
                raise ValueError(
                    f"{name} needs one entry per scale: scales={self.scales} but {name}={getattr(self, name)!r}."
                )
        if any(w < 0 for w in self.scale_loss_weights) or sum(self.scale_loss_weights) <= 0:
            raise ValueError(f"scale_loss_weights must be non-negative with a positive sum: {self.scale_loss_weights}.")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}.")
        for size, heads, what in (
            (self.hidden_size, self.num_attention_heads, "hidden_size"),
            (self.decoder_hidden_size, self.decoder_num_attention_heads, "decoder_hidden_size"),
        ):
            if size % heads:
                raise ValueError(f"{what}={size} is not divisible by its number of attention heads ({heads}).")
            if size % 4:
                raise ValueError(f"{what}={size} must be divisible by 4 for 2-D sin-cos position embeddings.")


__all__ = ["MiramConfig", "LINEAR_ATTENTIONS", "MIRAM_AUTO_MAP"]
