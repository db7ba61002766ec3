"""Stand-in for ansible-test's pip bootstrap script (get-pip-VERSION.py).

ansible-test downloads get-pip from ci-files.testing.ansible.com, which this
project's machines cannot reach; they reach PyPI through pip. This script does
the same job from what is already here: ensurepip, then
`pip install <the packages ansible-test asked for>` (pip itself, pinned).
make setup copies it to ~/.ansible/test/cache/get_pip_<version>.py.
"""

import subprocess
import sys

# get-pip.py's own flags, which pip install does not know.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
