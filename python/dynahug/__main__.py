"""``python3 -m dynahug scan PATH... [options]``: the ``dynahug`` command
itself (same options, output formats and exit codes), run from the binary
this package uses. ``python3 -m dynahug`` with no command prints its help.
"""

import os
import sys

from . import _core


def main(argv):
    binary = _core.policy().helper_binary()
    try:
        os.execv(binary, [binary] + argv)
    except OSError as e:
        print('dynahug: cannot run %s: %s' % (binary, e), file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
