"""The ablations: AlexNet with one of the paper's features switched, each as the trainer flags that switch it."""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    flags: tuple  # trainer flags that switch the feature
    change: str  # what differs from the baseline
    claim: str  # what the paper says the feature does


VARIANTS = (
    Variant("baseline", (), "the paper's network (ReLU, LRN, overlapping pooling, dropout 0.5, PCA noise)", "reference"),
    Variant(
        "tanh",
        ("--activation", "tanh"),
        "tanh instead of ReLU",
        "ReLU reaches a given training error several times sooner (Figure 1: 6x to 25% on CIFAR-10)",
    ),
    Variant("no_lrn", ("--no_lrn",), "no local response normalisation", "LRN lowers top-1/top-5 error by 1.4%/1.2%"),
    Variant(
        "no_overlap",
        ("--no_overlap",),
        "2x2 stride-2 pooling instead of 3x3 stride 2",
        "overlapping pooling lowers top-1/top-5 error by 0.4%/0.3% and overfits slightly less",
    ),
    Variant(
        "no_dropout",
        ("--dropout_rate", "0"),
        "no dropout in fc6/fc7",
        "without dropout the net overfits substantially (larger train/validation gap); dropout roughly doubles "
        "the iterations needed to converge",
    ),
    Variant(
        "no_pca_noise",
        ("--no_pca_noise",),
        "no PCA colour noise",
        "PCA colour noise lowers top-1 error by over 1%",
    ),
    Variant(
        "two_tower",
        ("--two_tower",),
        "the two-GPU connectivity (conv2/4/5 see only their own tower)",
        "two towers beat one tower of half the kernels by 1.7%/1.2% top-1/top-5 (here the one-tower "
        "baseline has all the kernels, so expect the two towers to be no better)",
    ),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)
