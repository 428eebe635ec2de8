"""The values of every variable (ttproject/settings/variables.py), read from this process's environment."""

from .catalogue import read
from .variables import GROUPS

VALUES = read(GROUPS)
