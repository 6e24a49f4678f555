"""liveroom."""
