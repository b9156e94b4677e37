"""``gradbox.nn``: modules, layers, losses and initialisers (PyTorch's names)."""
from . import functional, init
from .layers import Dropout, Flatten, LeakyReLU, Linear, ReLU, Sequential, Sigmoid, Softmax, Tanh
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import LAYERS, Module, Parameter, eval_mode, get_layer_class, layer_name
from .conv import Conv2d  # noqa: I001 (convolutional layers, issue 13)
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AvgPool2d, MaxPool2d

__all__ = [
    "Module", "Parameter", "Linear", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "Softmax",
    "Dropout", "Flatten", "Sequential", "CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss",
    "functional", "init", "eval_mode", "LAYERS", "get_layer_class", "layer_name",
    "Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d",
]
