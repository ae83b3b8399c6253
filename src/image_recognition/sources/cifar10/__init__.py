"""CIFAR-10: fetch and verify the archive, decode it safely, split it, or make a synthetic stand-in; imports only ``common`` and its own modules."""
