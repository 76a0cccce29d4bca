"""Local stack launcher and the demo."""
