"""Files in: recordings, label boxes, species lists, Raven tables, and the decoded-audio cache."""

from .annotations import LABEL_COLUMNS, Box, boxes_to_frame, read_boxes, write_boxes
from .audio import AudioInfo, find_audio_files, load_audio, n_samples, probe_audio, resample
from .cache import AudioCache
from .dataset import RfcxDataset, load_dataset, probe_directory, resolve_species
from .raven import export_raven_tables, import_raven_tables, read_raven, write_raven
from .species import (
    SpeciesTable,
    read_prior_csv,
    read_species_csv,
    rfcx_species,
    rfcx_test_prevalence,
    species_column,
    write_species_csv,
)

__all__ = [
    "LABEL_COLUMNS", "AudioCache", "AudioInfo", "Box", "RfcxDataset", "SpeciesTable",
    "boxes_to_frame", "export_raven_tables", "find_audio_files", "import_raven_tables", "load_audio",
    "load_dataset", "n_samples", "probe_audio", "probe_directory", "read_boxes", "read_raven",
    "read_prior_csv", "read_species_csv", "resample", "resolve_species", "rfcx_species", "rfcx_test_prevalence",
    "species_column", "write_boxes", "write_raven", "write_species_csv",
]
