"""HamNet: semantic segmentation with a Hamburger head, end to end (data, models, training, evaluation).

Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021, arXiv 2109.04553.
Run ``python -m hamlib.seg --help``.
"""
from .backbone import ResNet, load_pretrained, resnet
from .config import PRESETS, SegConfig, get_preset
from .data import (CAMVID_CLASSES, IGNORE_INDEX, VOC_CLASSES, CamVid, SegDataset, SyntheticShapes, VOCSegmentation,
                   download_and_extract)
from .evaluate import evaluate, head_cost, predict
from .heads import HEADS, ContextHead, LightHamHead, build_head
from .metrics import ConfusionMatrix, confusion_matrix, scores
from .model import SegModel, build_model, from_config
from .train import train
from .transforms import build_data, class_names

__all__ = ["ResNet", "resnet", "load_pretrained", "CamVid", "VOCSegmentation", "SyntheticShapes", "SegDataset",
           "download_and_extract", "IGNORE_INDEX", "CAMVID_CLASSES", "VOC_CLASSES", "evaluate", "predict",
           "head_cost", "HEADS", "ContextHead", "LightHamHead", "build_head", "ConfusionMatrix", "confusion_matrix",
           "scores", "SegModel", "build_model", "from_config", "PRESETS", "SegConfig", "get_preset", "build_data",
           "class_names", "train"]
