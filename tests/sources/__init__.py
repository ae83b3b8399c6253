"""Tests of image_recognition.sources."""
