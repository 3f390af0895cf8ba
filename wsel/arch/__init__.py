"""What wsel knows about model families, as data: architecture families (`*.json`: tensor templates,
config keys of each size) and name sets (`names/*.json`: axis labels of checkpoint layouts without a
config.json). Both are packaged data, loaded through `importlib.resources` and validated strictly."""

from wsel.arch.families import (
    REQUIRED_SIZES,
    Architecture,
    Template,
    all_architectures,
    for_model_type,
    supported_model_types,
)
from wsel.arch.namesets import NameSet, all_name_sets, detect_name_set

__all__ = [
    "REQUIRED_SIZES",
    "Architecture",
    "NameSet",
    "Template",
    "all_architectures",
    "all_name_sets",
    "detect_name_set",
    "for_model_type",
    "supported_model_types",
]
