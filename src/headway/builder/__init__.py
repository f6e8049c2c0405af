"""The builder: detect what kind of app a folder holds (and, later, build its image)."""
