"""recsys: train, tune and interpret recommender systems."""

import warnings

__version__ = "0.1.0"

# torch announces the beta status of its sparse CSR kernels on first use; the models here use
# them deliberately, so the notice is noise for every user
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
