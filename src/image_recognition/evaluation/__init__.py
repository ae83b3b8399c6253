"""Test-set metrics and cost measurements in plain numpy/PyTorch (no Kedro); imports ``models``, ``sources`` and ``common``."""
