"""The sleep cycle: select memories, dream training conversations, train a LoRA
adapter in a child process, validate it, promote and hot-swap it."""
