"""Helpers every layer shares, one copy each: config conversion, atomic files, torch threads."""
