"""orchestr: declarative, verified, scheduled AI-agent workflows from version-controlled YAML."""

__version__ = "0.1.0"
