"""Training of simulation-trained Keras models and the model artifact.

TensorFlow is imported only inside the functions that need it.
"""

from livetrack.training._config import Randomisation, TrainingConfig, load_training_config
from livetrack.training._data import Batch, make_batch, make_crop
from livetrack.training._train import TrainResult, train

__all__ = [
    "Batch",
    "Randomisation",
    "TrainResult",
    "TrainingConfig",
    "load_training_config",
    "make_batch",
    "make_crop",
    "train",
]
