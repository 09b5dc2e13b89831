"""Datasets held as uint8 tensors on the compute device, and batches built and augmented there; generated
images (`--extra-data`) memory-mapped from disk and mixed into the batches."""

from rdist.data.datasets import (DATA_DIR_ENV, DATASETS, Dataset, DatasetFacts, data_root, dataset_shape,
                                 list_datasets, load_dataset, npz_file, num_classes, train_size)
from rdist.data.extra import ExtraData, open_extra_data
from rdist.data.loader import Batches, augment
from rdist.data.mixed import MixedBatches
from rdist.data.npzfile import convert_npz, map_npz

__all__ = ["DATASETS", "DATA_DIR_ENV", "Batches", "Dataset", "DatasetFacts", "ExtraData", "MixedBatches", "augment",
           "convert_npz", "data_root", "dataset_shape", "list_datasets", "load_dataset", "map_npz", "npz_file",
           "num_classes", "open_extra_data", "train_size"]
