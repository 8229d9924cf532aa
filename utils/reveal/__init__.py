"""Reveal: find shortcut candidates without labels of the shortcut.

* :mod:`spray` — data perspective: clusters and outliers of explanations of one class;
* :mod:`dora` — model perspective: neurons whose activation patterns on their reference signals
  are outliers (synthetic activation-maximisation signals from :mod:`sams`, or real samples);
* :mod:`crp` — model perspective: neurons whose relevance patterns across samples are outliers,
  shown with RelMax reference samples;
* :mod:`embedding`, :mod:`clustering`, :mod:`outliers` — shared building blocks (registries);
* :mod:`results` — the JSON files every method writes and later steps read.
"""
