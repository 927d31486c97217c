"""vswitch.lab."""
