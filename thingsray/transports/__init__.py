"""Protocol code: no ray, no actors (STYLE.md)."""
