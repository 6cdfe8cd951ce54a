"""A Gradio demo of a miram_hf model: upload a mammogram (DICOM, PNG or TIFF) and see what the model does with it.

- a pretraining folder (MIRAM, MAE): the processed image, the masked input and each scale's reconstruction;
- an image classifier: the class probabilities;
- a MIL classifier: the class probabilities and the tile-attention heatmap.

    MIRAM_MODEL=outputs/pretrain python spaces/miram-demo/app.py   # a model folder or a Hub id; `make demo`'s output

`MIRAM_EXAMPLE=mammogram.dcm` shows that file and its results as the page opens (what screenshot.sh photographs).
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, AutoModelForPreTraining

import miram_hf  # noqa: F401  (registers the models and the processor with the Auto classes)
from miram_hf.training.bags import image_bag
from miram_hf.training.views import normalization_statistics
from miram_hf.visualization import save_reconstruction, save_tile_heatmap

DEFAULT_MODEL = os.environ.get("MIRAM_MODEL", "outputs/pretrain")
EXAMPLE = os.environ.get("MIRAM_EXAMPLE")


@dataclass
class Demo:
    model: torch.nn.Module
    processor: object
    kind: str  # "pretraining", "classifier" or "mil"


def load(name_or_path: str = DEFAULT_MODEL) -> Demo:
    """The model and processor saved in a folder or a Hub repository, and what the demo shows for it."""
    config = AutoConfig.from_pretrained(name_or_path)
    if config.model_type == "roi_attention":
        raise ValueError("RoI attention classifies proposed regions: this demo shows one-image and MIL models only.")
    processor = AutoImageProcessor.from_pretrained(name_or_path)
    if any(name.endswith("ForPreTraining") for name in config.architectures or []):
        return Demo(AutoModelForPreTraining.from_pretrained(name_or_path).eval(), processor, "pretraining")
    model = AutoModelForImageClassification.from_pretrained(name_or_path).eval()
    return Demo(model, processor, "mil" if config.model_type == "mil" else "classifier")


def picture(pixels: torch.Tensor, processor) -> Image.Image:
    """A processed image (channels, height, width), normalised as the model sees it, as an 8-bit picture."""
    mean, std = normalization_statistics(processor)
    gray = (pixels[0] * std + mean).clamp(0, 1).numpy()
    return Image.fromarray((gray * 255).round().astype(np.uint8))


@torch.no_grad()
def analyse(path: str, demo: Demo) -> tuple[Image.Image, Image.Image | None, dict | None, Image.Image | None]:
    """(the processed image, the reconstruction panels, the class probabilities, the tile-attention heatmap) of the
    mammogram at `path`; what does not apply to the model is None."""
    # an uploaded file is a whole mammogram, whatever the processor was saved for (a pretraining one takes crops)
    inputs = demo.processor(path, return_tensors="pt", return_breast_mask=demo.kind == "mil", do_breast_crop=True,
                            do_flip=True)  # fmt: skip
    processed = picture(inputs["pixel_values"][0], demo.processor)
    with tempfile.TemporaryDirectory() as folder:
        if demo.kind == "pretraining":
            targets = inputs.get("target_pixel_values")
            outputs = demo.model(inputs["pixel_values"], **({"target_pixel_values": targets} if targets else {}))
            path = save_reconstruction(demo.model, inputs["pixel_values"], outputs, Path(folder) / "r.png", targets)
            return processed, Image.open(path).convert("RGB"), None, None
        config = demo.model.config
        if demo.kind == "mil":
            mean, std = normalization_statistics(demo.processor)
            image = inputs["pixel_values"][0] * std + mean
            bag, tiles = image_bag(image, inputs["breast_mask"][0], config.tile_size, config.tile_overlap,
                                   config.max_background)  # fmt: skip
            outputs = demo.model(pixel_values=((bag - mean) / std)[None], output_attentions=True)
            heatmap = save_tile_heatmap(image, tiles, outputs.tile_weights[0], Path(folder) / "h.png")
            heatmap = Image.open(heatmap).convert("RGB")
        else:
            outputs, heatmap = demo.model(pixel_values=inputs["pixel_values"]), None
        scores = outputs.logits[0].float()
        multi_label = config.problem_type == "multi_label_classification"
        probabilities = scores.sigmoid() if multi_label else scores.softmax(-1)
        labels = {config.id2label[index]: float(value) for index, value in enumerate(probabilities)}
        return processed, None, labels, heatmap


def interface(demo: Demo, example: str | None = EXAMPLE) -> gr.Interface:
    """The page; with `example`, its results are already shown as the page opens."""
    shown = analyse(example, demo) if example else (None,) * 4
    return gr.Interface(
        fn=lambda path: analyse(path, demo),
        inputs=gr.File(label="mammogram (DICOM, PNG or TIFF)", type="filepath", value=example),
        outputs=[
            gr.Image(shown[0], label="processed (breast crop, chest wall left)", type="pil"),
            gr.Image(
                shown[1],
                label="input | masked | reconstruction at each scale",
                type="pil",
                visible=demo.kind == "pretraining",
            ),  # fmt: skip
            gr.Label(shown[2], label="class probabilities", visible=demo.kind != "pretraining"),
            gr.Image(shown[3], label="tile attention", type="pil", visible=demo.kind == "mil"),
        ],
        title="miram_hf",
        description=f"`{DEFAULT_MODEL}` ({demo.kind}). Research use only: not for diagnosing, screening or triaging "
        "patients.",
        api_name="predict",
        flagging_mode="never",
    )


if __name__ == "__main__":
    interface(load()).launch()
