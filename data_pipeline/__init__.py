"""Data sets for crack segmentation: the synthetic default and Pytorch-UNet-style folders."""
from data_pipeline.build import load_data
from data_pipeline.data import SegmentationData, split_indices
from data_pipeline.folder import DataFolderError

__all__ = ["DataFolderError", "SegmentationData", "load_data", "split_indices"]
