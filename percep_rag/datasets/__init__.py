"""Data in: image records (folders, manifests, DeepFashion2, VTAB tasks) and triplet judgments.

>>> from percep_rag.datasets import load_records, read_triplets
>>> callable(load_records) and callable(read_triplets)
True
"""

from percep_rag.datasets.bapps import read_bapps_2afc
from percep_rag.datasets.deepfashion2 import DeepFashion2Error, consumer_to_shop_ground_truth, read_deepfashion2
from percep_rag.datasets.records import ImageRecord, ManifestError, load_records, read_manifest, scan_folder
from percep_rag.datasets.sources import Source, load_source
from percep_rag.datasets.triplets import TripletError, TripletFileError, TripletSet, read_triplets
from percep_rag.datasets.vtab import ClassificationTask, read_task

__all__ = [
    "ClassificationTask",
    "DeepFashion2Error",
    "ImageRecord",
    "ManifestError",
    "Source",
    "TripletError",
    "TripletFileError",
    "TripletSet",
    "consumer_to_shop_ground_truth",
    "load_records",
    "load_source",
    "read_bapps_2afc",
    "read_deepfashion2",
    "read_manifest",
    "read_task",
    "read_triplets",
    "scan_folder",
]
