"""Tests of image_recognition.integrations."""
