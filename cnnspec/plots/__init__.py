"""Pictures: training curves, trained filters and feature maps (matplotlib; torch for the last two)."""
