"""image_recognition"""

__version__ = "0.1"
