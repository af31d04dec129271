"""dawnchorus: find which bird and frog species call in long soundscape recordings."""

__version__ = "0.1.0"
