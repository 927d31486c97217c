"""vswitch.control."""
