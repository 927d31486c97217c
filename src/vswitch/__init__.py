"""vswitch: Hyper-V-style virtual switches for Linux.

External, Internal and Private switches built from a pure learning-switch core (`vswitch.core`),
port back-ends that move frames (`vswitch.ports`), a forwarding loop (`vswitch.datapath`) and a
control plane that knows switch types (`vswitch.control`).
"""

__version__ = "0.1.0"
