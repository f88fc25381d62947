"""SleepTrain's memory library: the episodic store and, later, the hippocampus,
replay buffer, dream generation and embeddings. Never imports `sleeptrain_agent`."""
