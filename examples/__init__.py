"""Example programs that use FF Cloud from the outside."""
