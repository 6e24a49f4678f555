"""trustbadges."""
