"""Run the kedro CLI as if the ``mlflow`` extra were not installed: ``python without_mlflow.py run ...``.

MLflow and kedro-mlflow cannot be imported, and their distributions are
invisible to entry-point discovery, so Kedro finds no kedro-mlflow hook or
command, as on a machine without them.
"""

from __future__ import annotations

import importlib.metadata
import sys

HIDDEN = ("mlflow", "kedro_mlflow")
HIDDEN_DISTRIBUTIONS = {"mlflow", "mlflow-skinny", "mlflow-tracing", "kedro-mlflow", "kedro_mlflow"}

for name in HIDDEN:
    sys.modules[name] = None  # `import mlflow` raises ImportError; find_spec returns None

_distributions = importlib.metadata.distributions


def _visible_distributions(**kwargs):
    return (d for d in _distributions(**kwargs) if (d.metadata["Name"] or "").lower() not in HIDDEN_DISTRIBUTIONS)


importlib.metadata.distributions = _visible_distributions

if __name__ == "__main__":
    from kedro.framework.cli import main

    sys.argv[0] = "kedro"
    main()
