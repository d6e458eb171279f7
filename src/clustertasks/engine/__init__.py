"""The engine: runs operations stage by stage, durably; acts on pause/cancel requests."""
