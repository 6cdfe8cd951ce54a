import torch
from PIL import Image
from tiny_configs import tiny_miram_config

from miram_hf import MiramForPreTraining
from miram_hf.visualization import save_reconstruction


def test_reconstruction_picture_has_a_panel_per_scale(tmp_path):
    for scales, norm_pix_loss in (([1], False), ([1, 2, 4], True)):
        config = tiny_miram_config(scales=scales, decoder_attention=["sdpa"] * len(scales), norm_pix_loss=norm_pix_loss)
        config.num_channels = 1
        model = MiramForPreTraining(config).eval()
        pixel_values = torch.rand(3, 1, 32, 32)
        with torch.no_grad():
            outputs = model(pixel_values)
        path = save_reconstruction(model, pixel_values, outputs, tmp_path / f"{len(scales)}.png", max_images=2)
        width, height = Image.open(path).size
        # 2.4 inches per panel at 100 dpi: input, masked input and one reconstruction per scale, two rows
        assert (width, height) == (240 * (2 + len(scales)), 480)
