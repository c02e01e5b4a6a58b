"""Models on the device accelerator: runtime, delegates, registry, one wrapper per model."""
