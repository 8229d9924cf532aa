"""Preprocessing entry points: the HDF5 store, and the inputs of SpRAy, DORA and CRP."""
