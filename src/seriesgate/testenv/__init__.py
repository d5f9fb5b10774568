"""testenv stage."""
