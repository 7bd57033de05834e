"""medtune's Ray Tune side: sweep, track, retrain and test, report, serve (see README "Layout")."""

__version__ = "0.3.3"  # the one place the version is set; CHANGELOG.md has an entry for it
