"""Configuration: the one settings object, read from the environment and `.env`."""

from config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
