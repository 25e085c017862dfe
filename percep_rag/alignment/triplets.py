"""Old home of the triplet readers; they are data, so they now live in :mod:`percep_rag.datasets.triplets`."""

from percep_rag.datasets.triplets import NIGHTS_COLUMNS as NIGHTS_COLUMNS
from percep_rag.datasets.triplets import TABLE_COLUMNS as TABLE_COLUMNS
from percep_rag.datasets.triplets import OnError as OnError
from percep_rag.datasets.triplets import Problem as Problem
from percep_rag.datasets.triplets import TripletError as TripletError
from percep_rag.datasets.triplets import TripletFileError as TripletFileError
from percep_rag.datasets.triplets import TripletSet as TripletSet
from percep_rag.datasets.triplets import read_nights_csv as read_nights_csv
from percep_rag.datasets.triplets import read_things_triplets as read_things_triplets
from percep_rag.datasets.triplets import read_triplet_table as read_triplet_table
from percep_rag.datasets.triplets import read_triplets as read_triplets

__all__ = [
    "NIGHTS_COLUMNS",
    "TABLE_COLUMNS",
    "OnError",
    "Problem",
    "TripletError",
    "TripletFileError",
    "TripletSet",
    "read_nights_csv",
    "read_things_triplets",
    "read_triplet_table",
    "read_triplets",
]
