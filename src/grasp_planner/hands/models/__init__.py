"""The project's own hand models (MJCF), installed as package data (see model_paths.MODEL_PACKAGES)."""
