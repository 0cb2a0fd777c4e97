"""The AVF-MAE++ model family (timm-registered): modules, masks, losses and construction, no file I/O.

* ``create_model(name, **kw)`` / ``model_name(kind, size)``: any registered variant, e.g.
  ``avf_mae_pp_pretrain_base`` or ``avf_mae_pp_tiny``. Never downloads weights.
* ``avf.models.factory``: the models of the three stages from ``params.yaml`` sections.
* ``init_finetune_from_pretrain(model, state_dict)``: copy encoders and IAVCL from a pretraining state dict.
* ``avf.models.official``: the official key layout (file import lives in ``avf.artifacts.official``).
"""

from avf.models.avf_mae_pp import SIZES, AVFMAEPretrain, PretrainOutput
from avf.models.avf_vit import AVFViT
from avf.models.build import create_model, model_name
from avf.models.multihead import MultiHeadModel, split_multihead
from avf.models.official import convert_official_state_dict, to_official_state_dict
from avf.models.transfer import init_finetune_from_pretrain, strip_prefixes

__all__ = [
    "SIZES",
    "AVFMAEPretrain",
    "AVFViT",
    "MultiHeadModel",
    "PretrainOutput",
    "convert_official_state_dict",
    "create_model",
    "init_finetune_from_pretrain",
    "model_name",
    "split_multihead",
    "strip_prefixes",
    "to_official_state_dict",
]
