"""Mask R-CNN on the pre-trained ViT (arXiv 2404.15653 v1, Table 5): a simple feature pyramid + a detector backend.

Why this shape: the paper fine-tunes Mask R-CNN on a plain ViT with ViTDet's recipe (Table 8b);
ViTDet's *simple feature pyramid* (SFP) builds strides 4/8/16/32 from the last ViT map alone
(transposed convs up, max-pool down), plus a max-pooled stride-64 level for the RPN. Our SFP works
from any patch size (8 for the tiny mini ViT, 16 for B/16), so the same code serves every profile.

The detector itself sits behind a small ``DetectorBackend`` protocol: torchvision's ``MaskRCNN`` is
the default (it runs everywhere, and it is what the paper's own code wraps); detectron2 is optional
and fails with an install hint where it is not importable. Both take images as float tensors in
[0, 1] and return boxes/masks in the coordinates of the images they were given.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dense_vit import encoder_config

SFP_STRIDES = (4, 8, 16, 32)


class BackendUnavailable(RuntimeError):
    """The requested detector backend cannot be used on this machine; the message says how to fix it."""


@dataclass(frozen=True)
class DetectorConfig:
    """Mask R-CNN hyper-parameters. Defaults are ViTDet's at 1024 px; the mini profile shrinks them (our choice)."""

    num_classes: int = 80
    min_size: int = 1024
    max_size: int = 1024
    fpn_channels: int = 256
    box_head_dim: int = 1024
    mask_head_dim: int = 256
    mask_head_convs: int = 4
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    rpn_pre_nms_train: int = 2000
    rpn_post_nms_train: int = 1000
    rpn_pre_nms_test: int = 1000
    rpn_post_nms_test: int = 1000
    rpn_batch: int = 256
    roi_batch: int = 512
    detections_per_img: int = 100
    backend: str = "torchvision"

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "DetectorConfig":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


class LayerNorm2d(nn.Module):
    """LayerNorm over channels of an NCHW map (ViTDet's norm inside the SFP)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def rescale_block(dim: int, ratio: float) -> tuple[nn.Module, int]:
    """Upsample by ``ratio`` > 1 with 2x transposed convs, downsample with max-pool; returns (module, channels)."""
    layers: list[nn.Module] = []
    ch = dim
    while ratio > 1:
        out = max(ch // 2, 16)
        layers.append(nn.ConvTranspose2d(ch, out, 2, stride=2))
        ratio /= 2
        if ratio > 1:
            layers += [LayerNorm2d(out), nn.GELU()]
        ch = out
    if ratio < 1:
        layers.append(nn.MaxPool2d(int(round(1 / ratio))))
    return nn.Sequential(*layers), ch


class ViTSimpleFPN(nn.Module):
    """ViT patch map -> OrderedDict of 256-ch (``fpn_channels``) maps at strides 4/8/16/32 + 'pool' (stride 64)."""

    def __init__(self, encoder: nn.Module, out_channels: int):
        super().__init__()
        self.encoder = encoder
        self.out_channels = out_channels
        stride, dim = encoder.patch_size, encoder.width
        self.scales = nn.ModuleList()
        self.outs = nn.ModuleList()
        for s in SFP_STRIDES:
            scale, ch = rescale_block(dim, stride / s)
            self.scales.append(scale)
            self.outs.append(nn.Sequential(nn.Conv2d(ch, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                                           nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                           LayerNorm2d(out_channels)))

    def forward(self, images: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feat = self.encoder.feature_map(images)
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i, (scale, proj) in enumerate(zip(self.scales, self.outs)):
            out[str(i)] = proj(scale(feat))
        out["pool"] = F.max_pool2d(out[str(len(SFP_STRIDES) - 1)], 1, 2)
        return out


@dataclass
class RawDetections:
    """Detections of one image in its input coordinates: xyxy boxes, labels 1..K, masks (N, H, W) bool."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor


class DetectorBackend(Protocol):
    name: str

    def build(self, encoder: nn.Module, cfg: DetectorConfig) -> nn.Module:
        """A Mask R-CNN on ``encoder`` (a torchvision ViT) with ``cfg.num_classes`` foreground classes."""

    def loss(self, model: nn.Module, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
             ) -> torch.Tensor:
        """Sum of the Mask R-CNN losses; targets hold xyxy ``boxes``, ``labels`` 1..K and (N, H, W) ``masks``."""

    def predict(self, model: nn.Module, images: list[torch.Tensor]) -> list[RawDetections]:
        """Detections in the coordinates of each given image."""


