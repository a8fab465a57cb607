"""One field of view, from its channels to its objects and their measurements."""
