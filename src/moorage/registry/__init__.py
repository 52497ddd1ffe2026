"""The registry's domain: names, digests, manifests, and the repository services over storage."""