class TorchvisionBackend:
    """torchvision's MaskRCNN on the ViT + SFP (the default; corenet's Table 5 model wraps the same classes)."""

    name = "torchvision"

    def build(self, encoder: nn.Module, cfg: DetectorConfig) -> nn.Module:
        from torchvision.models.detection import MaskRCNN
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

        backbone = ViTSimpleFPN(encoder, cfg.fpn_channels)
        norm = encoder_config(encoder)
        k = cfg.num_classes + 1
        c = cfg.fpn_channels
        anchors = AnchorGenerator(tuple((s,) for s in cfg.anchor_sizes), ((0.5, 1.0, 2.0),) * len(cfg.anchor_sizes))
        return MaskRCNN(
            backbone, num_classes=None, min_size=cfg.min_size, max_size=cfg.max_size,
            image_mean=list(norm.mean), image_std=list(norm.std), rpn_anchor_generator=anchors,
            rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_train, rpn_post_nms_top_n_train=cfg.rpn_post_nms_train,
            rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_test, rpn_post_nms_top_n_test=cfg.rpn_post_nms_test,
            rpn_batch_size_per_image=cfg.rpn_batch, box_batch_size_per_image=cfg.roi_batch,
            box_detections_per_img=cfg.detections_per_img,
            box_head=TwoMLPHead(c * 7 * 7, cfg.box_head_dim), box_predictor=FastRCNNPredictor(cfg.box_head_dim, k),
            mask_head=MaskRCNNHeads(c, [cfg.mask_head_dim] * cfg.mask_head_convs, 1),
            mask_predictor=MaskRCNNPredictor(cfg.mask_head_dim, cfg.mask_head_dim, k))

    def loss(self, model: nn.Module, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
             ) -> torch.Tensor:
        return sum(model(images, targets).values())

    def predict(self, model: nn.Module, images: list[torch.Tensor]) -> list[RawDetections]:
        outs = model(images)
        return [RawDetections(o["boxes"], o["scores"], o["labels"], o["masks"][:, 0] >= 0.5) for o in outs]


DETECTRON2_HINT = ("detectron2 is not installed. It has no wheels for this torch: build it from source with "
                   "`pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'`, "
                   "or use the default backend (backend: torchvision)")


