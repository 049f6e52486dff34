"""Model zoo: importing this package registers the DiDiRN family with timm."""

from diffcls.models.didirn import (
    CONDITIONING_MODULES,
    DiDiRN,
    count_parameters,
    didirn18,
    didirn34,
    didirn50,
    didirn101,
    didirn152,
    didirn_small,
    resnet_small,
)

__all__ = [
    "CONDITIONING_MODULES",
    "DiDiRN",
    "count_parameters",
    "didirn18",
    "didirn34",
    "didirn50",
    "didirn101",
    "didirn152",
    "didirn_small",
    "resnet_small",
]
