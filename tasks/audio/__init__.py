"""Audio adapter: audio file reading, datasets and split finders, the built-in DTMF demo."""
