"""Query-string filters of the list endpoints (?state=, ?owner=, ?host=...)."""

import django_filters

from .choices import EnvState, HostState, VmState
from .models import Environment, Host, Vm


class EnvironmentFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=EnvState.choices)
    owner = django_filters.CharFilter()
    expires_before = django_filters.IsoDateTimeFilter(field_name="expires_at", lookup_expr="lte")

    class Meta:
        model = Environment
        fields = ["state", "owner"]


class HostFilterSet(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=HostState.choices)

    class Meta:
        model = Host
        fields = ["state", "drain"]


class VmFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=VmState.choices)

    class Meta:
        model = Vm
        fields = ["state", "env", "host", "engine"]
