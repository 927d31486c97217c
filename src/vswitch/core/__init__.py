"""vswitch.core."""
