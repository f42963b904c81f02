"""AlexNet and its Local Response Normalization layer (no data or training code)."""
from model.alexnet import FullyConnected, TowerConv2D, build_alexnet, min_image_size
from model.lrn import LocalResponseNormalization

__all__ = ["FullyConnected", "LocalResponseNormalization", "TowerConv2D", "build_alexnet", "min_image_size"]
