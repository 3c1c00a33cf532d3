"""epochal plugin `epochal-tf`: TfNetworkTrainer on TensorFlow 2 / Keras 3. Implemented by the tf
issue; this package only claims its name and entry point for now.
"""

__version__ = "0.1.0"
