"""Storage: the layout (paths), the drivers, and the caches above them."""
