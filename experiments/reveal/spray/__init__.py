"""SpRAy plots."""
