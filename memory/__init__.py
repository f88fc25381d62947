"""SleepTrain's memory library: the episodic store, the hippocampus and its judges,
the replay buffer, dream generation, routing keys, embeddings and what a right
answer is. Never imports `sleeptrain_agent`; where it needs a model it is handed
a function."""
