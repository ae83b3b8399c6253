"""Tests of image_recognition.common."""
