"""Optional accelerator kernels, each beside a CPU reference and a parity test."""
