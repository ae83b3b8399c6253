"""Tests of image_recognition.serving."""
