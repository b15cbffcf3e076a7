"""verl 0.9.1 adapters: the CPU runtime (platform, patches, overlay), the recipe runner, and the
sampler hooks. Import the submodule you need; this package imports nothing heavy."""
