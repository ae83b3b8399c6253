"""The Kedro pipelines, one package per stage (``nodes.py`` and ``pipeline.py``); they may import every package but the top-level modules."""
