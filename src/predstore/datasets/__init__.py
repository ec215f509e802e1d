"""torch Datasets over a committed store: map-style, sequential, and the row reading they share."""
