"""tree stage."""