class Detectron2Backend:
    """detectron2's RPN + StandardROIHeads on the same ViT + SFP (optional; needs detectron2 built from source).

    detectron2 does not resize inside the model, so this backend resizes to ``min_size``/``max_size`` itself
    and asks detectron2 to paste results back at the given image size.
    """

    name = "detectron2"

    def __init__(self) -> None:
        try:
            import detectron2  # noqa: F401
        except ImportError as e:
            raise BackendUnavailable(DETECTRON2_HINT) from e
        self.cfg: DetectorConfig | None = None

    def _d2_config(self, cfg: DetectorConfig) -> Any:
        from detectron2.config import get_cfg

        d2 = get_cfg()
        d2.MODEL.MASK_ON = True
        d2.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
        d2.MODEL.ANCHOR_GENERATOR.SIZES = [[s] for s in cfg.anchor_sizes]
        d2.MODEL.RPN.PRE_NMS_TOPK_TRAIN, d2.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.rpn_pre_nms_train, cfg.rpn_post_nms_train
        d2.MODEL.RPN.PRE_NMS_TOPK_TEST, d2.MODEL.RPN.POST_NMS_TOPK_TEST = cfg.rpn_pre_nms_test, cfg.rpn_post_nms_test
        d2.MODEL.RPN.BATCH_SIZE_PER_IMAGE = cfg.rpn_batch
        d2.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
        d2.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
        d2.MODEL.ROI_HEADS.NUM_CLASSES = cfg.num_classes
        d2.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = cfg.roi_batch
        d2.MODEL.ROI_BOX_HEAD.NAME, d2.MODEL.ROI_BOX_HEAD.NUM_FC = "FastRCNNConvFCHead", 2
        d2.MODEL.ROI_BOX_HEAD.FC_DIM, d2.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = cfg.box_head_dim, 7
        d2.MODEL.ROI_MASK_HEAD.NAME, d2.MODEL.ROI_MASK_HEAD.NUM_CONV = "MaskRCNNConvUpsampleHead", cfg.mask_head_convs
        d2.MODEL.ROI_MASK_HEAD.CONV_DIM, d2.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = cfg.mask_head_dim, 14
        d2.TEST.DETECTIONS_PER_IMAGE = cfg.detections_per_img
        return d2

    def build(self, encoder: nn.Module, cfg: DetectorConfig) -> nn.Module:
        from detectron2.layers import ShapeSpec
        from detectron2.modeling import Backbone, GeneralizedRCNN, build_proposal_generator, build_roi_heads

        sfp = ViTSimpleFPN(encoder, cfg.fpn_channels)
        norm = encoder_config(encoder)
        names = {"0": "p2", "1": "p3", "2": "p4", "3": "p5", "pool": "p6"}

        class _SFP(Backbone):
            def __init__(self) -> None:
                super().__init__()
                self.sfp = sfp

            def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
                return {names[k]: v for k, v in self.sfp(x).items()}

            def output_shape(self) -> dict[str, Any]:
                return {f"p{i + 2}": ShapeSpec(channels=cfg.fpn_channels, stride=4 * 2 ** i) for i in range(5)}

            @property
            def size_divisibility(self) -> int:
                return 64

        self.cfg = cfg
        d2 = self._d2_config(cfg)
        backbone = _SFP()
        shapes = backbone.output_shape()
        return GeneralizedRCNN(backbone=backbone, proposal_generator=build_proposal_generator(d2, shapes),
                               roi_heads=build_roi_heads(d2, shapes), input_format="RGB",
                               pixel_mean=[255 * m for m in norm.mean], pixel_std=[255 * s for s in norm.std])

    def _resize(self, image: torch.Tensor, cfg: DetectorConfig) -> tuple[torch.Tensor, float]:
        from .dense_data import scale_for

        h, w = image.shape[-2:]
        s = scale_for(h, w, cfg.min_size, cfg.max_size)
        out = F.interpolate(image[None], size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False)[0]
        return out * 255.0, s

    def loss(self, model: nn.Module, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
             ) -> torch.Tensor:
        from detectron2.structures import BitMasks, Boxes, Instances

        assert self.cfg is not None, "build() first"
        inputs = []
        for img, t in zip(images, targets):
            x, s = self._resize(img, self.cfg)
            inst = Instances(tuple(x.shape[-2:]))
            inst.gt_boxes = Boxes(t["boxes"] * s)
            inst.gt_classes = t["labels"] - 1
            masks = F.interpolate(t["masks"][None].float(), size=tuple(x.shape[-2:]), mode="nearest")[0]
            inst.gt_masks = BitMasks(masks > 0.5)
            inputs.append({"image": x, "instances": inst})
        from detectron2.utils.events import EventStorage

        with EventStorage(0):  # detectron2's heads log training statistics into the current storage
            return sum(model(inputs).values())

    def predict(self, model: nn.Module, images: list[torch.Tensor]) -> list[RawDetections]:
        assert self.cfg is not None, "build() first"
        inputs = []
        for img in images:
            x, _ = self._resize(img, self.cfg)
            inputs.append({"image": x, "height": img.shape[-2], "width": img.shape[-1]})
        out = []
        for o in model(inputs):
            inst = o["instances"]
            out.append(RawDetections(inst.pred_boxes.tensor, inst.scores, inst.pred_classes + 1,
                                     inst.pred_masks.bool()))
        return out


BACKENDS = {"torchvision": TorchvisionBackend, "detectron2": Detectron2Backend}


def get_backend(name: str) -> DetectorBackend:
    if name not in BACKENDS:
        raise ValueError(f"unknown detector backend {name!r} (known: {', '.join(BACKENDS)})")
    return BACKENDS[name]()


def detection_step_loss(backend: DetectorBackend, device: str):
    """Horizontal flip with probability 0.5 (our choice at small scale: ViTDet's large-scale jitter is left out)."""
    from .dense_data import DetectionItem, hflip_detection

    def step(model: nn.Module, batch: list[DetectionItem], gen: torch.Generator) -> torch.Tensor:
        items = [hflip_detection(it) if bool(torch.rand(1, generator=gen) < 0.5) else it for it in batch]
        images = [it.image.float().div(255.0).to(device) for it in items]
        targets = [{"boxes": it.boxes.to(device), "labels": it.labels.to(device), "masks": it.masks.to(device)}
                   for it in items]
        return backend.loss(model, images, targets)

    return step
