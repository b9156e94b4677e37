"""``gradbox.nn``: modules, layers, losses and initialisers (PyTorch's names)."""
from . import functional, init
from .layers import Dropout, Flatten, LeakyReLU, Linear, ReLU, Sequential, Sigmoid, Softmax, Tanh
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import LAYERS, Module, Parameter, eval_mode, get_layer_class, layer_name

__all__ = [
    "Module", "Parameter", "Linear", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "Softmax",
    "Dropout", "Flatten", "Sequential", "CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss",
    "functional", "init", "eval_mode", "LAYERS", "get_layer_class", "layer_name",
]
