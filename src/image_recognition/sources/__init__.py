"""Where the images come from: CIFAR-10 fetching, verifying, decoding and splitting, and images as tensors; imports only ``common``."""
