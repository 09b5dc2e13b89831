"""Datasets held as uint8 tensors on the compute device, and batches built and augmented there."""

from rdist.data.datasets import Dataset, dataset_shape, list_datasets, load_dataset, npz_file, train_size
from rdist.data.loader import Batches, augment

__all__ = ["Batches", "Dataset", "dataset_shape", "augment", "list_datasets", "load_dataset", "npz_file", "train_size"]
