"""Datasets held as uint8 tensors on the compute device, and batches built and augmented there."""

from rdist.data.datasets import (DATASETS, Dataset, DatasetFacts, dataset_shape, list_datasets, load_dataset, npz_file,
                                 num_classes, train_size)
from rdist.data.loader import Batches, augment

__all__ = ["DATASETS", "Batches", "Dataset", "DatasetFacts", "dataset_shape", "augment", "list_datasets", "load_dataset",
           "npz_file", "num_classes", "train_size"]
