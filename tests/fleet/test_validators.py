"""Names the controller accepts and derives: env ids anchored at both ends, hostnames as RFC 1123 labels."""

import pytest
from django.core.exceptions import ValidationError

from fleet.validators import ENV_ID, hostname_for, vm_id_for
from ttproject.vocabulary import HOSTNAME_RE


@pytest.mark.parametrize("name", ["tnl\n", "a\nb", ".hidden", "", "x" * 129, "a/b", "a b", "é"])
def test_bad_env_ids_are_refused(name):
    with pytest.raises(ValidationError):
        ENV_ID(name)


@pytest.mark.parametrize("name", ["a", "my-env", "_x", "-x", "a.b_c-d", "x" * 128])
def test_good_env_ids_pass(name):
    ENV_ID(name)


@pytest.mark.parametrize("env_id", ["my-env", "_x", "-x", "a.b_c", "...x", "x" * 128, "-" * 40, "_", "a.-.b"])
def test_hostnames_are_rfc_1123_labels(env_id):
    for index in (0, 7, 255):
        label = hostname_for(vm_id_for(env_id, index))
        assert HOSTNAME_RE.match(label), label
        assert len(label) <= 63 and not label.startswith("-") and not label.endswith("-")


def test_vm_ids_stay_within_128_and_distinct():
    long = "x" * 128
    ids = {vm_id_for(long, i) for i in range(300)}
    assert len(ids) == 300 and all(len(i) <= 128 for i in ids)
