"""Deep Interest Network family (Zhou et al., KDD 2018): synthetic click logs, models, metrics.

Training lives in `models.ctr.train` (`python -m models.ctr.train`), imported on demand.
"""

from models.ctr.data import ClickData, ClickDataConfig, iterate_batches, make_click_data
from models.ctr.din import (
    VARIANTS,
    DeepInterestNetwork,
    Dice,
    DinConfig,
    mini_batch_aware_l2,
    variant_config,
)
from models.ctr.metrics import auc, gauc, rela_impr

__all__ = [
    "VARIANTS",
    "ClickData",
    "ClickDataConfig",
    "DeepInterestNetwork",
    "Dice",
    "DinConfig",
    "auc",
    "gauc",
    "iterate_batches",
    "make_click_data",
    "mini_batch_aware_l2",
    "rela_impr",
    "variant_config",
]
