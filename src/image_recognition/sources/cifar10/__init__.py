"""CIFAR-10 and CIFAR-100: fetch and verify the archive, decode it safely, split it, or make a synthetic stand-in; imports only ``common``, ``sources.decoded`` and its own modules."""
