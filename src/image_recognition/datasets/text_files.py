"""kedro-datasets' JSON, CSV, text and plotly datasets, saved so that no reader ever sees half a file.

kedro-datasets' own datasets serialise straight into the final file: a run
killed halfway through a save leaves a torn version there, which the next run
loads as the latest. These subclasses serialise into memory first (so a
failing serialiser touches nothing), then write the complete file as
:class:`~image_recognition.datasets.files.FileDataset` does: locally a
temporary file in the version folder renamed into place, on object storage one
PUT. Loading, versioning, arguments and kedro-viz previews are the parents'.

Text is encoded as ``fs_args.open_args_save.encoding``, UTF-8 by default.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from kedro.io.core import AbstractVersionedDataset, DatasetError, get_filepath_str
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.plotly import JSONDataset as PlotlyJSONDataset
from kedro_datasets.text import TextDataset

from image_recognition.datasets.files import whole_file_writer


class AtomicJSONDataset(JSONDataset):
    """``json.JSONDataset`` whose save writes the whole file or nothing."""

    def save(self, data: Any) -> None:
        buffer = io.StringIO()
        json.dump(data, buffer, **self._save_args)
        _write_whole(self, buffer.getvalue())


class AtomicCSVDataset(CSVDataset):
    """``pandas.CSVDataset`` whose save writes the whole file or nothing."""

    def save(self, data: pd.DataFrame) -> None:
        buffer = io.StringIO()
        data.to_csv(path_or_buf=buffer, **self._save_args)
        _write_whole(self, buffer.getvalue())


class AtomicTextDataset(TextDataset):
    """``text.TextDataset`` (an HTML report, say) whose save writes the whole file or nothing."""

    def save(self, data: str) -> None:
        if not isinstance(data, str):
            raise DatasetError(f"{type(self).__name__} saves a str, got {type(data).__name__}")
        _write_whole(self, data)


class AtomicPlotlyDataset(PlotlyJSONDataset):
    """``plotly.JSONDataset`` whose save writes the whole file or nothing; kedro-viz still draws it."""

    def save(self, data: go.Figure) -> None:
        buffer = io.StringIO()
        data.write_json(buffer, **self._save_args)
        _write_whole(self, buffer.getvalue())


def _write_whole(dataset: AbstractVersionedDataset, text: str) -> None:
    """Write ``text`` as ``dataset``'s save version, atomically on its filesystem."""
    payload = text.encode(dataset._fs_open_args_save.get("encoding") or "utf-8")
    path = get_filepath_str(dataset._get_save_path(), dataset._protocol)
    with whole_file_writer(dataset._fs, dataset._protocol, path) as handle:
        handle.write(payload)
    dataset._invalidate_cache()
