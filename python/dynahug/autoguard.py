"""Imported at interpreter start-up by dynahug-guard.pth when DYNAHUG_GUARD
is set to anything but "" or "0": patches the loaders (dynahug.patch())
without any change to the program. torch, joblib and numpy are patched when
the program imports them; nothing is imported here but pickle."""

import dynahug

dynahug.patch()
