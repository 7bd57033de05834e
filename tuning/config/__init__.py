"""What a run is asked to do: its options as dataclasses, and the command line built from them."""
