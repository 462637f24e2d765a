"""Small shared helpers: logging/progress, atomic file output, image decoding."""
