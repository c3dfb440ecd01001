"""Target adapters: one module per kind of worker crashlab can attack."""
