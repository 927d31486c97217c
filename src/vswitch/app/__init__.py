"""vswitch.app."""
