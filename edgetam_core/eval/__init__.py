"""Evaluation: VOS metrics (J, F, J&F, G), data-set readers, protocols and reports.

- ``metrics``: the DAVIS definitions of J and F and their statistics (numpy + OpenCV only).
- ``datasets``: DAVIS, MOSE- and SA-V-style folders -> ``VOSSequence``.
- ``protocols``: semi-supervised (mask prompts) and interactive (clicks, box) runs of a
  ``Tracker`` over a sequence.
- ``report``: JSON, CSV, per-sequence plots and overlay videos.
"""
