"""SleepTrain: a chat agent that learns from its own conversations while it sleeps."""

__version__ = "0.1.0"
