"""functional stage."""
