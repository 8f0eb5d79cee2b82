"""fer_core: FER2013 data, CNN members, training, ensembling, evaluation, faces and prediction."""
from .labels import LABELS_6, LABELS_7

__version__ = "0.1.0"
__all__ = ["LABELS_6", "LABELS_7", "__version__"]
