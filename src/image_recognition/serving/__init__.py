"""Serving a trained checkpoint: prediction on new images and export to ONNX and safetensors; imports the layers below it, never the Kedro glue or pipelines."""
