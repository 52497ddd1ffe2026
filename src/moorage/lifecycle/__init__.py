"""Keeping a storage root in order: checking it (fsck), and what manifests reference, which
garbage collection marks by."""
