"""The benchmark suite: moorage against the reference registry, side by side (bench/README.md)."""
