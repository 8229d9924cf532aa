"""CRP relevance-pattern plots."""
