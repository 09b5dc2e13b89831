"""Datasets held as uint8 tensors on the compute device, and batches built and augmented there."""

from rdist.data.datasets import (DATA_DIR_ENV, DATASETS, Dataset, DatasetFacts, data_folder, dataset_shape,
                                 list_datasets, load_dataset, npz_file, num_classes, train_size)
from rdist.data.loader import Batches, augment

__all__ = ["DATASETS", "DATA_DIR_ENV", "Batches", "Dataset", "DatasetFacts", "augment", "data_folder", "dataset_shape",
           "list_datasets", "load_dataset", "npz_file", "num_classes", "train_size"]
