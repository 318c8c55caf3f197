"""devbox: one command gives every person on a shared GPU server their own dev container."""

__version__ = "0.1.0"
