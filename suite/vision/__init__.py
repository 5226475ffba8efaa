"""Helpers shared by the vision task adapters and vision systems: image decoding, COCO JSON and RLE, metrics.

Tasks and systems both import from here (never from each other), so a system written in a
reproduction decodes images and encodes masks exactly as the reference systems and scorers expect.
"""
