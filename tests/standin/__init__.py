"""A stand-in NVIDIA stack for tests: a second dockerd with a stand-in hook, and nvidia-smi."""
