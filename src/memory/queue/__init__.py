"""The write path: journal segments, the writer loop, retry/breaker and dead-letter."""
