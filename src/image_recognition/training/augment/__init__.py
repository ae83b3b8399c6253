"""Batched augmentation on the device: ``basic`` (flips, translate, cutout) and ``strong`` (TrivialAugment, MixUp/CutMix).

Plain tensor ops over whole batches with explicit generators; imports only torch and ``basic`` from ``strong``.
"""
